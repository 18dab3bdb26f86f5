"""Stage 3, tune-model: Ray Tune + OptunaSearch (TPE, study in PostgreSQL) + ASHA over the
LSTM's hyperparameters, scored by the mean validation loss over stratified folds.

A trial trains one model per fold; after every block of `epochs_per_cv_epoch` epochs ("cv epoch")
it reports the fold means, and ASHA may stop it there. The dataset reaches trials through Ray's
object store.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from icurt.config import Config, TuneModelConfig
from icurt.model.lstm import ModelHparams
from icurt.runs import Run, RunStore
from icurt.study_resume import resumed_input, settings_changed_since, warn_changed_settings
from icurt.study_runner import run_study_keeping_trials
from icurt.tuning import (LOG2_PREFIX, StudyPlan, best_hparams_of, best_trial_row, choice, decode_params,
                          exponent_range, trial_resources, uniform, write_study_files)

log = logging.getLogger("icurt")

STAGE = "tune-model"
BEST_FILE = "best_hparams.json"
METRIC, STEP = "val_loss", "cv_epoch"


@dataclass(frozen=True)
class FoldPlan:
    """What one trial needs besides its hyperparameters and the data."""

    num_folds: int
    fold_seed: int
    cv_epochs: int
    epochs_per_cv_epoch: int
    seed: int
    use_gpu: bool      # the trial holds a GPU share (Ray sets CUDA_VISIBLE_DEVICES to it)
    num_threads: int


def search_space(tm: TuneModelConfig) -> dict:
    """Optuna distributions of the model's hyperparameters, from the [tune_model] ranges."""
    return {
        f"{LOG2_PREFIX}batch_size": exponent_range(tm.batch_size_exponents),
        f"{LOG2_PREFIX}lstm_hidden": exponent_range(tm.lstm_hidden_exponents),
        "lstm_activation": choice(tm.lstm_activations),
        "dropout": uniform(tm.dropout),
        f"{LOG2_PREFIX}fc_size": exponent_range(tm.fc_size_exponents),
        "fc_activation": choice(tm.fc_activations),
        "optimizer": choice(tm.optimizers),
        "learning_rate": uniform(tm.learning_rate, log=True),
    }


def mean_over_folds(fold_metrics: list[dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over the folds."""
    return {name: float(np.mean([m[name] for m in fold_metrics])) for name in fold_metrics[0]}


def cross_validation_rounds(hp: ModelHparams, features: np.ndarray, labels: np.ndarray, plan: FoldPlan,
                            device: str = "cpu") -> Iterator[dict]:
    """One Trainer per fold; after every cv epoch yields the fold means (and `cv_epoch`).

    A model whose validation loss stops being finite has diverged: its later rounds report an
    infinite loss without training (it would not recover).
    """
    from icurt.model.folds import stratified_folds
    from icurt.model.trainer import Trainer

    trainers = [Trainer(hp, features[train], labels[train], features[val], labels[val],
                        device=device, seed=plan.seed + fold)
                for fold, (train, val) in enumerate(stratified_folds(labels, plan.num_folds, plan.fold_seed))]
    diverged = False
    for cv_epoch in range(1, plan.cv_epochs + 1):
        if diverged:
            yield {STEP: cv_epoch, METRIC: math.inf, "diverged": True}
            continue
        for trainer in trainers:
            for _ in range(plan.epochs_per_cv_epoch):
                trainer.train_epoch()
        metrics = mean_over_folds([trainer.evaluate() for trainer in trainers])
        diverged = not math.isfinite(metrics[METRIC])
        yield {STEP: cv_epoch, **metrics, METRIC: math.inf if diverged else metrics[METRIC],
               "diverged": diverged}


def cross_validate_trial(config: dict, features: np.ndarray, labels: np.ndarray, plan: FoldPlan) -> None:
    """Ray Tune trainable: reports the fold means after every cv epoch (ASHA may stop it there)."""
    import torch
    from ray import tune

    torch.set_num_threads(plan.num_threads)
    device = "cuda" if plan.use_gpu and torch.cuda.is_available() else "cpu"
    hp = ModelHparams.from_dict(decode_params(config))
    for metrics in cross_validation_rounds(hp, features, labels, plan, device):
        tune.report(metrics)


def fold_plan(cfg: Config, use_gpu: bool) -> FoldPlan:
    tm = cfg.tune_model
    return FoldPlan(tm.num_folds, tm.fold_seed, tm.cv_epochs, tm.epochs_per_cv_epoch, tm.seed, use_gpu,
                    max(1, int(tm.cpus_per_trial)))


def study_plan(cfg: Config, run_id: str, resources: dict) -> StudyPlan:
    tm = cfg.tune_model
    return StudyPlan(stage=STAGE, run_id=run_id, metric=METRIC, mode="min", step_attr=STEP,
                     max_step=tm.cv_epochs, grace_period=tm.asha_grace_period,
                     reduction_factor=tm.asha_reduction_factor, num_trials=tm.num_trials,
                     startup_trials=tm.optuna_startup_trials, seed=tm.seed,
                     max_concurrent_trials=tm.max_concurrent_trials, resources=resources)


def run(cfg: Config, preprocess_run: Run | None = None, resume_id: str | None = None,
        store: RunStore | None = None) -> Run:
    """Tune the model on a preprocess run (the newest by default); `resume_id` continues an interrupted run."""
    from icurt.dataset import load_dataset
    from icurt.db.connection import optuna_storage_url
    from icurt.model.folds import check_foldable
    from icurt.ray_runtime import cluster_gpus, init_ray

    store = store or RunStore.from_config(cfg)
    tm = cfg.tune_model
    if resume_id:
        preprocess_run = resumed_input(store, STAGE, "preprocess", resume_id, given=preprocess_run)
    changed = settings_changed_since(store, STAGE, resume_id, "tune_model", tm) if resume_id else []
    preprocess_run = preprocess_run or store.resolve("preprocess", None)
    dataset = load_dataset(preprocess_run.path)
    check_foldable(dataset.labels, tm.num_folds)
    space = search_space(tm)
    ray = init_ray(cfg)
    from ray import tune

    resources = trial_resources("tune_model", cfg.ray.device, tm.cpus_per_trial, tm.gpus_per_trial,
                                float(ray.cluster_resources().get("CPU", 0)), cluster_gpus())
    storage_url = optuna_storage_url(cfg)
    trainable = tune.with_parameters(cross_validate_trial, features=dataset.features,
                                     labels=dataset.labels, plan=fold_plan(cfg, "GPU" in resources))
    with store.create(STAGE, cfg, inputs=[preprocess_run], resume_id=resume_id) as writer:
        warn_changed_settings("tune_model", changed)
        plan = study_plan(cfg, writer.run_id, resources)
        experiment = f"tune-resume{writer.meta['resumed']}" if resume_id else "tune"
        log.info("tuning %d trials on %d samples (study %s)", tm.num_trials, len(dataset.labels),
                 plan.study_name)
        study = run_study_keeping_trials(plan, trainable, space, storage_url, writer.path, experiment)
        table = write_study_files(writer.path, study, space, storage_url)
        best = best_trial_row(table, "min")
        hparams = ModelHparams.from_dict(best_hparams_of(best, space)).to_dict()
        (writer.path / BEST_FILE).write_text(json.dumps(
            {**hparams, "objective": best["objective"], "trial": best["number"]}, indent=2))
        log.info("best trial %d: val_loss %.4f with %s", best["number"], best["objective"], hparams)
    return writer.run

