import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread in every attack test module: the actors run one, so the in-process
    reference runs the same kernels (same bits), and on a shared, loaded machine OpenMP threads
    contend and run up to 30× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
