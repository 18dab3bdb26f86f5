"""Stage 5, tune-attack: Ray Tune + OptunaSearch (TPE, study in PostgreSQL) + ASHA over the
sparse attack's hyperparameters, on one fold's model of a train run.

A trial attacks the same `max_num_samples` samples (chosen with `sample_selection_seed`) and,
after every `report_interval` iterations, reports its score: the objective summed over the
samples that have an adversarial example. The model weights and the samples reach trials through
Ray's object store.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import numpy as np

from icurt.config import Config, TuneAttackConfig
from icurt.errors import IcurtError
from icurt.runs import Run, RunStore
from icurt.study_resume import resumed_input, resumed_run_meta, settings_changed_since, warn_changed_settings
from icurt.study_runner import run_study_keeping_trials
from icurt.tuning import (LOG2_PREFIX, StudyPlan, best_hparams_of, best_trial_row, choice, decode_params,
                          exponent_range, trial_resources, uniform, write_study_files)

log = logging.getLogger("icurt")

STAGE = "tune-attack"
BEST_FILE = "best_attack_hparams.json"
METRIC, STEP = "score", "iteration"


@dataclass(frozen=True)
class AttackPlan:
    """What one trial needs besides its hyperparameters, the model and the samples."""

    iterations: int
    report_interval: int
    objective: str
    n_critical: int
    max_perts: int
    method_settings: dict    # [attack]'s lambda search and early stop, so trials score the attack that runs
    attack_misclassified: bool
    use_gpu: bool      # the trial holds a GPU share (Ray sets CUDA_VISIBLE_DEVICES to it)
    num_threads: int


def search_space(ta: TuneAttackConfig) -> dict:
    """Optuna distributions of the attack's hyperparameters, from the [tune_attack] ranges."""
    return {
        "kappa": uniform(ta.kappa),
        "lambda_1": uniform(ta.lambda_1, log=True),
        "learning_rate": uniform(ta.learning_rate, log=True),
        f"{LOG2_PREFIX}batch_size": exponent_range(ta.batch_size_exponents),
        "optimizer": choice(ta.optimizers),
    }


def attack_score(objective: str, results, n_critical: int) -> float:
    """The objective summed over the samples with an adversarial example (their best ones)."""
    from icurt.attack.objectives import objective_score

    score = objective_score(objective, results.best_p[results.success], n_critical)
    return score if not math.isnan(score) else -math.inf


def attack_trial(config: dict, state_dict: dict, model_spec: dict, x: np.ndarray, y: np.ndarray,
                 plan: AttackPlan) -> None:
    """Ray Tune trainable: attack the samples, reporting the score after every block of iterations."""
    import torch
    from ray import tune

    from icurt.attack.attacker import AttackHparams
    from icurt.attack.samples import attack_samples
    from icurt.model.lstm import LSTMClassifier, ModelHparams

    torch.set_num_threads(plan.num_threads)
    hp = AttackHparams.from_dict({**decode_params(config), "max_perts": plan.max_perts,
                                  **plan.method_settings})
    device = "cuda" if plan.use_gpu and torch.cuda.is_available() else "cpu"
    model = LSTMClassifier(int(model_spec["num_features"]), ModelHparams.from_dict(model_spec["hparams"]))
    model.load_state_dict(state_dict)
    last = {"step": 0}

    def report(iterations: int, results) -> None:
        last["step"] = iterations
        tune.report({STEP: iterations, METRIC: attack_score(plan.objective, results, plan.n_critical),
                     "successes": int(results.success.sum()), "attacked": int(results.attacked.sum())})

    results = attack_samples(model.eval(), x, y, hp, plan.iterations, device=device,
                             attack_misclassified=plan.attack_misclassified,
                             report_every=plan.report_interval, on_report=report)
    if last["step"] < plan.iterations:  # the budget's last block was not reported: report its end
        report(plan.iterations, results)


def selected_samples(num_samples: int, max_num_samples: int, seed: int) -> np.ndarray:
    """Dataset rows to attack: all, or max_num_samples drawn with `seed` (as the full attack draws)."""
    from icurt.attack.full import select_samples

    return select_samples(num_samples, max_num_samples, seed)


def study_plan(cfg: Config, run_id: str, resources: dict) -> StudyPlan:
    ta = cfg.tune_attack
    return StudyPlan(stage=STAGE, run_id=run_id, metric=METRIC, mode="max", step_attr=STEP,
                     max_step=ta.epochs_per_batch, grace_period=ta.asha_grace_period * ta.report_interval,
                     reduction_factor=ta.asha_reduction_factor, num_trials=ta.num_trials,
                     startup_trials=ta.optuna_startup_trials, seed=ta.seed,
                     max_concurrent_trials=ta.max_concurrent_trials, resources=resources)


def fold_model(train_run: Run, fold: int) -> tuple[dict, dict]:
    """(state_dict, model.json) of fold `fold` of a train run, loaded as plain tensors."""
    import torch

    folder = train_run.path / f"fold_{fold}"
    if not (folder / "best.pt").is_file() or not (folder / "model.json").is_file():
        trained = sorted(p.name for p in train_run.path.glob("fold_*") if (p / "best.pt").is_file())
        raise IcurtError(f"train run {train_run.run_id} has no fold_{fold}/best.pt; pick one of "
                         f"{', '.join(trained) or 'its folds (none trained)'} with --fold")
    state_dict = torch.load(folder / "best.pt", map_location="cpu", weights_only=True)
    return state_dict, json.loads((folder / "model.json").read_text())


def run(cfg: Config, train_run: Run | None = None, fold: int | None = None, resume_id: str | None = None,
        store: RunStore | None = None) -> Run:
    """Tune the attack on fold `fold` (default [tune_attack].fold) of a train run (the newest by default)."""
    from icurt.dataset import load_dataset
    from icurt.db.connection import optuna_storage_url
    from icurt.ray_runtime import cluster_gpus, init_ray

    store = store or RunStore.from_config(cfg)
    ta = cfg.tune_attack
    if resume_id:
        train_run = resumed_input(store, STAGE, "train", resume_id, given=train_run)
        recorded_fold = resumed_run_meta(store, STAGE, resume_id).get("fold")
        if fold is not None and recorded_fold is not None and fold != recorded_fold:
            raise IcurtError(f"run '{resume_id}' attacks fold {recorded_fold}, not {fold}; drop --fold when resuming")
        fold = recorded_fold if fold is None else fold
    changed = (settings_changed_since(store, STAGE, resume_id, "tune_attack", ta, ignore=("num_trials", "fold"))
               if resume_id else [])
    train_run = train_run or store.resolve("train", None)
    fold = ta.fold if fold is None else fold
    state_dict, model_spec = fold_model(train_run, fold)
    dataset = load_dataset(store.ancestor(train_run, "preprocess").path)
    if int(model_spec["num_features"]) != dataset.features.shape[2]:
        raise IcurtError(f"the model of train run {train_run.run_id} expects {model_spec['num_features']} "
                         f"features but its dataset has {dataset.features.shape[2]}; retrain on this dataset")
    rows = selected_samples(len(dataset.labels), ta.max_num_samples, ta.sample_selection_seed)
    space = search_space(ta)
    ray = init_ray(cfg)
    from ray import tune

    resources = trial_resources("tune_attack", cfg.ray.device, ta.cpus_per_trial, ta.gpus_per_trial,
                                float(ray.cluster_resources().get("CPU", 0)), cluster_gpus())
    storage_url = optuna_storage_url(cfg)
    attack_plan = AttackPlan(ta.epochs_per_batch, ta.report_interval, ta.objective, ta.n_critical, ta.max_perts,
                             cfg.attack.method_settings(),
                             ta.attack_misclassified_samples, "GPU" in resources, max(1, int(ta.cpus_per_trial)))
    trainable = tune.with_parameters(attack_trial, state_dict=state_dict, model_spec=model_spec,
                                     x=dataset.features[rows], y=dataset.labels[rows], plan=attack_plan)
    with store.create(STAGE, cfg, inputs=[train_run], resume_id=resume_id,
                      extra_meta={"fold": fold, "num_samples": len(rows)}) as writer:
        warn_changed_settings("tune_attack", changed)
        plan = study_plan(cfg, writer.run_id, resources)
        experiment = f"tune-resume{writer.meta['resumed']}" if resume_id else "tune"
        log.info("tuning the attack on fold %d of train run %s: %d trials on %d samples (study %s)",
                 fold, train_run.run_id, ta.num_trials, len(rows), plan.study_name)
        study = run_study_keeping_trials(plan, trainable, space, storage_url, writer.path, experiment)
        table = write_study_files(writer.path, study, space, storage_url)
        best = best_trial_row(table, "max")
        hparams = best_hparams_of(best, space)
        (writer.path / BEST_FILE).write_text(json.dumps(
            {**hparams, "max_perts": ta.max_perts, **cfg.attack.method_settings(), "objective": best["objective"],
             "objective_name": ta.objective, "trial": best["number"], "fold": fold}, indent=2))
        log.info("best trial %d: %s %.4g with %s", best["number"], ta.objective, best["objective"], hparams)
    return writer.run
