"""tune-model and the shared tuning machinery (icurt/tuning/, icurt/resume.py, icurt/placement.py).

Pure parts are checked against hand-computed values; the Ray parts run for real on the 2-CPU
`ray_session` with the studies in the session's embedded PostgreSQL.
"""

import json
import math
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from icurt.cli import main
from icurt.config import load_config, with_overrides
from icurt.dataset import Dataset, save_dataset
from icurt.db.connection import optuna_storage_url
from icurt.errors import IcurtError
from icurt.placement import Capacity, place
from icurt.planted import planted_dataset as planted
from icurt.resume import changed_settings
from icurt.runs import RunStore
from icurt.stages import tune_model
from icurt.tuning.space import decode_params
from icurt.tuning.study import open_study, rerun_cut_off_trials, run_study
from icurt.tuning.trials import (StudyPlan, best_trial_row, count_finished, cut_off, sampler_seed, storage_label,
                                 trial_end_state, trial_row, trials_frame)

TINY = ["tune_model.num_folds=2", "tune_model.cv_epochs=2", "tune_model.epochs_per_cv_epoch=1",
        "tune_model.lstm_hidden_exponents=[3, 4]", "tune_model.fc_size_exponents=[3, 4]",
        "tune_model.batch_size_exponents=[4, 5]", "tune_model.optuna_startup_trials=2",
        "tune_model.asha_grace_period=1", "tune_model.cpus_per_trial=1.0", "ray.device=cpu"]


# ---- pure logic ---------------------------------------------------------------------------

def test_search_space_follows_the_config_ranges():
    cfg = with_overrides(load_config(env={}), ["tune_model.dropout=[0.1, 0.3]",
                                               "tune_model.optimizers=[\"adam\"]"])
    space = tune_model.search_space(cfg.tune_model)
    assert space == {
        "log2_batch_size": IntDistribution(5, 8), "log2_lstm_hidden": IntDistribution(5, 7),
        "lstm_activation": CategoricalDistribution(("relu", "tanh")),
        "dropout": FloatDistribution(0.1, 0.3), "log2_fc_size": IntDistribution(4, 8),
        "fc_activation": CategoricalDistribution(("relu", "tanh")),
        "optimizer": CategoricalDistribution(("adam",)),
        "learning_rate": FloatDistribution(1e-5, 1e-1, log=True)}


def test_log2_parameters_decode_to_powers_of_two():
    assert decode_params({"log2_batch_size": 5, "dropout": 0.25, "log2_fc_size": 0, "optimizer": "sgd"}) == \
        {"batch_size": 32, "dropout": 0.25, "fc_size": 1, "optimizer": "sgd"}


@pytest.mark.parametrize("override,key", [
    ("tune_model.dropout=[0.5, 0.1]", "tune_model.dropout"),
    ("tune_model.lstm_hidden_exponents=[7, 5]", "tune_model.lstm_hidden_exponents"),
    ("tune_model.learning_rate=[0.1, 1e-5]", "tune_model.learning_rate"),
    ("tune_model.optimizers=[]", "tune_model.optimizers"),
    ("tune_model.lstm_activations=[]", "tune_model.lstm_activations"),
    ("tune_model.batch_size_exponents=[5]", "tune_model.batch_size_exponents"),
])
def test_inverted_or_empty_search_space_is_rejected_at_load(override, key):
    with pytest.raises(IcurtError, match=key.replace(".", r"\.")):
        with_overrides(load_config(env={}), [override])


@pytest.mark.parametrize("errored,value,step,stopped,expected,rerun", [
    (False, 0.4, 5, False, "COMPLETE", False),   # ran its whole budget
    (False, 0.4, 5, True, "COMPLETE", False),    # ASHA also "stops" a trial at max_t
    (False, 0.4, 2, True, "PRUNED", False),      # ASHA stopped it early
    (False, 0.4, 2, False, "FAIL", True),        # cut short from outside: an interrupted run
    (False, None, None, False, "FAIL", True),    # stopped before its first report
    (True, None, None, False, "FAIL", False),    # the trainable raised
    (False, math.nan, 5, False, "FAIL", False),  # Optuna cannot store NaN
    (False, math.inf, 5, False, "COMPLETE", False),  # a diverged model is a (bad) result
])
def test_trial_end_state(errored, value, step, stopped, expected, rerun):
    assert trial_end_state(errored, value, step, 5, stopped) == expected
    assert cut_off(errored, value, step, 5, stopped) == rerun


def test_changed_settings_of_a_resumed_study():
    started = {"num_trials": 2, "dropout": [0.0, 0.5], "seed": 0, "fold": 1}
    now = {"num_trials": 6, "dropout": [0.0, 0.4], "seed": 0, "fold": 0, "new_key": 1}
    assert changed_settings(started, now) == ["dropout", "fold", "new_key"]
    assert changed_settings(started, now, ignore=("num_trials", "fold")) == ["dropout", "new_key"]


def test_finished_means_complete_or_pruned_or_failed_for_a_reason():
    assert count_finished(["COMPLETE", "PRUNED", "FAIL", "RUNNING", "COMPLETE"]) == 3
    # a FAIL with a recorded reason (it diverged) counts; one without (cut off) is run again
    assert count_finished(["COMPLETE", "FAIL", "FAIL"], [None, "diverged at cv epoch 1", None]) == 2


def test_resumed_sampler_does_not_replay_the_start_up_suggestions():
    assert sampler_seed(7, 0) == 7 and sampler_seed(7, 3) == 10


@pytest.mark.parametrize("device,cpus,gpus,cluster_gpus,expected", [
    ("auto", 1.0, 0.25, 0, {"CPU": 1.0}),
    ("auto", 1.0, 0.25, 2, {"CPU": 1.0, "GPU": 0.25}),
    ("cuda", 2.0, 1.0, 1, {"CPU": 2.0, "GPU": 1.0}),
    ("cpu", 1.0, 0.5, 4, {"CPU": 1.0}),
    ("auto", 1.0, 0.0, 4, {"CPU": 1.0}),
])
def test_trial_resources(device, cpus, gpus, cluster_gpus, expected):
    assert place(device, Capacity.fixed(4, cluster_gpus), "tune_model", cpus, gpus).resources == expected


@pytest.mark.parametrize("device,cpus,gpus,cluster_gpus,message", [
    ("cuda", 1.0, 0.25, 0, "no GPU"),
    ("auto", 8.0, 0.25, 0, "tune_model.cpus_per_trial"),
    ("auto", 1.0, 2.0, 1, "tune_model.gpus_per_trial"),
    ("auto", 1.0, 1.5, 2, "whole number"),
    ("cuda", 1.0, 0.0, 1, "gpus_per_trial is 0"),
])
def test_trial_resources_that_can_never_be_met_are_errors(device, cpus, gpus, cluster_gpus, message):
    with pytest.raises(IcurtError, match=message):
        place(device, Capacity.fixed(4, cluster_gpus), "tune_model", cpus, gpus)


def frozen(number, state, value, params, steps=()):
    space = {"log2_batch_size": IntDistribution(4, 6), "dropout": FloatDistribution(0, 0.5)}
    start = datetime(2024, 1, 1)
    trial = create_trial(state=state, value=value if state == TrialState.COMPLETE else None, params=params,
                         distributions=space, intermediate_values=dict(steps))
    trial.number, trial.datetime_start, trial.datetime_complete = number, start, start + timedelta(seconds=number + 1)
    return trial, space


def test_trials_table_and_best_trial():
    made = [frozen(0, TrialState.COMPLETE, 0.5, {"log2_batch_size": 4, "dropout": 0.1}, [(1, .6), (2, .5)]),
            frozen(2, TrialState.PRUNED, None, {"log2_batch_size": 6, "dropout": 0.2}, [(1, .2)]),
            frozen(1, TrialState.COMPLETE, 0.3, {"log2_batch_size": 5, "dropout": 0.3}, [(1, .4), (2, .3)]),
            frozen(3, TrialState.FAIL, None, {"log2_batch_size": 4, "dropout": 0.4})]
    table = trials_frame([t for t, _ in made], made[0][1])
    assert list(table.columns) == ["number", "state", "objective", "batch_size", "dropout", "last_step",
                                   "duration_s", "fail_reason"]
    assert table["number"].tolist() == [0, 1, 2, 3]
    assert table["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert table["batch_size"].tolist() == [16, 32, 64, 16]
    assert table["last_step"].tolist() == [2, 2, 1, -1]
    assert table["duration_s"].tolist() == [1.0, 2.0, 3.0, 4.0]
    np.testing.assert_allclose(table["objective"], [0.5, 0.3, np.nan, np.nan])
    # the pruned trial's .2 is lower but only complete trials can be the best
    best = best_trial_row(table, "min")
    assert best["number"] == 1 and best["batch_size"] == 32 and type(best["batch_size"]) is int
    assert best_trial_row(table, "max")["number"] == 0
    assert trial_row(table, 2, "min")["state"] == "PRUNED"
    with pytest.raises(IcurtError, match="no trial 9"):
        trial_row(table, 9, "min")
    with pytest.raises(IcurtError, match="no trial of the study ran to completion"):
        best_trial_row(table[table["state"] != "COMPLETE"], "min")
    # a complete trial with a non-finite objective is never the best
    table.loc[table["number"] == 1, "objective"] = -np.inf
    assert best_trial_row(table, "min")["number"] == 0


def test_storage_label_hides_the_password():
    label = storage_label("postgresql+psycopg2://icurt:s3cret@db.example:5432/optuna")
    assert "s3cret" not in label and "db.example:5432/optuna" in label


# ---- the shared Ray machinery with a stand-in trainable -------------------------------------

def loss_is_x(config):
    """val_loss = x at every step, so ASHA prunes the trials with the larger x."""
    from ray import tune

    if config["x"] > 0.9:
        raise ValueError("planted failure")
    for step in range(1, 5):
        tune.report({"step": step, "val_loss": config["x"]})


def plan_for(run_id, num_trials, **changes):
    values = dict(stage="tune-model", run_id=run_id, metric="val_loss", mode="min", step_attr="step",
                  max_step=4, grace_period=1, reduction_factor=2, num_trials=num_trials, startup_trials=2,
                  seed=3, max_concurrent_trials=1, resources={"CPU": 1.0})
    values.update(changes)
    return StudyPlan(**values)


def test_asha_stopped_trials_are_pruned_in_the_study(ray_session, make_config, tmp_path):
    storage = optuna_storage_url(make_config())
    plan = plan_for("asha-states", 6)
    study = run_study(plan, loss_is_x, {"x": FloatDistribution(0.0, 0.9)}, storage, tmp_path, "tune")
    trials = optuna.load_study(study_name="icurt-tune-model-asha-states", storage=storage).trials
    assert count_finished([t.state.name for t in trials]) == 6 == len(trials)
    assert study.study_name == plan.study_name
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned, "six trials of distinct x, one at a time: ASHA prunes some at its first rung"
    for trial in trials:
        x = trial.params["x"]
        assert trial.value == pytest.approx(x)            # a pruned trial keeps its last loss
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(1, steps[-1] + 1))      # Optuna's steps are the trial's own
        assert (trial.state == TrialState.COMPLETE) == (steps[-1] == 4)
    complete = [t.params["x"] for t in trials if t.state == TrialState.COMPLETE]
    # ASHA stops a trial worse than the median at its rung, never the best so far
    assert min(t.params["x"] for t in trials) in complete


def test_failing_trials_leave_the_study_short_and_say_how_to_resume(ray_session, make_config, tmp_path):
    storage = optuna_storage_url(make_config())
    plan = plan_for("all-fail", 2, startup_trials=5)
    with pytest.raises(IcurtError, match=r"0 of 2 trials finished.*planted failure.*--resume all-fail"):
        run_study(plan, loss_is_x, {"x": FloatDistribution(0.95, 1.0)}, storage, tmp_path, "tune")
    states = [t.state for t in optuna.load_study(study_name=plan.study_name, storage=storage).trials]
    assert states == [TrialState.FAIL, TrialState.FAIL]


def test_trials_a_killed_driver_left_running_are_failed_when_the_study_reopens(make_config):
    storage = optuna_storage_url(make_config())
    plan = plan_for("killed", 3)
    study = optuna.create_study(storage=storage, study_name=plan.study_name)
    study.tell(study.ask({"x": FloatDistribution(0, 1)}), 0.5)
    study.ask({"x": FloatDistribution(0, 1)})       # its driver was killed: it stays RUNNING
    reopened = open_study(plan, storage)
    assert [t.state for t in reopened.trials] == [TrialState.COMPLETE, TrialState.FAIL]


def test_a_cut_off_trial_is_queued_once_with_its_own_parameters(make_config):
    storage = optuna_storage_url(make_config())
    plan = plan_for("requeue", 4)
    space = {"x": FloatDistribution(0, 1), "log2_b": IntDistribution(3, 5)}
    study = optuna.create_study(storage=storage, study_name=plan.study_name)
    study.tell(study.ask(space), 0.5)
    cut = study.ask(space)                           # its driver was killed: it stays RUNNING
    reopened = open_study(plan, storage)
    assert [(t.state, t.user_attrs) for t in reopened.trials] == [
        (TrialState.COMPLETE, {}), (TrialState.FAIL, {"cut_off": True})]
    assert rerun_cut_off_trials(reopened, limit=0) == 0   # no trial left to run: nothing queued
    assert rerun_cut_off_trials(reopened, limit=3) == 1
    assert rerun_cut_off_trials(reopened, limit=3) == 0   # queued once, however often the study reopens
    again = reopened.ask(space)                      # as OptunaSearch asks (fixed_distributions=space)
    assert again.params == cut.params and again.user_attrs == {"rerun_of": 1}
    # the rerun is cut off in its turn: it is queued again, with the same parameters
    reopened = open_study(plan, storage)
    assert rerun_cut_off_trials(reopened, limit=3) == 1
    assert reopened.ask(space).params == cut.params


def test_a_resumed_study_runs_its_cut_off_trial_again(ray_session, make_config, tmp_path):
    storage = optuna_storage_url(make_config())
    plan = plan_for("rerun", 2)
    space = {"x": FloatDistribution(0.0, 0.9)}
    study = optuna.create_study(storage=storage, study_name=plan.study_name)
    study.tell(study.ask(space), 0.2)
    cut = study.ask(space)                           # cut off: left RUNNING by an interrupted driver
    study = run_study(plan, loss_is_x, space, storage, tmp_path, "tune")
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert trials[2].params == cut.params and trials[2].user_attrs["rerun_of"] == 1
    assert trials[2].value == pytest.approx(cut.params["x"])   # loss_is_x ran with it


def test_a_diverging_trial_ends_fail_with_its_reason_and_the_study_completes(ray_session, make_config, tmp_path):
    """tune-model's own trainable: an enqueued trial with Adam at lr 1e30 overflows to NaN logits
    in its first cv epoch; it is recorded FAIL with the reason, counts towards num_trials, and the
    other trials finish the study, whose best is a finite one."""
    from icurt.placement import Placement
    from icurt.tuning.stage import study_plan
    from icurt.tuning.trials import write_study_files
    from ray import tune

    cfg = make_config(*TINY, "tune_model.num_trials=3", "tune_model.split=stay")
    task = tune_model.tuning_task(cfg, None, planted(120, seed=0).dataset, Placement({"CPU": 1.0}))
    plan = study_plan(task, "diverging")
    storage = optuna_storage_url(cfg)
    study = optuna.create_study(storage=storage, study_name=plan.study_name, direction="minimize")
    sane = {"log2_batch_size": 4, "log2_lstm_hidden": 3, "lstm_activation": "tanh", "dropout": 0.0,
            "log2_fc_size": 3, "fc_activation": "relu", "optimizer": "adam", "learning_rate": 1e-2}
    study.enqueue_trial({**sane, "lstm_activation": "relu", "learning_rate": 1e30})
    study.enqueue_trial(sane)
    study.enqueue_trial({**sane, "learning_rate": 3e-3})
    study = run_study(plan, tune.with_parameters(task.trainable, **task.data), task.space, storage, tmp_path,
                      "tune")
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[0].user_attrs["fail_reason"].startswith("diverged at cv epoch 1: fold ")
    table = write_study_files(tmp_path, study, task.space, storage)
    assert table["fail_reason"].notna().tolist() == [True, False, False]
    assert best_trial_row(table, "min")["number"] in (1, 2)
    assert json.loads((tmp_path / "study.json").read_text())["finished"] == 3


# ---- the tune-model stage -----------------------------------------------------------------

def planted_dataset(n=120, seed=0):
    return planted(n, seed=seed).dataset


def make_preprocess_run(store, cfg, dataset):
    with store.create("preprocess", cfg) as writer:
        save_dataset(writer.path, dataset)
    return writer.run


def test_cuda_without_a_gpu_fails_at_once(ray_session, make_config, tmp_path):
    cfg = make_config(*TINY, "ray.device=cuda")
    store = RunStore.from_config(cfg)
    pre = make_preprocess_run(store, cfg, planted_dataset())
    with pytest.raises(IcurtError, match="no GPU"):
        tune_model.run(cfg, pre, store=store)
    assert not (tmp_path / "tune-model").exists() or not any((tmp_path / "tune-model").iterdir())


def test_bad_inputs_are_errors(make_config, tmp_path):
    cfg = make_config(*TINY)
    store = RunStore.from_config(cfg)
    with pytest.raises(IcurtError, match="no completed preprocess run"):
        tune_model.run(cfg, store=store)
    few = planted_dataset()
    few = Dataset(few.features[:40], np.r_[np.zeros(39), 1].astype(np.int64), few.stay_ids[:40],
                  few.feature_names, {})
    make_preprocess_run(store, cfg, few)
    with pytest.raises(IcurtError, match="1 sample.*class 1.*2 folds"):
        tune_model.run(cfg, store=store)
    with pytest.raises(IcurtError, match="no interrupted tune-model run 'nope'"):
        tune_model.run(cfg, resume="nope", store=store)


def cli_settings(*items):
    return [arg for item in items for arg in ("--set", item)]


def interrupt_once_finished(proc, stage_dir, storage, finished, signum, timeout_s=300):
    """Send `signum` to the `icurt` process once its study has `finished` finished trials and one
    running; returns the run id."""
    deadline = time.monotonic() + timeout_s
    run_id = None
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        tmp = [p.name for p in stage_dir.glob(".tmp-*")] if stage_dir.is_dir() else []
        run_id = run_id or (tmp[0][len(".tmp-"):] if tmp else None)
        if run_id:
            try:
                trials = optuna.load_study(study_name=f"icurt-tune-model-{run_id}", storage=storage).trials
            except KeyError:   # the study is not created yet
                continue
            states = [t.state.name for t in trials]
            if count_finished(states) >= finished and "RUNNING" in states:
                proc.send_signal(signum)
                return run_id
    proc.kill()
    raise AssertionError(f"the tuning run never reached {finished} finished trials: {proc.communicate()}")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_interrupted_run_resumes_its_study(ray_session, make_config, tmp_path, pg_dsn, capsys, signum):
    cfg = make_config(*TINY)
    store = RunStore.from_config(cfg)
    pre = make_preprocess_run(store, cfg, planted_dataset())
    storage = optuna_storage_url(cfg)
    settings = cli_settings(*TINY, f"paths.data={tmp_path}", f"db.dsn={pg_dsn}", "ray.num_cpus=2")
    # Optuna's tables exist before this process (polling) and `icurt` open the storage at once:
    # two processes creating them in a fresh database race (CREATE TYPE ... already exists)
    optuna.storages.RDBStorage(storage)

    # not at the top: Ray workers import this module for its trainables, without tests/helpers
    from signals import STOPPED, assert_one_clean_line, kept_line, sigint_as_a_terminal_gives_it

    # a real interruption: Ctrl-C (SIGINT) or SIGTERM (`kill`, a scheduler) to `icurt tune-model` once
    # 2 of its trials finished; the budget is far more than can finish between two polls (tiny
    # trials take ~0.3 s on a quiet machine)
    proc = subprocess.Popen([sys.executable, "-m", "icurt.cli", "tune-model", *settings,
                             "--set", "tune_model.num_trials=200"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_a_terminal_gives_it)
    run_id = interrupt_once_finished(proc, tmp_path / "tune-model", storage, finished=2, signum=signum)
    _, err = proc.communicate(timeout=120)
    code, _, reason = STOPPED[signum]
    assert proc.returncode == code, err[-3000:]   # an interruption, not an error (nor Ray's crash)
    failed = tmp_path / "tune-model" / f".failed-{run_id}"
    assert_one_clean_line(err, signum)
    assert err.strip().splitlines()[-1] == kept_line(signum, "tune-model", run_id, failed, resumable=True)
    meta = json.loads((failed / "run.json").read_text())
    assert meta["status"] == "failed" and meta["error"] == reason
    assert store.list("tune-model") == []
    study = optuna.load_study(study_name=f"icurt-tune-model-{run_id}", storage=storage)
    before = {t.number: (t.state, t.value, t.params) for t in study.trials
              if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert len(before) >= 2
    # trials cut off by the interruption are FAIL at once, not left RUNNING, and marked to run again
    assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL}
    cut = {t.number: t.params for t in study.trials if t.user_attrs.get("cut_off")}
    assert all(study.trials[n].state == TrialState.FAIL for n in cut)
    written = pd.read_parquet(failed / "trials.parquet")
    assert written["number"].tolist() == [t.number for t in study.trials]
    assert written["state"].tolist() == [t.state.name for t in study.trials]

    # resume in this process: the same study reaches num_trials finished trials, none lost; the
    # cut-off trials run first, with their own parameters, then one new proposal
    wanted = len(before) + len(cut) + 1
    resumed = tune_model.run(with_overrides(cfg, [f"tune_model.num_trials={wanted}"]), resume=run_id,
                             store=store)
    assert resumed.run_id == run_id and resumed.meta["resumed"] == 1
    assert resumed.inputs == {"preprocess": pre.run_id}
    study = optuna.load_study(study_name=f"icurt-tune-model-{run_id}", storage=storage)
    states = [t.state for t in study.trials]
    assert count_finished([s.name for s in states]) == wanted
    assert {t.number: (t.state, t.value, t.params) for t in study.trials if t.number in before} == before
    reruns = {t.user_attrs["rerun_of"]: t for t in study.trials if "rerun_of" in t.user_attrs}
    assert sorted(reruns) == sorted(cut)
    assert all(reruns[n].params == cut[n] and reruns[n].state != TrialState.FAIL for n in cut)
    for trial in study.trials:
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            assert max(trial.intermediate_values) == (2 if trial.state == TrialState.COMPLETE else 1)
    # the resumed sampler does not replay the first run's start-up suggestions
    assert study.trials[-1].params != study.trials[0].params

    best = json.loads(resumed.file("best_hparams.json").read_text())
    assert best["trial"] == study.best_trial.number
    assert best["objective"] == pytest.approx(study.best_trial.value)
    params = study.best_trial.params
    assert best["batch_size"] == 2 ** params["log2_batch_size"] in (16, 32)
    assert best["lstm_hidden"] == 2 ** params["log2_lstm_hidden"] in (8, 16)
    assert best["fc_size"] == 2 ** params["log2_fc_size"]
    same = ("dropout", "learning_rate", "optimizer", "lstm_activation", "fc_activation")
    assert {k: best[k] for k in same} == {k: params[k] for k in same}
    # a mean validation cross-entropy of a 2-class model: ln 2 ≈ 0.69 when it has learned nothing
    assert 0 < best["objective"] < 2

    table = pd.read_parquet(resumed.file("trials.parquet"))
    assert table["number"].tolist() == [t.number for t in study.trials]
    assert table["state"].tolist() == [t.state.name for t in study.trials]
    assert json.loads(resumed.file("study.json").read_text()) == {
        "study_name": study.study_name, "storage": storage_label(storage), "direction": "minimize",
        "trials": len(study.trials), "finished": wanted}
    assert (resumed.path / "ray_results" / "tune").is_dir()
    assert (resumed.path / "ray_results" / "tune-resume1").is_dir()

    capsys.readouterr()
    assert main(["show", "tune-model", *settings]) == 0
    shown = capsys.readouterr().out
    assert f"run {run_id}, trial {study.best_trial.number} (best): COMPLETE" in shown
    assert f"val_loss = {study.best_trial.value:.6g}" in shown
    assert f"batch_size = {best['batch_size']}" in shown
    last = study.trials[-1]
    assert main(["show", "tune-model", run_id, "--trial", str(last.number), *settings]) == 0
    shown = capsys.readouterr().out
    assert f"trial {last.number}: {last.state.name}" in shown
    assert f"learning_rate = {last.params['learning_rate']:.4g}" in shown   # 4 significant digits
    assert main(["show", "tune-model", run_id, "--trial", "99", *settings]) == 2
    assert "no trial 99" in capsys.readouterr().err


def test_extend_errors_before_any_run_is_made(make_config, tmp_path):
    cfg = make_config(*TINY)
    store = RunStore.from_config(cfg)
    pre = make_preprocess_run(store, cfg, planted_dataset())
    with pytest.raises(IcurtError, match="no completed tune-model run 'nope'"):
        tune_model.run(cfg, extend="nope", store=store)
    with pytest.raises(IcurtError, match="pass one"):
        tune_model.run(cfg, resume="a", extend="b", store=store)
    with store.create("tune-model", cfg, inputs=[pre]) as done:
        pass
    (done.run.path).rename(done.run.path.with_name(f".failed-{done.run_id}"))
    with pytest.raises(IcurtError, match=f"did not complete; continue it with `icurt tune-model --resume {done.run_id}`"):
        tune_model.run(cfg, extend=done.run_id, store=store)
    assert store.list("tune-model") == [] and store.failed("tune-model") == [done.run_id]


@pytest.mark.slow
def test_extending_a_completed_run_continues_its_study_in_a_new_run(ray_session, make_config, tmp_path):
    cfg = make_config(*TINY, "tune_model.num_trials=2")
    store = RunStore.from_config(cfg)
    pre = make_preprocess_run(store, cfg, planted_dataset())
    storage = optuna_storage_url(cfg)
    base = tune_model.run(cfg, store=store)
    frozen = {p.relative_to(base.path): p.read_bytes() for p in base.path.rglob("*") if p.is_file()}
    study_name = f"icurt-tune-model-{base.run_id}"
    assert base.meta["study_name"] == study_name
    first = {t.number: (t.state, t.value, t.params) for t in optuna.load_study(study_name=study_name,
                                                                               storage=storage).trials}

    with pytest.raises(IcurtError, match=r"already has 2 finished trials; ask for more with --set "
                                         r"tune_model\.num_trials=N \(N > 2"):
        tune_model.run(cfg, extend=base.run_id, store=store)
    assert len(store.list("tune-model")) == 1 and store.failed("tune-model") == []

    more = with_overrides(cfg, ["tune_model.num_trials=4", "tune_model.dropout=[0.0, 0.4]"])
    extended = tune_model.run(more, extend=base.run_id, store=store)
    assert extended.run_id != base.run_id and extended.inputs == {"preprocess": pre.run_id}
    assert extended.meta["extends"] == base.run_id and extended.meta["study_name"] == study_name
    assert "extending tune-model run {} with changed settings (tune_model.dropout)".format(base.run_id) \
        in extended.file("run.log").read_text()
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert count_finished([t.state.name for t in study.trials]) == 4
    assert {t.number: (t.state, t.value, t.params) for t in study.trials if t.number in first} == first
    with pytest.raises(KeyError):   # no study of its own: the extension adds to the base run's
        optuna.load_study(study_name=f"icurt-tune-model-{extended.run_id}", storage=storage)
    table = pd.read_parquet(extended.file("trials.parquet"))
    assert table["number"].tolist() == [t.number for t in study.trials]
    best = json.loads(extended.file("best_hparams.json").read_text())
    assert best["trial"] == study.best_trial.number and best["objective"] == pytest.approx(study.best_value)
    # the completed run is untouched: same files, same bytes
    assert {p.relative_to(base.path): p.read_bytes() for p in base.path.rglob("*") if p.is_file()} == frozen

    # an interrupted extension resumes into the same study
    extended.path.rename(extended.path.with_name(f".failed-{extended.run_id}"))
    resumed = tune_model.run(with_overrides(more, ["tune_model.num_trials=5"]), resume=extended.run_id,
                             store=store)
    assert resumed.run_id == extended.run_id and resumed.meta["study_name"] == study_name
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert count_finished([t.state.name for t in study.trials]) == 5


def test_trials_train_in_the_train_stages_precision(ray_session, make_config, tmp_path):
    """[train].precision reaches every trial's Trainers, is part of tune-model's reuse key, and a
    precision the trials' device cannot run is refused before the run folder exists."""
    from icurt.model.hparams import ModelHparams
    from icurt.placement import Placement
    from icurt.resume import flat_settings
    from icurt.stages import config_values

    cfg = make_config(*TINY, "train.precision=bf16")
    dataset = planted_dataset()
    task = tune_model.tuning_task(cfg, None, dataset, Placement({"CPU": 1.0}))
    assert task.data["precision"] == "bf16"
    assert flat_settings(config_values(cfg), "tune-model")["train.precision"] == "bf16"
    folds = task.data["folds"]
    with pytest.raises(IcurtError, match="train.precision is fp16"):   # the Trainers get the precision
        tune_model.cross_validation(ModelHparams(), dataset.features, dataset.labels, folds, cfg.tune_model,
                                    cfg.model, "cpu", "fp16")
    cfg = make_config(*TINY, "train.precision=fp16")
    store = RunStore.from_config(cfg)
    preprocess_run = make_preprocess_run(store, cfg, dataset)
    with pytest.raises(IcurtError, match="train.precision is fp16 but the model runs on the CPU"):
        tune_model.run(cfg, preprocess_run, store=store)
    assert store.list("tune-model") == [] and store.failed("tune-model") == []
