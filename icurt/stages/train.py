"""Stage 4, `icurt train`: k-fold cross-validation of the tuned hyperparameters on Ray
(icurt/model/fold_runner.py runs the folds: one Ray Train TorchTrainer per fold, folds side by side).

Writes fold_<k>/ (the best checkpoint, model/checkpoint.py, and val_indices.npy), summary.json and
summary.txt (per-fold best metrics, mean ± sd; model/summary.py) and tensorboard/fold_<k>/.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from icurt.config import Config
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")
STAGE = "train"


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, trial: int | None = None) -> Run:
    """Cross-validate a tune-model run's hyperparameters (its best, or trial `trial`)."""
    from icurt.dataset import load_dataset
    from icurt.model.fold_runner import FoldJob, concurrent_folds, run_folds
    from icurt.model.folds import stratified_folds
    from icurt.placement import cluster_capacity, place
    from icurt.ray_runtime import init_ray
    from icurt.resume import input_run as resolve_input
    from icurt.stages.tune_model import chosen_hparams

    tc = cfg.train
    tune_run = resolve_input(store, STAGE, input_run)
    hp, source = chosen_hparams(tune_run, trial)
    dataset = load_dataset(store.ancestor(tune_run, "preprocess").path)
    folds = stratified_folds(dataset.labels, tc.num_folds, tc.fold_seed)
    capacity = cluster_capacity(init_ray(cfg))
    placement = place(cfg.ray.device, capacity, "train", tc.cpus_per_worker, tc.gpus_per_worker, unit="worker")
    parallel = concurrent_folds(placement, capacity, tc.num_workers, len(folds))
    with store.create(STAGE, cfg, inputs=[tune_run], extra_meta={"hparams_from": source}) as writer:
        log.info("train: %d folds × %d epochs of %s on %s, %d fold(s) at a time", len(folds), tc.epochs,
                 hp.to_dict(), placement.device.upper(), parallel)
        job = FoldJob(hp, tc.epochs, tc.eval_interval, tc.seed, tc.num_workers, placement,
                      str(writer.path / "ray_results" / "folds"))
        fold_results = run_folds(job, dataset, folds, writer.path, parallel)
        write_outputs(writer.path, fold_results, folds)
    return writer.run


def write_outputs(run_path: Path, fold_results: list[dict], folds) -> None:
    """fold_<k>/ (checkpoint + val_indices.npy), summary.json and summary.txt."""
    from icurt.model import checkpoint
    from icurt.model.summary import summarize_folds, write_summary

    for result, (_, val_idx) in zip(fold_results, folds):
        fold_dir = checkpoint.fold_folder(run_path, result["fold"])
        checkpoint.save(fold_dir, checkpoint.load(result["checkpoint"]))
        np.save(fold_dir / "val_indices.npy", np.asarray(val_idx, dtype=np.int64))
        log.info("fold %d: best epoch %d, %s", result["fold"], result["best_epoch"],
                 ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items() if not math.isnan(v)))
    write_summary(run_path, summarize_folds(fold_results))


def show(run: Run, cfg: Config) -> str:
    from icurt.model.summary import format_summary, read_summary

    return f"train run {run.run_id}\n{format_summary(read_summary(run.path))}"
