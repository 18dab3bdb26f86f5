"""Stage 4, `icurt train`: k-fold cross-validation of the tuned hyperparameters on Ray
(icurt/model/fold_runner.py runs the folds: one Ray Train TorchTrainer per fold, folds side by side).

Folds are stratified and grouped by patient ([train].split). By default each fold's checkpoint is
chosen on an inner validation split of its training fold and the fold is scored on its held-out
samples only ([train].checkpoint_split, checkpoint_metric; model/folds.py FoldRows). Writes
fold_<k>/ (the chosen checkpoint, model/checkpoint.py; the fold's rows and subjects,
model/train_run.py), predictions.parquet (every held-out prediction, with the synthetic cohort's
oracle and achievable ceiling where the database holds them), summary.json and summary.txt
(held-out and training-fold metrics per fold, mean ± sd; model/summary.py), verdict.json (the
model-quality verdict, analysis/verdict.py) and tensorboard/fold_<k>/.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from icurt.config import Config
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")
STAGE = "train"


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, trial: int | None = None) -> Run:
    """Cross-validate a tune-model run's hyperparameters (its best, or trial `trial`)."""
    from icurt.dataset import load_dataset
    from icurt.model.fold_runner import FoldJob, concurrent_folds, run_folds
    from icurt.model.folds import fold_rows, make_folds, patient_ids
    from icurt.placement import cluster_capacity, place
    from icurt.ray_runtime import init_ray
    from icurt.resume import input_run as resolve_input
    from icurt.stages.tune_model import chosen_hparams

    tc = cfg.train
    tune_run = resolve_input(store, STAGE, input_run)
    hp, source = chosen_hparams(tune_run, trial)
    dataset = load_dataset(store.ancestor(tune_run, "preprocess").path)
    patients = patient_ids(dataset.subject_ids, len(dataset.labels))
    outer = make_folds(dataset.labels, patients, tc.num_folds, tc.fold_seed, tc.split)
    folds = fold_rows(outer, dataset.labels, patients, tc.checkpoint_split, tc.inner_folds, tc.fold_seed, tc.split)
    capacity = cluster_capacity(init_ray(cfg))
    placement = place(cfg.ray.device, capacity, "train", tc.cpus_per_worker, tc.gpus_per_worker, unit="worker")
    parallel = concurrent_folds(placement, capacity, tc.num_workers, len(folds))
    with store.create(STAGE, cfg, inputs=[tune_run], extra_meta={"hparams_from": source}) as writer:
        log.info("train: %d folds by %s × %d epochs of %s (%s) on %s, %d fold(s) at a time", len(folds), tc.split,
                 tc.epochs, hp.to_dict(), asdict(cfg.model), placement.device.upper(), parallel)
        job = FoldJob(hp, tc.epochs, tc.eval_interval, tc.seed, tc.num_workers, placement,
                      str(writer.path / "ray_results" / "folds"), cfg.model, tc.checkpoint_metric)
        fold_results = run_folds(job, dataset, folds, writer.path, parallel)
        truth = synthetic_truth(cfg, dataset)
        write_outputs(writer.path, fold_results, folds, dataset, patients, rule(cfg), truth)
    return writer.run


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


def write_outputs(run_path: Path, fold_results: list[dict], folds, dataset, patients: np.ndarray,
                  rule: dict, truth: pd.DataFrame | None = None) -> None:
    """fold_<k>/ (checkpoint, rows, subjects), predictions.parquet, summary.json/.txt, verdict.json."""
    from icurt.analysis.verdict import build_verdict, format_verdict, write_verdict
    from icurt.model import checkpoint
    from icurt.model.evaluation import report_fold
    from icurt.model.summary import summarize_folds, write_summary
    from icurt.model.train_run import write_fold_rows, write_predictions

    reports, frames = [], []
    for result, rows in zip(fold_results, folds):
        fold_dir = checkpoint.fold_folder(run_path, result["fold"])
        chosen = checkpoint.load(result["checkpoint"])
        checkpoint.save(fold_dir, chosen)
        write_fold_rows(fold_dir, rows, patients)
        report = report_fold(result["fold"], result["best_epoch"], chosen, dataset.features, dataset.labels, rows)
        reports.append(report)
        frames.append(pd.DataFrame({
            "fold": np.int64(report.fold), "row": rows.held_out, "stay_id": dataset.stay_ids[rows.held_out],
            "subject_id": patients[rows.held_out], "label": dataset.labels[rows.held_out],
            "p_died": report.p_held_out, "threshold": report.threshold}))
        log.info("fold %d: best epoch %d, held-out %s", report.fold, report.best_epoch,
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


def show(run: Run, cfg: Config) -> str:
    from icurt.analysis.verdict import format_verdict, read_verdict
    from icurt.model.summary import format_summary, read_summary

    verdict = read_verdict(run.path)
    text = f"train run {run.run_id}\n{format_summary(read_summary(run.path))}"
    return text + ("\n" + format_verdict(verdict) if verdict else "")
