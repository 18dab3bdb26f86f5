"""The fragility stage on hand-made runs and a real local Ray: the sweep sharded over Ray tasks
equals one process, a killed worker loses no task, and an interrupted sweep resumes to the same
result."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from icurt.attack.attacker import AttackHparams
from icurt.attack.batching import AUTO_BATCH_SIZE
from icurt.attack.budget import scaled_steps
from icurt.attack.fragility_run import read_fragility_run
from icurt.attack.sweep import sweep_curve, sweep_curves
from icurt.attack.sweep_runner import SweepTask, run_sweep, sweep_task
from icurt.config import AttackMethod, load_config, with_overrides
from icurt.dataset import save_dataset
from icurt.errors import IcurtError
from icurt.model import checkpoint
from icurt.model.hparams import ModelHparams
from icurt.placement import Placement
from icurt.planted import planted_dataset
from icurt.runs import RunStore
from icurt.stages import run_stage

from tiny_bilstm import fit_tiny_bilstm

N, T, F = 48, 8, 3
NAMES = ["creatinine", "sodium", "heartrate"]
NORMALISATION = {name: {"p_low": 1.0, "p_high": 9.0, "median": 5.0} for name in NAMES}
METHOD = AttackMethod(max_perts=0, lambda_decay=0.5, lambda_decay_every=4, early_stop_patience=0,
                      attack_misclassified=False, threshold="preconditioned", loss_norm="elementwise",
                      loss_reduction="sum", optimizer_state="per_batch")
TUNED = {"kappa": 0.0, "lambda_1": 0.01, "learning_rate": 0.05, "batch_size": 8, "optimizer": "adam",
         "method": dataclasses.asdict(METHOD), "objective": 1.0, "objective_name": "sparse_small", "trial": 0,
         "fold": 0}
SETTINGS = ["attack.epochs_per_batch=30", "attack.samples=all", "attack.num_actors=2", "attack.cpus_per_actor=1", "ray.device=cpu",
            "fragility.l0_budgets=[1, 4]", "fragility.linf_scales=[1.0, 8.0]", "fragility.headline_k=4",
            "fragility.iterations=25", "fragility.early_stop_patience=0", "fragility.clinical_step.creatinine=2.0",
            "fragility.clinical_step.sodium=2.0", "fragility.clinical_step.heartrate=2.0"]


def tiny_lineage(store, cfg):
    made = planted_dataset(N, hours=T, features=F, seed=4, death_rate=0.5, strength=10.0, drift=0.4, noise=0.15,
                           signal_features=1).dataset
    measured = np.random.default_rng(9).random((N, T, F)) < 0.6
    dataset = dataclasses.replace(made, feature_names=NAMES, normalisation=NORMALISATION, measured=measured)
    hp = ModelHparams(lstm_hidden=8, fc_size=8)
    model = fit_tiny_bilstm(dataset.features, dataset.labels, hp, lr=2e-2, steps=120)
    with store.create("preprocess", cfg) as w:
        save_dataset(w.path, dataset)
    with store.create("tune-model", cfg, inputs=[w.run]) as w:
        (w.path / "best_hparams.json").write_text("{}")
    with store.create("train", cfg, inputs=[w.run]) as w:
        checkpoint.save(w.path / "fold_0", checkpoint.Checkpoint.of(model.eval(), hp, F))
    with store.create("tune-attack", cfg, inputs=[w.run], extra_meta={"fold": 0}) as w:
        (w.path / "best_attack_hparams.json").write_text(json.dumps(TUNED))
    return dataset, checkpoint.load(store.latest("train").path / "fold_0")


@pytest.fixture
def attacked(tmp_path, ray_session):
    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path}", *SETTINGS])
    store = RunStore(tmp_path)
    dataset, weights = tiny_lineage(store, cfg)
    attack_run = run_stage("attack", cfg, store=store)
    return cfg, store, dataset, weights, attack_run


def one_process(cfg, dataset, weights, sample_index, warm):
    """The sweep computed here, curve by curve, batch by batch."""
    steps = scaled_steps(cfg.fragility.clinical_step, NORMALISATION, NAMES)
    hp = AttackHparams.from_dict(TUNED)
    model = weights.build()
    out = {}
    for curve in sweep_curves(cfg.fragility):
        for start in range(0, len(sample_index), hp.batch_size):
            rows = sample_index[start:start + hp.batch_size]
            result = sweep_curve(model, dataset.features[rows], dataset.labels[rows], hp, METHOD, curve, steps,
                                 dataset.measured[rows], warm[start:start + hp.batch_size], cfg.fragility.iterations)
            for c, cell in enumerate(curve):
                for i, s in enumerate(rows):
                    out[cell.curve, cell.cells, cell.value, int(s)] = (bool(result.success[c, i]), result.p[c, i])
    return out


@pytest.mark.slow
def test_the_sharded_sweep_equals_one_process_and_follows_the_contract(attacked, one_thread):
    from icurt.attack.results import dense_results, read_attack_run

    cfg, store, dataset, weights, attack_run = attacked
    run = run_stage("fragility", cfg, store=store)
    fragility = read_fragility_run(run.path)
    sweep = fragility.sweep
    attack = read_attack_run(attack_run.path)
    swept = attack.table.loc[attack.table["attacked"], "sample_index"].to_numpy()
    assert sorted(sweep["sample_index"].unique()) == sorted(swept)
    warm = dense_results(attack).best_p[np.searchsorted(attack.table["sample_index"], swept)]
    want = one_process(cfg, dataset, weights, swept, warm)
    for row in sweep.itertuples():
        success, p = want[row.curve, row.cells, row.budget, row.sample_index]
        assert row.success == success, row
        assert row.n_nonzero == (p != 0).sum()
    assert (sweep.groupby(["curve", "cells", "budget"])["success"].mean().groupby(level=[0, 1]).diff().dropna()
            >= 0).all()
    assert set(fragility.summary["headline"]) == {"1to0", "0to1"}
    # icurt's method: every task a batch of the CPU's auto size; flips that fail re-verification are none
    assert (fragility.summary["batch_size"], fragility.summary["batch_size_reason"]) == (AUTO_BATCH_SIZE["cpu"], "auto")
    assert fragility.summary["unverified"] == int(sweep["unverified"].sum())
    assert not (sweep["unverified"] & sweep["success"]).any()
    assert "flip to survival by changing at most 4 measured values" in fragility.summary["headline"]["1to0"]["sentence"]
    measured = sweep[sweep["cells"] == "measured"]
    examples = fragility.examples
    on_measured = np.isin(examples["cell"], measured["cell"].unique())
    assert dataset.measured[examples["sample"][on_measured], examples["t"][on_measured],
                            examples["f"][on_measured]].all()


@pytest.mark.slow
def test_cuda_without_gpu_is_refused_before_a_run_exists(attacked, ray_session):
    cfg, store, _, _, attack_run = attacked
    assert ray_session.cluster_resources().get("GPU", 0) == 0
    with pytest.raises(IcurtError, match="no GPU"):
        run_stage("fragility", with_overrides(cfg, ["ray.device=cuda"]), attack_run, store=store)
    assert store.list("fragility") == [] and store.failed("fragility") == []


@pytest.mark.slow
def test_a_killed_worker_loses_no_task(attacked, tmp_path, ray_session):
    cfg, store, dataset, weights, _ = attacked
    marker = tmp_path / "crashed-once"
    steps = scaled_steps(cfg.fragility.clinical_step, NORMALISATION, NAMES)
    curve = sweep_curves(cfg.fragility)[0]
    tasks = [SweepTask(f"t{i}", curve, np.arange(i * 8, i * 8 + 8)) for i in range(3)]

    def crash_once_on_t1(*args, **kwargs):
        task = args[5]
        if task.name == "t1" and not marker.exists():
            marker.touch()
            os._exit(1)   # the worker process dies mid-task, as on a lost node
        return sweep_task(*args, **kwargs)

    def collect(function):
        got = {}
        run_sweep(ray_session, Placement({"CPU": 1.0}), 2, tasks, lambda t, arrays: got.__setitem__(t.name, arrays),
                  weights, dataset.features, dataset.labels, dataset.measured, None, AttackHparams.from_dict(TUNED),
                  METHOD, steps, 10, task_function=function)
        return got

    crashed, plain = collect(crash_once_on_t1), collect(sweep_task)
    assert marker.exists() and sorted(crashed) == ["t0", "t1", "t2"]
    for name in plain:
        for key in plain[name]:
            np.testing.assert_array_equal(crashed[name][key], plain[name][key], err_msg=f"{name} {key}")


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_to_the_same_result(attacked, tmp_path, pg_dsn):
    cfg, store, _, _, attack_run = attacked
    whole = read_fragility_run(run_stage("fragility", cfg, attack_run, store=store).path).sweep
    settings = [a for item in [*SETTINGS, f"paths.data={tmp_path}", "fragility.iterations=25", "ray.num_cpus=1"]
                for a in ("--set", item)]
    proc = subprocess.Popen([sys.executable, "-m", "icurt.cli", "fragility", "--from", attack_run.run_id, *settings],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline, run_id = time.monotonic() + 300, None
    while time.monotonic() < deadline and proc.poll() is None:
        found = [p for p in (tmp_path / "fragility").glob(".tmp-*/tasks/*.npz")]
        if found:
            run_id = found[0].parents[1].name[len(".tmp-"):]
            os.killpg(proc.pid, signal.SIGKILL)   # the driver and the Ray it started: a crashed machine
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert run_id, f"no task finished before the sweep ended: {proc.stderr.read()[-2000:]}"
    left = len(list((tmp_path / "fragility" / f".tmp-{run_id}" / "tasks").glob("*.npz")))
    batches = -(-int(whole["sample_index"].nunique()) // AUTO_BATCH_SIZE["cpu"])   # icurt's method: the auto batch
    assert 1 <= left < 4 * batches   # (2 curves × 2 kinds of cells) × batches: some finished, some not
    # resumed with today's config changed: the run finishes with the settings it started with
    resumed = subprocess.run([sys.executable, "-m", "icurt.cli", "fragility", "--resume", run_id, *settings,
                              "--set", "fragility.iterations=99"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (f"resuming fragility run {run_id} with the settings it started with; today's differ in "
            "fragility.iterations") in resumed.stderr
    again = read_fragility_run(store.get("fragility", run_id).path).sweep
    pd.testing.assert_frame_equal(again, whole)
