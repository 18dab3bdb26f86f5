"""Stage 4 `icurt train`: k-fold cross-validation of the tuned hyperparameters on Ray.

This module chooses the hyperparameters, the folds and the resources and writes the run's
outputs; icurt/model/fold_runner.py runs the folds on Ray. Each fold is one Ray Train
`TorchTrainer` (workers and GPUs from [train]); the folds run side by side as the trials of one
Ray Tune `Tuner` (grid over the fold index). Ray Train V2 (the default in Ray ≥ 2.5x) no longer
accepts a Trainer inside a Tuner, so each Tune trial is a small driver function that builds and
fits its fold's TorchTrainer, as Ray's docs prescribe.

The dataset travels once through the object store (`ray.put`; workers `ray.get` it), never from
the driver's disk. Each worker trains `epochs`, evaluates every `eval_interval` epochs (and at the
last one) and reports a checkpoint (state_dict + model.json) with each evaluation. Ray keeps only
the best checkpoint per fold by validation AUROC: it is threshold-free and unaffected by the
class balance, whereas F1/precision/recall hinge on the 0.5 threshold of a model trained on
oversampled batches and the validation loss on its calibration. On a tie Ray keeps the later
evaluation.
TensorBoard events are written on the driver (`tensorboard/fold_<k>/`) from the reported
results as they arrive, so workers never write to the driver's disk and the curves are live.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from icurt.config import ACTIVATIONS, OPTIMIZERS, Config
from icurt.dataset import load_dataset
from icurt.errors import IcurtError
from icurt.model.folds import stratified_folds
from icurt.model.fold_runner import CHECKPOINT_WEIGHTS, FoldJob, run_folds
from icurt.model.lstm import ModelHparams, load_checkpoint, save_checkpoint
from icurt.model.summary import SUMMARY_JSON, summarize_folds, write_summary_text
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")


def chosen_hparams(tune_run: Run, trial: int | None) -> tuple[ModelHparams, str]:
    """The tune-model run's best hparams, or those of trial `trial` from its trials.parquet."""
    if trial is None:
        path = tune_run.file("best_hparams.json")
        if not path.is_file():
            raise IcurtError(f"tune-model run '{tune_run.run_id}' has no best_hparams.json; "
                             "pick a completed tune-model run (`icurt runs tune-model`)")
        values, source = json.loads(path.read_text()), "best"
    else:
        values, source = _trial_row(tune_run, trial), f"trial {trial}"
    hp = ModelHparams.from_dict(values)
    if hp.optimizer not in OPTIMIZERS or hp.lstm_activation not in ACTIVATIONS \
            or hp.fc_activation not in ACTIVATIONS or hp.batch_size < 1 or hp.lstm_hidden < 1 \
            or hp.fc_size < 1 or not 0 <= hp.dropout < 1 or not hp.learning_rate > 0:
        raise IcurtError(f"the hyperparameters of tune-model run '{tune_run.run_id}' ({source}) are "
                         f"invalid: {hp.to_dict()}; choose another run or trial")
    return hp, source


def _trial_row(tune_run: Run, trial: int) -> dict:
    import pandas as pd

    path = tune_run.file("trials.parquet")
    if not path.is_file():
        raise IcurtError(f"tune-model run '{tune_run.run_id}' has no trials.parquet; drop --trial")
    trials = pd.read_parquet(path)
    column = "number" if "number" in trials.columns else "trial"
    rows = trials[trials[column] == trial]
    if rows.empty:
        raise IcurtError(f"tune-model run '{tune_run.run_id}' has no trial {trial}; its trials are "
                         f"{sorted(trials[column].tolist())}")
    row = rows.iloc[0].to_dict()
    missing = [f for f in ModelHparams.__dataclass_fields__ if f not in row]
    if missing:
        raise IcurtError(f"trials.parquet of tune-model run '{tune_run.run_id}' lacks {missing}; "
                         "re-run tune-model")
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def wants_gpu(cfg: Config, cluster_gpus: float) -> bool:
    """Whether the fold workers take GPUs; IcurtError when cuda is demanded of a GPU-less cluster."""
    if cfg.ray.device == "cuda" and cluster_gpus <= 0:
        raise IcurtError("[ray].device is 'cuda' but the Ray cluster has no GPU; "
                         "set --set ray.device=auto (or cpu), or join a cluster with GPUs")
    if cfg.ray.device == "cuda" and cfg.train.gpus_per_worker <= 0:
        raise IcurtError("[ray].device is 'cuda' but train.gpus_per_worker is 0; give each worker a "
                         "GPU share (e.g. --set train.gpus_per_worker=0.5)")
    return cfg.ray.device != "cpu" and cluster_gpus > 0 and cfg.train.gpus_per_worker > 0


def concurrent_folds(cfg: Config, cluster: dict, resources: dict, num_folds: int) -> int:
    """How many folds fit on the cluster at once (fold workers left waiting would time out)."""
    fits = [int(cluster.get(name, 0.0) // (amount * cfg.train.num_workers))
            for name, amount in resources.items() if amount > 0]
    if fits and min(fits) < 1:
        raise IcurtError(f"one fold needs {cfg.train.num_workers} worker(s) × {resources} but the Ray "
                         f"cluster has {cluster}; lower train.num_workers, train.cpus_per_worker or "
                         "train.gpus_per_worker")
    return max(1, min([num_folds, *fits]))


def run(cfg: Config, tune_run: Run | str | None = None, trial: int | None = None,
        store: RunStore | None = None) -> Run:
    """Cross-validate the tune-model run's hyperparameters; returns the completed train run."""
    from icurt.ray_runtime import cluster_gpus, init_ray

    store = store or RunStore.from_config(cfg)
    if not isinstance(tune_run, Run):
        tune_run = store.resolve("tune-model", tune_run)
    hp, source = chosen_hparams(tune_run, trial)
    dataset = load_dataset(store.ancestor(tune_run, "preprocess").path)
    folds = stratified_folds(dataset.labels, cfg.train.num_folds, cfg.train.fold_seed)
    ray = init_ray(cfg)
    use_gpu = wants_gpu(cfg, cluster_gpus())
    resources = {"CPU": cfg.train.cpus_per_worker, **({"GPU": cfg.train.gpus_per_worker} if use_gpu else {})}
    parallel = concurrent_folds(cfg, ray.cluster_resources(), resources, len(folds))
    with store.create("train", cfg, inputs=[tune_run], extra_meta={"hparams_from": source}) as writer:
        log.info("train: %d folds × %d epochs of %s on %s, %d fold(s) at a time", len(folds),
                 cfg.train.epochs, hp.to_dict(), "GPU" if use_gpu else "CPU", parallel)
        job = FoldJob(hp.to_dict(), cfg.train.epochs, cfg.train.eval_interval, cfg.train.seed,
                      cfg.train.num_workers, use_gpu, resources, str(writer.path / "ray_results" / "folds"))
        fold_results = run_folds(job, dataset, folds, writer.path, parallel)
        write_outputs(writer.path, fold_results, folds, hp, dataset.features.shape[2])
        write_summary_text(writer.path)
    return writer.run


def write_outputs(run_path: Path, fold_results: list[dict], folds, hp: ModelHparams,
                  num_features: int) -> None:
    """fold_<k>/best.pt + model.json + val_indices.npy, and summary.json."""
    for result, (_, val_idx) in zip(fold_results, folds):
        model = load_checkpoint(result["checkpoint"], name=CHECKPOINT_WEIGHTS)
        fold_dir = run_path / f"fold_{result['fold']}"
        save_checkpoint(fold_dir, model, hp, num_features)
        np.save(fold_dir / "val_indices.npy", np.asarray(val_idx, dtype=np.int64))
        log.info("fold %d: best epoch %d, %s", result["fold"], result["best_epoch"],
                 ", ".join(f"{k} {v:.4f}" for k, v in result["metrics"].items() if not math.isnan(v)))
    summary = summarize_folds(fold_results)
    (run_path / SUMMARY_JSON).write_text(json.dumps(summary, indent=2))
