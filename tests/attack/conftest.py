import pytest
import torch
from torch import nn


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread in every attack test module: the actors run one, so the in-process
    reference runs the same kernels (same bits), and on a shared, loaded machine OpenMP threads
    contend and run up to 30× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LinearScore(nn.Module):
    """Logits [0, Σ W·x + b]: the input gradient of the margin is ±W everywhere."""

    def __init__(self, weight: torch.Tensor, bias: float):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(torch.tensor(bias))

    def forward(self, x):
        score = (x * self.weight).sum(dim=(1, 2)) + self.bias
        return torch.stack([torch.zeros_like(score), score], dim=1)


@pytest.fixture
def linear_score():
    """The LinearScore class: a model whose attack steps can be computed by hand."""
    return LinearScore
