"""tune-attack on a tiny LSTM trained here with the real Trainer and saved as a fake train run."""

import json
import logging
import re
import tomllib

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from icurt.attack.attacker import AttackHparams
from icurt.attack.batching import AUTO_BATCH_SIZE
from icurt.attack.objectives import attack_score
from icurt.attack.samples import SampleResults, attack_samples
from icurt.attack.tuned import read_tuned
from icurt.cli import main
from icurt.config import load_config, named_config_path, with_overrides
from icurt.dataset import save_dataset
from icurt.db.connection import optuna_storage_url
from icurt.errors import IcurtError
from icurt.model import checkpoint
from icurt.model.hparams import ModelHparams
from icurt.model.trainer import Trainer
from icurt.placement import Placement
from icurt.planted import planted_dataset as planted
from icurt.runs import RunStore
from icurt.stages import tune_attack
from icurt.tuning.stage import study_plan
from icurt.tuning.trials import count_finished

TINY = ["tune_attack.epochs_per_batch=20", "tune_attack.report_interval=5", "tune_attack.max_num_samples=24",
        "tune_attack.sample_selection_seed=7", "tune_attack.batch_size_exponents=[3, 4]",
        "tune_attack.optuna_startup_trials=2", "tune_attack.asha_grace_period=1",
        "tune_attack.learning_rate=[0.001, 0.1]", "tune_attack.lambda_1=[1e-5, 1e-2]",
        "tune_attack.cpus_per_trial=1.0", "tune_attack.fold_choice=fixed", "tune_attack.fold=1",
        "tune_attack.samples=all", "ray.device=cpu"]


# ---- pure logic ---------------------------------------------------------------------------

def test_search_space_follows_the_config_ranges():
    """The batch size is searched only for a method that couples samples (the reference's): with
    icurt's it changes nothing."""
    cfg = with_overrides(load_config(env={}), ["tune_attack.kappa=[0.5, 1.5]"])
    common = {"kappa": FloatDistribution(0.5, 1.5), "lambda_1": FloatDistribution(1e-7, 1.0, log=True),
              "learning_rate": FloatDistribution(1e-5, 1.0, log=True),
              "optimizer": CategoricalDistribution(("adam", "rmsprop", "sgd"))}
    assert tune_attack.search_space(cfg.tune_attack, cfg.attack_method) == common
    reference = load_config(named_config_path("reference"), env={}, overrides=["tune_attack.kappa=[0.5, 1.5]"])
    assert tune_attack.search_space(reference.tune_attack, reference.attack_method) == \
        {**common, "log2_batch_size": IntDistribution(5, 7)}


@pytest.mark.parametrize("override,key", [("tune_attack.kappa=[2.0, 0.0]", "tune_attack.kappa"),
                                          ("tune_attack.lambda_1=[1.0, 1e-7]", "tune_attack.lambda_1"),
                                          ("tune_attack.optimizers=[]", "tune_attack.optimizers")])
def test_inverted_or_empty_search_space_is_rejected_at_load(override, key):
    with pytest.raises(IcurtError, match=re.escape(key)):
        with_overrides(load_config(env={}), [override])


def test_asha_rungs_count_reports_and_the_budget_is_the_iterations():
    cfg = with_overrides(load_config(env={}), ["tune_attack.asha_grace_period=3",
                                               "tune_attack.report_interval=100",
                                               "tune_attack.epochs_per_batch=1000", "tune_attack.samples=all"])
    task = tune_attack.tuning_task(cfg, None, None, planted_dataset(), 1, Placement({"CPU": 1.0}))
    plan = study_plan(task, "r1")
    assert (plan.step_attr, plan.grace_period, plan.max_step, plan.mode) == ("iteration", 300, 1000, "max")
    assert plan.study_name == "icurt-tune-attack-r1" and plan.resources == {"CPU": 1.0}


@pytest.mark.parametrize("prune", [True, False])
def test_prune_false_lets_every_trial_run_its_budget(prune):
    from types import SimpleNamespace

    from icurt.tuning.study import scheduler

    cfg = with_overrides(load_config(env={}), ["tune_attack.asha_grace_period=1", "tune_attack.report_interval=10",
                                               "tune_attack.epochs_per_batch=100", f"tune_attack.prune={str(prune).lower()}",
                                               "tune_attack.samples=all"])
    task = tune_attack.tuning_task(cfg, None, None, planted_dataset(), 1, Placement({"CPU": 1.0}))
    plan = study_plan(task, "r1")
    assert plan.prune is prune
    stopped: set = set()
    chosen = scheduler(plan, stopped)
    trials = [SimpleNamespace(trial_id=f"t{i}") for i in range(4)]
    for trial in trials:
        chosen.on_trial_add(None, trial)
    # at the first rung (10 iterations), trials far below the first: ASHA stops them, no pruning keeps them
    decisions = [chosen.on_trial_result(None, trial, {"iteration": 10, "score": score})
                 for trial, score in zip(trials, [10.0, 9.0, 1.0, 0.5])]
    assert (decisions.count("STOP"), len(stopped)) == ((3, 3) if prune else (0, 0))


def test_score_sums_the_successful_samples_best_perturbations():
    best_p = np.zeros((3, 2, 2), np.float32)
    best_p[0, 0, 0] = 0.5                     # 1 of 4 non-zero: sparsity .75, L1 .5 → 1.5
    best_p[1, :, 0] = [0.25, 0.25]            # sparsity .5, L1 .5 → 1.0
    best_p[2, 1, 1] = 0.1                     # not successful: not counted
    results = SampleResults(success=np.array([True, True, False]), first_iteration=np.zeros(3, np.int64),
                            best_iteration=np.zeros(3, np.int64), first_loss=np.zeros(3, np.float32),
                            best_loss=np.zeros(3, np.float32), first_p=best_p, best_p=best_p,
                            orig_logits=np.zeros((3, 2), np.float32), adv_logits=np.zeros((3, 2), np.float32),
                            attacked=np.ones(3, bool))
    assert attack_score("sparse_small", results, 10) == pytest.approx(2.5)
    assert attack_score("sparsity", results, 10) == pytest.approx(1.25)


# ---- the stage ------------------------------------------------------------------------------

def planted_dataset(n=120, seed=1):
    return planted(n, seed=seed, death_rate=0.3).dataset


@pytest.fixture
def train_run(make_config):
    """preprocess → tune-model → train runs; the train run holds fold_1, a Trainer-trained tiny LSTM."""
    cfg = make_config(*TINY)
    store = RunStore.from_config(cfg)
    dataset = planted_dataset()
    with store.create("preprocess", cfg) as writer:
        save_dataset(writer.path, dataset)
    with store.create("tune-model", cfg, inputs=[writer.run]) as tuned:
        pass
    hp = ModelHparams(lstm_hidden=8, fc_size=8, dropout=0.0, learning_rate=1e-2, batch_size=32)
    trainer = Trainer(hp, dataset.features[:90], dataset.labels[:90], dataset.features[90:],
                      dataset.labels[90:], seed=0)
    for _ in range(4):
        trainer.train_epoch()
    with store.create("train", cfg, inputs=[tuned.run]) as trained:
        checkpoint.save(trained.path / "fold_1", checkpoint.Checkpoint.of(trainer.model, hp, 19))
    return cfg, store, trained.run, dataset


def test_the_attacked_fold_is_the_median_by_validation_loss_or_the_one_named(train_run):
    """Held-out val_loss per fold 0.5, 0.3, 0.4 → sorted 0.3 (fold 1), 0.4 (fold 2), 0.5 (fold 0):
    the median is fold 2. Tuning samples come from that fold's held-out rows by default."""
    from icurt.attack.batches import select_samples
    from icurt.model.folds import FoldRows
    from icurt.model.summary import summarize_folds, write_summary
    from icurt.model.train_run import write_fold_rows

    cfg, store, run, dataset = train_run
    names = ("auroc", "auprc", "brier", "f1", "precision", "recall", "accuracy", "val_loss")
    write_summary(run.path, summarize_folds([{"fold": k, "best_epoch": 1, "metrics": {m: loss for m in names}}
                                             for k, loss in enumerate([0.5, 0.3, 0.4])]))
    held = np.arange(3, 120, 4)
    write_fold_rows(run.path / "fold_2", FoldRows(np.setdiff1d(np.arange(120), held), held, held), np.arange(120))
    median = with_overrides(cfg, ["tune_attack.fold_choice=median", "tune_attack.samples=held_out"])
    assert tune_attack.attacked_fold(run, median.tune_attack, None) == (2, "median validation loss")
    assert tune_attack.attacked_fold(run, median.tune_attack, 0) == (0, "--fold")
    assert tune_attack.attacked_fold(run, cfg.tune_attack, None) == (1, "fixed")
    task = tune_attack.tuning_task(median, run, None, dataset, 2, Placement({"CPU": 1.0}), "median validation loss")
    rows = held[select_samples(len(held), 24, 7)]
    np.testing.assert_array_equal(task.data["x"], dataset.features[rows])
    assert task.extra_meta == {"fold": 2, "fold_choice": "median validation loss", "samples": "held_out",
                               "candidates": 30, "num_samples": 24}


def test_missing_fold_and_cuda_without_gpu_are_errors(ray_session, train_run):
    cfg, store, run, _ = train_run
    with pytest.raises(IcurtError, match="no fold_0/best.pt; pick one of fold_1"):
        tune_attack.run(cfg, run, fold=0, store=store)
    with pytest.raises(IcurtError, match="no GPU"):
        tune_attack.run(with_overrides(cfg, ["ray.device=cuda"]), run, store=store)
    assert store.list("tune-attack") == [] and store.failed("tune-attack") == []


@pytest.mark.slow
def test_tuning_run_writes_its_study_and_resumes(ray_session, train_run, capsys, caplog):
    cfg, store, train, dataset = train_run
    cfg = with_overrides(cfg, ["tune_attack.num_trials=3"])
    run = tune_attack.run(cfg, store=store)
    assert run.inputs == {"train": train.run_id} and run.meta["fold"] == 1

    storage = optuna_storage_url(cfg)
    study = optuna.load_study(study_name=f"icurt-tune-attack-{run.run_id}", storage=storage)
    assert count_finished([t.state.name for t in study.trials]) == 3 == len(study.trials)
    for trial in study.trials:
        steps = sorted(trial.intermediate_values)
        assert steps == list(range(5, steps[-1] + 1, 5))   # reported every 5 iterations
        assert (trial.state == TrialState.COMPLETE) == (steps[-1] == 20)

    best = json.loads(run.file("best_attack_hparams.json").read_text())
    assert best["trial"] == study.best_trial.number and best["fold"] == 1
    assert best["objective"] == pytest.approx(study.best_trial.value)
    params = study.best_trial.params
    assert "log2_batch_size" not in params   # icurt's method: trials ran at the CPU's auto size
    assert (best["batch_size"], best["batch_size_reason"]) == (AUTO_BATCH_SIZE["cpu"], "auto")
    assert {k: best[k] for k in ("kappa", "lambda_1", "learning_rate", "optimizer")} == \
        {k: params[k] for k in ("kappa", "lambda_1", "learning_rate", "optimizer")}

    # the best score, recomputed here: the same 24 samples attacked with the best hyperparameters
    rows = np.sort(np.random.default_rng(7).choice(120, size=24, replace=False))
    model = checkpoint.load(train.path / "fold_1").build()
    hp = AttackHparams.from_dict(best)
    tuned = read_tuned(run)
    assert tuned.hp == hp and tuned.method == cfg.attack_method and tuned.fold == 1
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # as in the trial, so the float sums run in the same order
    try:
        results = attack_samples(model, dataset.features[rows], dataset.labels[rows], hp, tuned.method,
                                 iterations=20)
    finally:
        torch.set_num_threads(threads)
    p = results.best_p[results.success].reshape(int(results.success.sum()), -1)
    expected = sum((1 - (row != 0).mean()) / np.abs(row).sum() for row in p)
    assert best["objective"] == pytest.approx(expected, rel=1e-4)

    table = pd.read_parquet(run.file("trials.parquet"))
    assert list(table.columns[:7]) == ["number", "state", "objective", "kappa", "lambda_1", "learning_rate",
                                       "optimizer"]
    assert table["state"].tolist() == [t.state.name for t in study.trials]

    assert main(["show", "tune-attack", run.run_id, "--set", f"paths.data={store.root}"]) == 0
    shown = capsys.readouterr().out
    assert f"trial {best['trial']} (best): COMPLETE" in shown and f"optimizer = {best['optimizer']}" in shown
    assert "score (sparse_small)" in shown

    run.path.rename(run.path.parent / f".failed-{run.run_id}")   # as an interrupted run is left
    more = with_overrides(cfg, ["tune_attack.num_trials=4", "tune_attack.fold=0",   # fold comes from the run
                                "tune_attack.n_critical=5", "attack_method.early_stop_patience=3"])
    icurt_log = logging.getLogger("icurt")
    icurt_log.addHandler(caplog.handler)   # the CLI call above stopped icurt's records reaching the root
    try:
        resumed = tune_attack.run(more, resume=run.run_id, store=store)
    finally:
        icurt_log.removeHandler(caplog.handler)
    assert resumed.run_id == run.run_id and resumed.meta["fold"] == 1
    # the study goes on with the settings it started with; only num_trials is today's
    assert (f"resuming tune-attack run {run.run_id} with the settings it started with; today's differ in "
            "attack_method.early_stop_patience, tune_attack.fold, tune_attack.n_critical") in caplog.text
    started = tomllib.loads(resumed.file("config.toml").read_text())
    assert started["tune_attack"]["n_critical"] == cfg.tune_attack.n_critical != 5
    assert started["attack_method"]["early_stop_patience"] == cfg.attack_method.early_stop_patience != 3
    assert started["tune_attack"]["num_trials"] == 4
    study = optuna.load_study(study_name=f"icurt-tune-attack-{run.run_id}", storage=storage)
    assert count_finished([t.state.name for t in study.trials]) == 4
    assert len(pd.read_parquet(resumed.file("trials.parquet"))) == len(study.trials)


@pytest.mark.slow
def test_extend_continues_a_completed_study_in_a_new_run(ray_session, train_run, pg_dsn, capsys):
    cfg, store, train, _ = train_run
    base = tune_attack.run(with_overrides(cfg, ["tune_attack.num_trials=2"]), store=store)
    storage = optuna_storage_url(cfg)
    study_name = f"icurt-tune-attack-{base.run_id}"
    settings = [arg for item in [*TINY, f"paths.data={store.root}", f"db.dsn={pg_dsn}", "tune_attack.fold=0"]
                for arg in ("--set", item)]
    # the fold comes from the extended run; --fold naming another one is an error
    assert main(["tune-attack", "--extend", base.run_id, "--fold", "0", *settings]) == 2
    assert "attacks fold 1, not 0; drop --fold when extending" in capsys.readouterr().err
    assert main(["tune-attack", "--extend", base.run_id, *settings, "--set", "tune_attack.num_trials=3"]) == 0
    out = capsys.readouterr().out
    extended = store.latest("tune-attack")
    assert extended.run_id != base.run_id and f"tune-attack run {extended.run_id} written to" in out
    assert extended.meta["extends"] == base.run_id and extended.meta["fold"] == 1
    assert extended.inputs == {"train": train.run_id}
    study = optuna.load_study(study_name=study_name, storage=storage)
    assert count_finished([t.state.name for t in study.trials]) == 3
    assert len(pd.read_parquet(extended.file("trials.parquet"))) == len(study.trials)
    assert len(pd.read_parquet(base.file("trials.parquet"))) == 2      # the completed run as it was
    assert json.loads(extended.file("best_attack_hparams.json").read_text())["trial"] == study.best_trial.number
