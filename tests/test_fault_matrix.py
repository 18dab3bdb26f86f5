"""The fault suite of the long stages: each stage stopped by SIGINT, SIGTERM or SIGKILL while it is
at work, then resumed with `icurt <stage> --resume RUN`; the finished work is kept and, for train,
attack and fragility, the result equals an uninterrupted run's.

SIGINT and SIGTERM: one `icurt:` line, exit 130 or 143, the run kept as `.failed-<id>` with its
reason and the `--resume` command (tests/helpers/signals.py). SIGKILL (of the driver and the local
Ray it started, as a crashed machine): the run left as `.tmp-<id>`, which `--resume` continues.

Which test covers each stage × signal (→ resume → finished work kept; "equal": the result equals
an uninterrupted run's); "here" is this file:

tune-model   SIGINT   model/test_tune.py::test_interrupted_run_resumes_its_study[SIGINT] (finished
                      trials kept, each cut-off trial rerun with its own parameters)
             SIGTERM  model/test_tune.py::test_interrupted_run_resumes_its_study[SIGTERM] (the same)
             SIGKILL  no real signal: model/test_tune.py::test_trials_a_killed_driver_left_running_are_
                      failed_when_the_study_reopens (a killed driver's RUNNING trials are failed and
                      queued again); tune-attack × SIGKILL here runs the same tuning code (icurt/tuning/)
train        SIGINT   model/test_crossval.py::test_ctrl_c_during_the_folds_is_an_interruption (one
                      line, exit 130, kept as .failed; not resumed there); resume to an equal result
                      after a crash between folds: model/test_train_resume.py
             SIGTERM  here: test_a_stopped_train_run_resumes_to_the_uninterrupted_result[SIGTERM] (equal)
             SIGKILL  here: test_a_stopped_train_run_resumes_to_the_uninterrupted_result[SIGKILL] (equal)
tune-attack  SIGINT   no real signal: attack/test_tune_attack.py::test_tuning_run_writes_its_study_and_
                      resumes (a run left as .failed resumes its study); a signal in a Ray Tune run:
                      test_tune_interrupt.py
             SIGTERM  as SIGINT, and tune-model × SIGTERM above (the same icurt/tuning/ code)
             SIGKILL  here: test_a_killed_tuning_run_resumes_its_study (finished trials kept, the cut-off
                      ones rerun with their own parameters, num_trials finished)
attack       SIGINT   attack/test_attack_resume.py::test_a_stopped_attack_resumes_with_its_missing_
                      batches_and_equals_an_uninterrupted_run[SIGINT] (byte-equal)
             SIGTERM  the same [SIGTERM] (byte-equal)
             SIGKILL  the same [SIGKILL] (byte-equal)
fragility    SIGINT   here: test_a_stopped_sweep_resumes_to_the_same_result[SIGINT] (equal)
             SIGTERM  here: test_a_stopped_sweep_resumes_to_the_same_result[SIGTERM] (equal)
             SIGKILL  attack/test_fragility_stage.py::test_an_interrupted_sweep_resumes_to_the_same_
                      result (equal)

Not covered by a real signal here: tune-model × SIGKILL and tune-attack × SIGINT/SIGTERM (their
code paths are the ones the cells above name). The other stages (query, preprocess, analyze) do
not resume; SIGINT/SIGTERM to preprocess: test_cli.py::test_a_stop_signal_names_the_run_it_kept_and_why.

"At a random point": each test here stops its stage once k of its n units (fold records, sweep
task files, finished trials) exist, k drawn with numpy's default_rng(SEED) and named in every
assertion message, so a failure can be replayed.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from icurt.config import with_overrides
from icurt.runs import RunStore

from signals import STOPPED, assert_one_clean_line, kept_line, sigint_as_a_terminal_gives_it

SEED = 21
TESTS = Path(__file__).parent


def _module(relative: str):
    """Another test module, for its hand-made lineage (tests are imported with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location("icurt_fault_" + relative.replace("/", "_")[:-3],
                                                  TESTS / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def draw(low: int, high: int, salt: int) -> int:
    """The random point: an integer in [low, high], from default_rng(SEED + salt)."""
    return int(np.random.default_rng(SEED + salt).integers(low, high + 1))


def icurt(stage: str, *args: str, settings=(), new_session=False) -> subprocess.Popen:
    """`icurt <stage> …` in a child process; with `new_session` it leads a process group (its local
    Ray included) that a SIGKILL takes down as a crash would, else SIGINT reaches it as Ctrl-C."""
    command = [sys.executable, "-m", "icurt.cli", stage, *args]
    for item in settings:
        command += ["--set", item]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=new_session,
                            preexec_fn=None if new_session else sigint_as_a_terminal_gives_it)


def stop_once(proc, signum, count_done, k: int, what: str, timeout_s=300) -> None:
    """Send `signum` once `count_done()` reaches `k` (SIGKILL to the whole process group)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if count_done() >= k:
            if signum == signal.SIGKILL:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signum)
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"{what}: never {k} finished (seed {SEED}): {proc.communicate()[1][-3000:]}")


def check_stopped(proc, err: str, signum, store: RunStore, stage: str, point: str) -> tuple[str, Path]:
    """The stopped run's id and folder, after checking how it ended."""
    [unfinished] = store.unfinished(stage)
    folder = store.interrupted_folder(stage, unfinished.run_id)
    if signum == signal.SIGKILL:
        assert unfinished.state == "killed" and folder.name.startswith(".tmp-"), point
        return unfinished.run_id, folder
    code, _, reason = STOPPED[signum]
    assert proc.returncode == code, f"{point}: {err[-3000:]}"
    assert_one_clean_line(err, signum)
    assert err.strip().splitlines()[-1] == kept_line(signum, stage, unfinished.run_id, folder, resumable=True), point
    assert unfinished.state == "failed" and json.loads((folder / "run.json").read_text())["error"] == reason, point
    return unfinished.run_id, folder


# ---- fragility × SIGINT, SIGTERM ------------------------------------------------------------------

fragility = _module("attack/test_fragility_stage.py")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_a_stopped_sweep_resumes_to_the_same_result(tmp_path, ray_session, pg_dsn, signum):
    from icurt.attack.fragility_run import read_fragility_run
    from icurt.config import load_config
    from icurt.stages import run_stage

    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path}", f"db.dsn={pg_dsn}", *fragility.SETTINGS])
    store = RunStore(tmp_path)
    fragility.tiny_lineage(store, cfg)
    attack_run = run_stage("attack", cfg, store=store)
    whole = read_fragility_run(run_stage("fragility", cfg, attack_run, store=store).path).sweep
    tasks = 4 * -(-int(whole["sample_index"].nunique()) // 64)   # 2 curves × 2 kinds of cells × CPU batches of 64
    k = draw(1, tasks - 1, salt=signum)
    point = f"stopped by {signum.name} after {k} of {tasks} sweep tasks (seed {SEED})"
    settings = [*fragility.SETTINGS, f"paths.data={tmp_path}", f"db.dsn={pg_dsn}", "ray.num_cpus=1"]

    proc = icurt("fragility", "--from", attack_run.run_id, settings=settings)
    stop_once(proc, signum, lambda: len(list((tmp_path / "fragility").glob(".tmp-*/tasks/*.npz"))), k, point)
    _, err = proc.communicate(timeout=120)
    run_id, folder = check_stopped(proc, err, signum, store, "fragility", point)
    kept = {p.name: p.read_bytes() for p in (folder / "tasks").glob("*.npz")}
    assert k <= len(kept) < tasks, f"{point}: {len(kept)} tasks kept; make the sweep slower"

    resumed = icurt("fragility", "--resume", run_id, settings=settings)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, f"{point}: {err[-3000:]}"
    # only the missing tasks were swept again
    assert f"batch; {len(kept)} already done)" in (store.get("fragility", run_id).path / "run.log").read_text(), point
    pd.testing.assert_frame_equal(read_fragility_run(store.get("fragility", run_id).path).sweep, whole, obj=point)


# ---- train × SIGTERM, SIGKILL ---------------------------------------------------------------------

train_resume = _module("model/test_train_resume.py")
FOLDS = 3


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pg_dsn, ray_session):
    """A tune-model lineage and its uninterrupted train run (two folds at a time on the session's
    Ray), in a data root each test copies."""
    from icurt.config import load_config
    from icurt.stages.train import run

    data = tmp_path_factory.mktemp("trained")
    cfg = with_overrides(load_config(env={}), [*train_resume.SETTINGS, f"paths.data={data}", f"db.dsn={pg_dsn}"])
    assert cfg.train.num_folds == FOLDS
    store = RunStore(data)
    tune_run, _ = train_resume.crossval.fake_tune_run(store, cfg)
    run(cfg, tune_run, store=store)
    return data, tune_run.run_id


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_a_stopped_train_run_resumes_to_the_uninterrupted_result(trained, tmp_path, pg_dsn, signum):
    from icurt.model import checkpoint

    data = tmp_path / "data"
    shutil.copytree(trained[0], data)
    store = RunStore(data)
    [whole] = store.list("train")
    settings = [*train_resume.SETTINGS, f"paths.data={data}", f"db.dsn={pg_dsn}", "ray.num_cpus=2"]
    k = draw(1, FOLDS - 1, salt=signum)
    point = f"stopped by {signum.name} after {k} of {FOLDS} folds (seed {SEED})"

    proc = icurt("train", "--from", trained[1], settings=settings, new_session=signum == signal.SIGKILL)
    stop_once(proc, signum, lambda: len(list((data / "train").glob(".tmp-*/fold_*/fold.json"))), k, point)
    _, err = proc.communicate(timeout=120)
    run_id, folder = check_stopped(proc, err, signum, store, "train", point)
    finished = sorted(p.parent.name for p in folder.glob("fold_*/fold.json"))
    assert k <= len(finished) < FOLDS, f"{point}: {finished} finished; make the folds slower"
    kept = {name: torch.load(folder / name / "best.pt", weights_only=True) for name in finished}

    resumed = icurt("train", "--resume", run_id, settings=settings)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, f"{point}: {err[-3000:]}"
    again = store.get("train", run_id)
    assert (f"{len(finished)} of {FOLDS} folds were finished, training the other {FOLDS - len(finished)}"
            in (again.path / "run.log").read_text()), point
    # the finished folds' checkpoints are the first attempt's
    for name, state in kept.items():
        now = checkpoint.load(again.path / name).state_dict
        assert all(torch.equal(state[key], value) for key, value in now.items()), f"{point}: {name}"
    summary = json.loads(again.file("summary.json").read_text())
    assert summary == json.loads(whole.file("summary.json").read_text()), point
    for fold in range(FOLDS):
        a = checkpoint.load(whole.path / f"fold_{fold}").state_dict
        b = checkpoint.load(again.path / f"fold_{fold}").state_dict
        assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), f"{point}: fold {fold}"
    pd.testing.assert_frame_equal(pd.read_parquet(again.file("predictions.parquet")),
                                  pd.read_parquet(whole.file("predictions.parquet")), obj=point)


# ---- tune-attack × SIGKILL ------------------------------------------------------------------------

tuning = _module("attack/test_tune_attack.py")


@pytest.mark.slow
def test_a_killed_tuning_run_resumes_its_study(tmp_path, make_config, ray_session, pg_dsn):
    from icurt.db.connection import optuna_storage_url
    from icurt.dataset import save_dataset
    from icurt.model import checkpoint
    from icurt.model.hparams import ModelHparams
    from icurt.model.trainer import Trainer
    from icurt.stages import tune_attack
    from icurt.tuning.trials import count_finished

    cfg = make_config(*tuning.TINY)
    store = RunStore.from_config(cfg)
    dataset = tuning.planted_dataset()
    with store.create("preprocess", cfg) as writer:
        save_dataset(writer.path, dataset)
    with store.create("tune-model", cfg, inputs=[writer.run]) as tuned:
        pass
    hp = ModelHparams(lstm_hidden=8, fc_size=8, dropout=0.0, learning_rate=1e-2, batch_size=32)
    trainer = Trainer(hp, dataset.features[:90], dataset.labels[:90], dataset.features[90:], dataset.labels[90:],
                      seed=0)
    for _ in range(4):
        trainer.train_epoch()
    with store.create("train", cfg, inputs=[tuned.run]) as trained:
        checkpoint.save(trained.path / "fold_1", checkpoint.Checkpoint.of(trainer.model, hp, dataset.features.shape[2]))
    storage = optuna_storage_url(cfg)
    optuna.storages.RDBStorage(storage)   # its tables made before the polling below opens it
    k = draw(2, 4, salt=0)
    point = f"killed after {k} finished trials (seed {SEED})"

    proc = icurt("tune-attack", "--from", trained.run.run_id, new_session=True,
                 settings=[*tuning.TINY, f"paths.data={tmp_path}", f"db.dsn={pg_dsn}", "ray.num_cpus=2",
                           "tune_attack.num_trials=200"])

    def finished() -> int:
        tmp = list((tmp_path / "tune-attack").glob(".tmp-*"))
        if not tmp:
            return 0
        try:
            trials = optuna.load_study(study_name=f"icurt-tune-attack-{tmp[0].name[5:]}", storage=storage).trials
        except KeyError:   # the study is not created yet
            return 0
        states = [t.state.name for t in trials]
        return count_finished(states) if "RUNNING" in states else 0

    stop_once(proc, signal.SIGKILL, finished, k, point)
    proc.communicate(timeout=120)
    run_id, _ = check_stopped(proc, "", signal.SIGKILL, store, "tune-attack", point)
    study = optuna.load_study(study_name=f"icurt-tune-attack-{run_id}", storage=storage)
    before = {t.number: (t.state, t.value, t.params) for t in study.trials
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    running = {t.number: t.params for t in study.trials if t.state == TrialState.RUNNING}
    assert len(before) >= k and running, f"{point}: {[t.state for t in study.trials]}"

    # the resume reopens the study: the trials the killed driver left RUNNING run again first, with
    # their own parameters, then one new proposal
    wanted = len(before) + len(running) + 1
    resumed = tune_attack.run(with_overrides(cfg, [f"tune_attack.num_trials={wanted}"]), resume=run_id, store=store)
    assert resumed.run_id == run_id and resumed.meta["resumed"] == 1, point
    study = optuna.load_study(study_name=f"icurt-tune-attack-{run_id}", storage=storage)
    assert count_finished([t.state.name for t in study.trials]) == wanted, point
    assert {t.number: (t.state, t.value, t.params) for t in study.trials if t.number in before} == before, point
    assert all(study.trials[n].state == TrialState.FAIL for n in running), point
    reruns = {t.user_attrs["rerun_of"]: t for t in study.trials if "rerun_of" in t.user_attrs}
    assert sorted(reruns) == sorted(running), point
    assert all(reruns[n].params == running[n] and reruns[n].state != TrialState.FAIL for n in running), point
    best = json.loads(resumed.file("best_attack_hparams.json").read_text())
    assert best["trial"] == study.best_trial.number and best["objective"] == pytest.approx(study.best_trial.value)
    assert pd.read_parquet(resumed.file("trials.parquet"))["number"].tolist() == [t.number for t in study.trials]
