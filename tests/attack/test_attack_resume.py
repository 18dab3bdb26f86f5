"""`icurt attack --resume`: finished batches are written as they land, a killed attack resumes with
only its missing batches, and the result is byte for byte that of an uninterrupted run."""

import dataclasses
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from icurt.attack.batches import BatchCollector
from icurt.attack.results import BatchStore, save_npz
from icurt.errors import IcurtError


def _full_attack_module():
    """The hand-made lineage of test_full_attack.py (tests are imported with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location("icurt_test_full_attack",
                                                  Path(__file__).with_name("test_full_attack.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


full = _full_attack_module()


def test_batch_files_round_trip_and_a_changed_plan_is_refused(tmp_path):
    store = BatchStore(tmp_path / "batches", {"kappa": 0.1, "samples": "abc"})
    rows = pd.DataFrame({"sample_index": np.array([3, 1], np.int64), "logit": np.array([0.5, -1.0], np.float32),
                         "success": np.array([True, False])})
    store.write("000002", rows, {"best_t": np.array([1, 2], np.int16)})
    assert store.done() == {"000002"} and not list(store.folder.glob(".*"))
    back, arrays = store.read("000002")
    pd.testing.assert_frame_equal(back, rows)
    assert arrays["best_t"].dtype == np.int16 and list(arrays["best_t"]) == [1, 2]
    assert BatchStore(tmp_path / "batches", {"kappa": 0.1, "samples": "abc"}).done() == {"000002"}
    with pytest.raises(IcurtError, match=r"planned other batches \(kappa differ\)"):
        BatchStore(tmp_path / "batches", {"kappa": 0.2, "samples": "abc"})


def test_npz_bytes_depend_only_on_the_arrays(tmp_path):
    arrays = {"shape": np.array([4, 8, 3]), "best_value": np.linspace(0, 1, 7, dtype=np.float32)}
    save_npz(tmp_path / "a.npz", arrays)
    time.sleep(2.1)                                   # zip member times have 2 s resolution
    save_npz(tmp_path / "b.npz", arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as npz:
        assert set(npz.files) == set(arrays) and np.array_equal(npz["best_value"], arrays["best_value"])


def test_a_collector_attacks_only_missing_batches(tmp_path):
    ds = full.tiny_dataset()
    batches = [np.arange(0, 4), np.arange(4, 8), np.arange(8, 10)]
    model, _ = full.tiny_model(ds)
    hp = full.AttackHparams(kappa=0.0, lambda_1=0.02, learning_rate=0.05, optimizer="adam", batch_size=4)
    first = BatchCollector(tmp_path, ds, batches, plan={"kappa": 0.0})
    first(1, full.reference(model, ds, batches[1], hp, 5))
    again = BatchCollector(tmp_path, ds, batches, plan={"kappa": 0.0})
    assert again.missing() == [0, 2] and again.resumed_batches == 1 and again.done == 4
    with pytest.raises(IcurtError, match="no results for 2 batch"):
        again.results()


# ---- a real SIGKILL ----------------------------------------------------------------------------

PLAIN_TUNED = {**full.TUNED, "method": dataclasses.asdict(full.PLAIN), "batch_size": 4}
SETTINGS = ["attack.epochs_per_batch=400", "attack.max_num_samples=40", "attack.num_actors=1", "attack.batch_size=4",
            "attack.cpus_per_actor=1", "ray.num_cpus=1", "ray.device=cpu", "attack.samples=all"]


def _attack(data: Path, *args: str, settings=SETTINGS) -> subprocess.Popen:
    from signals import sigint_as_a_terminal_gives_it

    command = [sys.executable, "-m", "icurt.cli", "attack", *args, "--set", f"paths.data={data}"]
    for item in settings:
        command += ["--set", item]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=data,
                            preexec_fn=sigint_as_a_terminal_gives_it)


def _lineage(cfg, data: Path):
    """test_full_attack's lineage, its tune-attack run recording no early stop and batches of 4
    (10 batches of the 40 samples)."""
    from icurt.dataset import save_dataset
    from icurt.model import checkpoint
    from icurt.runs import RunStore

    store = RunStore(data)
    ds = full.tiny_dataset()
    with store.create("preprocess", cfg) as w:
        save_dataset(w.path, ds)
    with store.create("tune-model", cfg, inputs=[w.run]) as w:
        (w.path / "best_hparams.json").write_text("{}")
    model, hp = full.tiny_model(ds)
    with store.create("train", cfg, inputs=[w.run]) as w:
        checkpoint.save(w.path / "fold_0", checkpoint.Checkpoint.of(model, hp, full.F))
    with store.create("tune-attack", cfg, inputs=[w.run]) as w:
        (w.path / "best_attack_hparams.json").write_text(json.dumps(PLAIN_TUNED))
    return store, w.run


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_stopped_attack_resumes_with_its_missing_batches_and_equals_an_uninterrupted_run(tmp_path, signum):
    """Killed (SIGKILL: the run is left as .tmp-), or stopped by Ctrl-C or SIGTERM (one line, exit
    130 or 143, the run kept as .failed- with its reason), the attack resumes to the same bytes."""
    from signals import STOPPED, assert_one_clean_line, kept_line

    from icurt.config import load_config, with_overrides

    data = tmp_path / "data"
    cfg = with_overrides(load_config(env={}), [f"paths.data={data}", *SETTINGS])
    store, tune_run = _lineage(cfg, data)

    stopped = _attack(data, "--from", tune_run.run_id)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((data / "attack").glob(".tmp-*/batches/batch-*.npz"))) < 3:
        time.sleep(0.05)
    stopped.send_signal(signum)
    _, err = stopped.communicate(timeout=120)
    (folder,) = (data / "attack").glob(".tmp-*" if signum == signal.SIGKILL else ".failed-*")
    finished = len(list(folder.glob("batches/batch-*.npz")))
    assert 3 <= finished < 10, "the attack was not stopped halfway: make its batches slower"
    run_id = folder.name.split("-", 1)[1]
    state = "killed" if signum == signal.SIGKILL else "failed"
    assert [(u.run_id, u.state) for u in store.unfinished("attack")] == [(run_id, state)]
    if signum != signal.SIGKILL:
        code, _, reason = STOPPED[signum]
        assert stopped.returncode == code, err[-3000:]
        assert_one_clean_line(err, signum)
        assert err.strip().splitlines()[-1] == kept_line(signum, "attack", run_id, folder, resumable=True)
        assert json.loads((folder / "run.json").read_text())["error"] == reason

    # today's settings differ; the resumed run keeps those it started with
    resumed = _attack(data, "--resume", run_id, settings=[*SETTINGS[1:], "attack.epochs_per_batch=5"])
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-3000:]
    assert "today's differ in attack.epochs_per_batch" in err
    log = (data / "attack" / run_id / "run.log").read_text()
    assert f"resuming run {run_id}: {finished} of 10 batches were finished, attacking the other {10 - finished}" in log
    assert not (data / "attack" / run_id / "batches").exists()

    whole = _attack(data, "--from", tune_run.run_id)
    _, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err[-3000:]
    (uninterrupted,) = [r for r in store.list("attack") if r.run_id != run_id]
    for name in ("results.parquet", "perturbations.npz", "attack_config.json"):
        assert (data / "attack" / run_id / name).read_bytes() == uninterrupted.file(name).read_bytes(), name
    table = pd.read_parquet(uninterrupted.file("results.parquet"))
    assert len(table) == 40 and table["sample_index"].is_unique and table["success"].sum() > 0


def test_the_actor_pool_leaves_the_console_alone(ray_session, capfd):
    """Ray logs an error line (core_worker.cc) for a restartable actor whose constructor argument
    is in the object store; the pool restarts actors itself, so none is restartable by Ray."""
    ds = full.tiny_dataset()
    model, _ = full.tiny_model(ds)
    hp = full.AttackHparams(kappa=0.0, lambda_1=0.02, learning_rate=0.05, optimizer="adam", batch_size=5)
    runner = full.pool(ray_session, model, hp, 5)
    try:
        results = runner.run(ds.features, ds.labels, [np.arange(0, 5), np.arange(5, 10)])
    finally:
        runner.shutdown()
    assert sorted(results) == [0, 1]
    time.sleep(1)
    assert "constructor arguments" not in capfd.readouterr().err
