"""Stage 5, `icurt tune-attack`: the sparse attack's hyperparameters tuned by the shared tuning
stage (Ray Tune + OptunaSearch + ASHA, icurt/tuning/stage.py) on one fold's model of a train run.

The fold is chosen here and recorded for the attack: by default the fold whose checkpoint has the
median held-out validation loss (the reference's rule), or [tune_attack].fold with
fold_choice = "fixed" or `--fold K`. A trial attacks the same `max_num_samples` samples (chosen
with `sample_selection_seed` from that fold's held-out samples, or from all with samples = "all")
with the configured [attack_method] (without TF32, its flips re-verified: attack_samples) at the
auto batch size, or at a searched one where the method couples samples (icurt/attack/batching.py),
and, after every `report_interval` iterations, reports its score: the objective summed over the
samples that have an adversarial example (a method with carried optimizer state reports only its
end). ASHA stops poor trials on those reports unless
[tune_attack].prune is false, as in the reference study, where every trial runs its budget. The
model and the samples reach trials through Ray's object store. Writes best_attack_hparams.json
(the best trial's hyperparameters, the method they were tuned with and the fold), trials.parquet
and study.json.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from icurt.config import AttackMethod, Config, TuneAttackConfig
from icurt.placement import WorkerSetup
from icurt.runs import Run, RunStore
from icurt.tuning.space import LOG2_PREFIX, choice, exponent_range, uniform

if TYPE_CHECKING:
    from icurt.tuning.stage import TuningTask

log = logging.getLogger("icurt")

STAGE = "tune-attack"
METRIC, STEP = "score", "iteration"


def search_space(ta: TuneAttackConfig, method: AttackMethod) -> dict:
    """Optuna distributions of the attack's hyperparameters, from the [tune_attack] ranges. The
    batch size is searched only where `method` couples samples (icurt/attack/batching.py): else it
    changes nothing and trials run at the auto size."""
    from icurt.attack.batching import couples_samples

    batch = {f"{LOG2_PREFIX}batch_size": exponent_range(ta.batch_size_exponents)} if couples_samples(method) else {}
    return {
        "kappa": uniform(ta.kappa),
        "lambda_1": uniform(ta.lambda_1, log=True),
        "learning_rate": uniform(ta.learning_rate, log=True),
        **batch,
        "optimizer": choice(ta.optimizers),
    }


def attack_trial(config: dict, checkpoint, x: np.ndarray, y: np.ndarray, ta: TuneAttackConfig,
                 method: AttackMethod, worker: WorkerSetup) -> None:
    """Ray Tune trainable: attack the samples with `method` (the attack `icurt attack` runs),
    reporting the score after every block of iterations."""
    from ray import tune

    from icurt.attack.attacker import AttackHparams
    from icurt.attack.batching import attack_batch_size
    from icurt.attack.objectives import attack_score
    from icurt.attack.samples import attack_samples
    from icurt.tuning.space import decode_params

    device = worker.torch_device()
    params = decode_params(config)
    batch_size = attack_batch_size(method, params.get("batch_size", 0), 0, device)   # searched, or auto
    hp = AttackHparams.from_dict({**params, "batch_size": batch_size})
    last = {"step": 0}

    def report(iterations: int, results) -> None:
        last["step"] = iterations
        tune.report({STEP: iterations, METRIC: attack_score(ta.objective, results, ta.n_critical),
                     "successes": int(results.success.sum()), "attacked": int(results.attacked.sum())})

    results = attack_samples(checkpoint.build(device), x, y, hp, method, ta.epochs_per_batch, device=device,
                             report_every=ta.report_interval, on_report=report)
    if last["step"] < ta.epochs_per_batch:  # the budget's last block was not reported: report its end
        report(ta.epochs_per_batch, results)


def tuning_task(cfg: Config, input_run: Run, checkpoint, dataset, fold: int, placement,
                fold_choice: str = "fixed") -> TuningTask:
    """tune-attack's part of the shared tuning stage: fold `fold`'s model (a Checkpoint) of
    train run `input_run`, attacked on the selected samples of `dataset` (`fold_choice`: how the
    fold was chosen, for the record)."""
    from icurt.attack.batches import select_samples
    from icurt.attack.tuned import BEST_FILE, best_record
    from icurt.model.train_run import candidate_rows
    from icurt.tuning.stage import TuningTask

    ta = cfg.tune_attack
    candidates = candidate_rows(input_run, fold, ta.samples, len(dataset.labels))
    rows = candidates[select_samples(len(candidates), ta.max_num_samples, ta.sample_selection_seed)]
    chosen = {"fold": fold, "fold_choice": fold_choice, "samples": ta.samples, "candidates": int(len(candidates))}
    space = search_space(ta, cfg.attack_method)
    return TuningTask(
        stage=STAGE, settings=ta, space=space, trainable=attack_trial,
        data={"checkpoint": checkpoint, "x": dataset.features[rows], "y": dataset.labels[rows], "ta": ta,
              "method": cfg.attack_method, "worker": placement.worker()},
        metric=METRIC, mode="max", step_attr=STEP, max_step=ta.epochs_per_batch,
        grace_period=ta.asha_grace_period * ta.report_interval, placement=placement, input_run=input_run,
        best_file=BEST_FILE, best_record=lambda row: best_record(row, space, cfg.attack_method, ta, chosen,
                                                                     placement.device),
        what=(f"on fold {fold} ({fold_choice}) of train run {getattr(input_run, 'run_id', '?')}, {len(rows)} "
              f"samples of {len(candidates)} ({ta.samples})"),
        extra_meta={**chosen, "num_samples": len(rows)},
        resume_ignores=("tune_attack.fold", "tune_attack.fold_choice"), prune=ta.prune)


def attacked_fold(train_run: Run, ta: TuneAttackConfig, fold: int | None) -> tuple[int, str]:
    """(fold, how it was chosen): `fold` when given (--fold), else [tune_attack].fold_choice:
    "median" the fold with the median held-out validation loss, "fixed" [tune_attack].fold."""
    from icurt.model.summary import read_summary
    from icurt.model.train_run import median_fold

    if fold is not None:
        return fold, "--fold"
    if ta.fold_choice == "fixed":
        return ta.fold, "fixed"
    return median_fold(read_summary(train_run.path)), "median validation loss"


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, fold: int | None = None,
        resume: str | None = None, extend: str | None = None) -> Run:
    """Tune the attack on fold `fold` (default: [tune_attack].fold_choice) of a train run (the newest
    by default); `resume` continues an interrupted run, `extend` the study of a completed one."""
    from icurt.dataset import load_dataset
    from icurt.db.connection import optuna_storage_url
    from icurt.errors import IcurtError
    from icurt.model.checkpoint import load_fold
    from icurt.placement import cluster_capacity, place
    from icurt.ray_runtime import init_ray
    from icurt.resume import settings_at_start
    from icurt.tuning.stage import tune_stage, tuning_input

    input_run = tuning_input(store, STAGE, input_run, resume, extend)
    if resume:   # the study goes on as it started; only its number of trials may change
        cfg = settings_at_start(store, STAGE, resume, cfg, keep=("tune_attack.num_trials",))
    ta = cfg.tune_attack
    recorded_choice = None
    if resume or extend:
        meta = store.interrupted_meta(STAGE, resume) if resume else store.get(STAGE, extend).meta
        recorded = meta.get("fold")
        if fold is not None and recorded is not None and fold != recorded:
            raise IcurtError(f"run '{resume or extend}' attacks fold {recorded}, not {fold}; drop --fold "
                             f"when {'resuming' if resume else 'extending'}")
        recorded_choice = meta.get("fold_choice") if fold is None else None
        fold = recorded if fold is None else fold
    storage_url = optuna_storage_url(cfg)
    fold, fold_choice = attacked_fold(input_run, ta, fold)
    fold_choice = recorded_choice or fold_choice
    checkpoint = load_fold(input_run, fold)
    dataset = load_dataset(store.ancestor(input_run, "preprocess").path)
    checkpoint.check_features(dataset.features.shape[2], f"train run {input_run.run_id}")
    placement = place(cfg.ray.device, cluster_capacity(init_ray(cfg)), "tune_attack", ta.cpus_per_trial,
                      ta.gpus_per_trial)
    task = tuning_task(cfg, input_run, checkpoint, dataset, fold, placement, fold_choice)
    return tune_stage(cfg, task, store=store, storage_url=storage_url, resume=resume, extend=extend)


def show(run: Run, cfg: Config, trial: int | None = None) -> str:
    from icurt.attack.tuned import read_tuned
    from icurt.tuning.trials import describe_trial

    tuned = read_tuned(run)
    space = search_space(cfg.tune_attack, tuned.method)
    text = describe_trial(run, trial, "max", f"score ({tuned.objective_name})", space)
    text += f"\n  attacked fold: {tuned.fold} ({tuned.fold_choice}); tuning samples from: {tuned.samples}"
    return text + "\n  attack method: " + ", ".join(f"{k} = {v}" for k, v in asdict(tuned.method).items())
