"""Stage 4, `icurt train`: k-fold cross-validation of the tuned hyperparameters on Ray
(icurt/model/fold_runner.py runs the folds: one Ray Train TorchTrainer per fold, folds side by side).

Folds are stratified and grouped by patient ([train].split). By default each fold's checkpoint is
chosen on an inner validation split of its training fold and the fold is scored on its held-out
samples only ([train].checkpoint_split, checkpoint_metric; model/folds.py FoldRows). Writes
fold_<k>/ (the chosen checkpoint, model/checkpoint.py; the fold's rows and subjects,
model/train_run.py), predictions.parquet (every held-out prediction, with the synthetic cohort's
oracle and achievable ceiling where the database holds them), summary.json and summary.txt
(held-out and training-fold metrics per fold, mean ± sd; model/summary.py), verdict.json (the
model-quality verdict, analysis/verdict.py), baselines.json and baseline_predictions.parquet
(logistic regression and boosted trees on the same folds beside the BiLSTM, icurt/baselines/)
and tensorboard/fold_<k>/.

A fold ends after [train].patience evaluations without a new best checkpoint ([train].epochs is
the cap) and trains in [train].precision. Each fold's checkpoint and record (fold_<k>/fold.json)
are written as soon as it finishes, so `--resume RUN` continues an interrupted run with the
settings and input it started with, training only the folds it had not finished: fold k's seed is
[train].seed + k, so the result equals an uninterrupted run's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from icurt.config import Config
from icurt.errors import IcurtError
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")
STAGE = "train"


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, trial: int | None = None,
        resume: str | None = None) -> Run:
    """Cross-validate a tune-model run's hyperparameters (its best, or trial `trial`); `resume`
    finishes the interrupted train run RUN, keeping the folds it finished."""
    from icurt.dataset import load_dataset
    from icurt.model.fold_runner import FoldJob, concurrent_folds, run_folds
    from icurt.model.folds import fold_rows, make_folds, patient_ids
    from icurt.model.precision import check_precision, evaluation_device
    from icurt.placement import cluster_capacity, place
    from icurt.ray_runtime import init_ray
    from icurt.resume import input_run as resolve_input, settings_at_start
    from icurt.stages.tune_model import chosen_hparams

    if resume:
        cfg = settings_at_start(store, STAGE, resume, cfg)
        trial = resumed_trial(store.interrupted_meta(STAGE, resume), trial, resume)
    tc = cfg.train
    tune_run = resolve_input(store, STAGE, input_run, resume)
    hp, source = chosen_hparams(tune_run, trial)
    dataset = load_dataset(store.ancestor(tune_run, "preprocess").path)
    patients = patient_ids(dataset.subject_ids, len(dataset.labels))
    outer = make_folds(dataset.labels, patients, tc.num_folds, tc.fold_seed, tc.split, setting="train.num_folds")
    folds = fold_rows(outer, dataset.labels, patients, tc.checkpoint_split, tc.inner_folds, tc.fold_seed, tc.split,
                      setting="train.inner_folds")
    capacity = cluster_capacity(init_ray(cfg))
    placement = place(cfg.ray.device, capacity, "train", tc.cpus_per_worker, tc.gpus_per_worker, unit="worker")
    check_precision(tc.precision, placement.device)
    report_device = evaluation_device(tc.precision)
    parallel = concurrent_folds(placement, capacity, tc.num_workers, len(folds))
    with store.create(STAGE, cfg, inputs=[tune_run], resume_id=resume, extra_meta={"hparams_from": source}) as writer:
        todo = unfinished_folds(writer.path, len(folds), resume)
        log.info("train: %d folds by %s × at most %d epochs (patience %d evaluations) of %s (%s) on %s in %s, "
                 "%d fold(s) at a time", len(folds), tc.split, tc.epochs, tc.patience, hp.describe(),
                 asdict(cfg.model), placement.device.upper(), tc.precision, min(parallel, max(len(todo), 1)))
        job = FoldJob(hp, tc.epochs, tc.eval_interval, tc.seed, tc.num_workers, placement,
                      str(writer.path / "ray_results" / "folds"), cfg.model, tc.checkpoint_metric,
                      tc.patience, tc.precision)
        if todo:
            run_folds(job, dataset, folds, writer.path, min(parallel, len(todo)), only=todo)
        truth = synthetic_truth(cfg, dataset)
        write_outputs(writer.path, folds, dataset, patients, rule(cfg), truth, report_device)
    return writer.run


def resumed_trial(meta: dict, trial: int | None, resume: str) -> int | None:
    """The tune-model trial the interrupted run trained (run.json's hparams_from); `trial` must agree."""
    source = str(meta.get("hparams_from", "best"))
    recorded = int(source.split()[1]) if source.startswith("trial ") else None
    if trial is not None and trial != recorded:
        raise IcurtError(f"train run '{resume}' trained the {source} hyperparameters, not trial {trial}; "
                         "drop --trial when resuming")
    return recorded


def unfinished_folds(run_path: Path, num_folds: int, resume: str | None) -> list[int]:
    """The folds still to train. On a resume: those without a fold record (model/train_run.py); what
    the interrupted attempt left of them (Ray's storage, their TensorBoard curves) is removed first,
    so they start afresh."""
    import shutil

    from icurt.model.train_run import read_fold_record

    todo = [k for k in range(num_folds) if read_fold_record(run_path, k) is None]
    if resume:
        log.info("train: resuming run %s: %d of %d folds were finished, training the other %d", resume,
                 num_folds - len(todo), num_folds, len(todo))
        shutil.rmtree(run_path / "ray_results", ignore_errors=True)
        for k in todo:
            shutil.rmtree(run_path / "tensorboard" / f"fold_{k}", ignore_errors=True)
    return todo


def rule(cfg: Config) -> dict:
    """How this run's folds and checkpoints were made (recorded in summary.json and the verdict)."""
    tc = cfg.train
    return {"split": tc.split, "checkpoint_split": tc.checkpoint_split, "inner_folds": tc.inner_folds,
            "checkpoint_metric": tc.checkpoint_metric, "readout": cfg.model.readout, "output": cfg.model.output}


def synthetic_truth(cfg: Config, dataset) -> pd.DataFrame | None:
    """The synthetic cohort's oracle and ceiling probabilities of the dataset's stays, or None when
    the configured database holds no synth truth for exactly these stays (icurt/db/synth/state.py)."""
    from icurt.db.synth.state import truth_of_stays

    try:
        return truth_of_stays(cfg, dataset.stay_ids, dataset.labels)
    except Exception as exc:   # a database we cannot read only means: no oracle to compare with
        log.info("train: no synthetic-cohort truth to compare with (%s)", str(exc).splitlines()[0][:200])
        return None


def write_outputs(run_path: Path, folds, dataset, patients: np.ndarray, rule: dict,
                  truth: pd.DataFrame | None = None, device: str = "cpu") -> None:
    """From each fold's checkpoint and record in fold_<k>/: its rows and subjects there,
    predictions.parquet, summary.json/.txt, verdict.json (models evaluated on `device`)."""
    from icurt.analysis.verdict import build_verdict, format_verdict, write_verdict
    from icurt.model import checkpoint
    from icurt.model.evaluation import report_fold
    from icurt.model.summary import summarize_folds, write_summary
    from icurt.model.train_run import read_fold_record, write_fold_rows, write_predictions

    reports, frames = [], []
    for fold, rows in enumerate(folds):
        fold_dir = checkpoint.fold_folder(run_path, fold)
        record = read_fold_record(run_path, fold)
        chosen = checkpoint.load(fold_dir)
        write_fold_rows(fold_dir, rows, patients)
        report = report_fold(fold, record["best_epoch"], chosen, dataset.features, dataset.labels, rows, device,
                             record["epochs_trained"])
        reports.append(report)
        frames.append(pd.DataFrame({
            "fold": np.int64(report.fold), "row": rows.held_out, "stay_id": dataset.stay_ids[rows.held_out],
            "subject_id": patients[rows.held_out], "label": dataset.labels[rows.held_out],
            "p_died": report.p_held_out, "threshold": report.threshold}))
        log.info("fold %d: best epoch %d of %d trained, held-out %s", report.fold, report.best_epoch,
                 report.epochs_trained,
                 ", ".join(f"{k} {v:.4f}" for k, v in report.metrics.items() if not math.isnan(v)))
    predictions = pd.concat(frames, ignore_index=True)
    if truth is not None:
        predictions = predictions.join(truth, on="stay_id")
    write_predictions(run_path, predictions)
    write_summary(run_path, summarize_folds([r.as_summary_row() for r in reports], rule))
    verdict = build_verdict(predictions, rule)
    write_verdict(run_path, verdict)
    for line in format_verdict(verdict).splitlines():
        (log.warning if line.startswith("WARNING") else log.info)("%s", line)
    from icurt.baselines.record import write_run_baselines

    write_run_baselines(run_path, dataset, folds, predictions, rule.get("checkpoint_metric", "auroc"))


def show(run: Run, cfg: Config) -> str:
    from icurt.analysis.verdict import format_verdict, read_verdict
    from icurt.baselines.compare import format_baselines, read_baselines
    from icurt.model.summary import format_summary, read_summary

    verdict, baselines = read_verdict(run.path), read_baselines(run.path)
    text = f"train run {run.run_id}\n{format_summary(read_summary(run.path))}"
    return text + ("\n" + format_verdict(verdict) if verdict else "") + (
        "\n" + format_baselines(baselines) if baselines else "")
