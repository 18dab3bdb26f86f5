"""Stage 3, `icurt tune-model`: the BiLSTM's hyperparameters tuned by the shared tuning stage
(Ray Tune + OptunaSearch + ASHA, icurt/tuning/stage.py), scored by the mean validation loss over
stratified folds (grouped by patient unless [tune_model].split = "stay"), of the network [model]
shapes, in the precision [train].precision names (so trials train as the train stage will).

A trial trains one model per fold; after every block of `epochs_per_cv_epoch` epochs ("cv epoch")
it reports the fold means and ASHA may stop it there. Its score is the mean validation loss of its
last cv epoch, or of its best ([tune_model].trial_score = "best", the reference). A trial whose
loss or scores stop being finite ends FAIL with the reason in the trials table; it counts towards
num_trials and tuning goes on. The dataset reaches trials through Ray's object store. Writes
best_hparams.json, trials.parquet and study.json.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import numpy as np

from icurt.config import Config, ModelConfig, TuneModelConfig
from icurt.model.hparams import ModelHparams
from icurt.placement import WorkerSetup
from icurt.runs import Run, RunStore
from icurt.tuning.space import LOG2_PREFIX, choice, decode_params, exponent_range, uniform

if TYPE_CHECKING:
    from icurt.tuning.stage import TuningTask

log = logging.getLogger("icurt")

STAGE = "tune-model"
BEST_FILE = "best_hparams.json"
METRIC, STEP = "val_loss", "cv_epoch"


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


def cross_validation(hp: ModelHparams, features: np.ndarray, labels: np.ndarray, folds, tm: TuneModelConfig,
                     shape: ModelConfig, device: str = "cpu", precision: str = "fp32"):
    """One Trainer per fold, advanced together, in `precision` ([train].precision: trials train as
    the train stage will): yields the fold means after each cv epoch (model/trainer.py
    cross_validation_rounds: the score of [tune_model].trial_score, or divergence)."""
    from icurt.model.trainer import Trainer, cross_validation_rounds

    trainers = [Trainer(hp, features[train], labels[train], features[val], labels[val], device=device,
                        seed=tm.seed + fold, shape=shape, precision=precision)
                for fold, (train, val) in enumerate(folds)]
    return cross_validation_rounds(trainers, tm.cv_epochs, tm.epochs_per_cv_epoch, METRIC, tm.trial_score)


def cross_validate_trial(config: dict, features: np.ndarray, labels: np.ndarray, folds: list, tm: TuneModelConfig,
                         shape: ModelConfig, worker: WorkerSetup, precision: str = "fp32") -> None:
    """Ray Tune trainable: reports the fold means after every cv epoch (ASHA may stop it there); a
    diverged trial reports its reason once (an infinite loss for ASHA) and ends."""
    from ray import tune

    from icurt.tuning.trials import FAIL_REASON

    hp = ModelHparams.from_dict(decode_params(config))
    rounds = cross_validation(hp, features, labels, folds, tm, shape, worker.torch_device(), precision)
    for cv_epoch, metrics in enumerate(rounds, start=1):
        if metrics["diverged"]:
            tune.report({STEP: cv_epoch, METRIC: math.inf, "diverged": True, FAIL_REASON: metrics["reason"]})
            return
        tune.report({STEP: cv_epoch, **metrics})


def tuning_task(cfg: Config, input_run: Run, dataset, placement) -> TuningTask:
    """tune-model's part of the shared tuning stage, on `dataset` (of preprocess run `input_run`)."""
    from icurt.model.folds import make_folds
    from icurt.tuning.stage import TuningTask
    from icurt.tuning.trials import best_hparams_of

    tm = cfg.tune_model
    space = search_space(tm)

    def best_record(row: dict) -> dict:
        hparams = ModelHparams.from_dict(best_hparams_of(row, space)).to_dict()
        return {**hparams, "objective": row["objective"], "trial": row["number"]}

    folds = make_folds(dataset.labels, dataset.subject_ids, tm.num_folds, tm.fold_seed, tm.split,
                       setting="tune_model.num_folds")
    return TuningTask(
        stage=STAGE, settings=tm, space=space, trainable=cross_validate_trial,
        data={"features": dataset.features, "labels": dataset.labels, "folds": folds, "tm": tm,
              "shape": cfg.model, "worker": placement.worker(), "precision": cfg.train.precision},
        metric=METRIC, mode="min", step_attr=STEP, max_step=tm.cv_epochs, grace_period=tm.asha_grace_period,
        placement=placement, input_run=input_run, best_file=BEST_FILE, best_record=best_record,
        what=f"on {len(dataset.labels)} samples, folds by {tm.split}")


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, resume: str | None = None,
        extend: str | None = None) -> Run:
    """Tune on a preprocess run (the newest by default); `resume` continues an interrupted run,
    `extend` the study of a completed one (in a new run)."""
    from icurt.dataset import load_dataset
    from icurt.db.connection import optuna_storage_url
    from icurt.model.folds import check_foldable
    from icurt.model.precision import check_precision
    from icurt.placement import cluster_capacity, place
    from icurt.ray_runtime import init_ray
    from icurt.resume import settings_at_start
    from icurt.tuning.stage import tune_stage, tuning_input

    input_run = tuning_input(store, STAGE, input_run, resume, extend)
    if resume:   # the study goes on as it started; only its number of trials may change
        cfg = settings_at_start(store, STAGE, resume, cfg, keep=("tune_model.num_trials",))
    tm = cfg.tune_model
    storage_url = optuna_storage_url(cfg)
    dataset = load_dataset(input_run.path)
    check_foldable(dataset.labels, tm.num_folds, "the cohort",
                   dataset.subject_ids if tm.split == "patient" else None, "tune_model.num_folds")
    placement = place(cfg.ray.device, cluster_capacity(init_ray(cfg)), "tune_model", tm.cpus_per_trial,
                      tm.gpus_per_trial)
    check_precision(cfg.train.precision, placement.device)
    return tune_stage(cfg, tuning_task(cfg, input_run, dataset, placement), store=store,
                      storage_url=storage_url, resume=resume, extend=extend)


def learned_nothing_in(run: Run) -> str | None:
    """Why the best trial of tune-model run `run` learned nothing (model/learned_nothing.py), or None."""
    from icurt.model.learned_nothing import learned_nothing
    from icurt.tuning.trials import read_trials

    table = read_trials(run.path)
    return learned_nothing(table.loc[table["state"] == "COMPLETE", "objective"].astype(float).tolist())


def chosen_hparams(tune_run: Run, trial: int | None = None) -> tuple[ModelHparams, str]:
    """The hyperparameters a tune-model run chose (its best_hparams.json), or those of trial `trial`
    of its trials table; with where they came from ("best" or "trial N")."""
    from icurt.errors import IcurtError
    from icurt.files import read_json
    from icurt.tuning.trials import read_trials, trial_row

    if trial is None:
        path = tune_run.file(BEST_FILE)
        if not path.is_file():
            raise IcurtError(f"tune-model run '{tune_run.run_id}' has no {BEST_FILE}; "
                             "pick a completed tune-model run (`icurt runs tune-model`)")
        values, source = read_json(path), "best"
    else:
        values, source = trial_row(read_trials(tune_run.path), trial, "min"), f"trial {trial}"
        if values.get("state") == "FAIL":   # diverged, or cut off by an interruption: nothing to reproduce
            raise IcurtError(f"trial {trial} of tune-model run '{tune_run.run_id}' failed "
                             f"({values.get('fail_reason') or 'no reason recorded'}); pick a COMPLETE or "
                             f"PRUNED trial (`icurt show tune-model {tune_run.run_id} --trial N`)")
    missing = [name for name in ModelHparams.__dataclass_fields__ if name not in values]
    hp = ModelHparams.from_dict(values)
    problems = hp.problems() + [f"no {name}" for name in missing]
    if problems:
        raise IcurtError(f"the hyperparameters of tune-model run '{tune_run.run_id}' ({source}) are "
                         f"invalid ({'; '.join(problems)}): {hp.to_dict()}; choose another run or trial")
    return hp, source


def show(run: Run, cfg: Config, trial: int | None = None) -> str:
    from icurt.tuning.trials import describe_trial

    described = describe_trial(run, trial, "min", METRIC, search_space(cfg.tune_model))
    why = learned_nothing_in(run)
    return described if not why else (
        f"{described}\nwarning: the best trial learned nothing: {why}; widen [tune_model]'s ranges "
        f"(learning_rate, optimizers) or raise num_trials before training it")
