"""The Ray side of `icurt train`: the folds of a cross-validation run side by side as the trials
of one Ray Tune `Tuner` (grid over the fold index); each trial drives a Ray Train `TorchTrainer`
of its fold's workers. Ray Train V2 (the default in Ray ≥ 2.5x) no longer accepts a Trainer inside
a Tuner, so each Tune trial is a small driver function that builds and fits its fold's
TorchTrainer, as Ray's docs prescribe.

The dataset travels once through the object store (`ray.put`; workers `ray.get` it), never from
the driver's disk. Each worker fits on its fold's fit rows with the one fit loop (model/trainer.py
`fit`) and evaluates on the fold's choice rows (the inner validation split, or the held-out fold
under the reference rule) and, when they differ, on the held-out rows too (for the curves only).
It reports a checkpoint (model/checkpoint.py) only when an evaluation is the best so far by the
job's checkpoint metric (`BestSoFar`: never one with a non-finite loss or score; on a tie the
later), and Ray keeps that last one; the fit ends after [train].patience evaluations without a
new best (`EarlyStopping`; `epochs` is the cap). A fold with no usable evaluation fails with the
reason. As each fold's trial completes, the driver writes its chosen checkpoint and its record
(best epoch, epochs trained) into the run's `fold_<k>/` (model/train_run.py), so an interrupted
run keeps its finished folds and `icurt train --resume` trains only the others. TensorBoard events are written on the driver (`tensorboard/fold_<k>/`) from the reported results as
they arrive, so workers never write to the driver's disk and the curves are live.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from icurt.config import ModelConfig
from icurt.dataset import Dataset
from icurt.errors import IcurtError
from icurt.model.folds import FoldRows
from icurt.model.hparams import ModelHparams
from icurt.placement import Capacity, Placement, units_that_fit
from icurt.tune_interrupt import raise_if_interrupted, sigint_stops_tune
from icurt.run_log import VERBOSE

log = logging.getLogger("icurt")

CURVE_METRICS = ("val_loss", "auroc", "auprc", "brier")   # TensorBoard scalars per evaluation
HELD_OUT = "held_out_"                                     # prefix of the held-out set's metrics
# A fold's Tune trial only drives its Ray Train run: it holds no CPU (that would idle a core per
# fold), and Tune refuses an empty request, so it asks for a token amount of memory instead.
DRIVER_MEMORY_BYTES = 1 << 20
REPORT_POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class FoldJob:
    """What every fold's training needs besides its index and the data."""

    hparams: ModelHparams
    epochs: int
    eval_interval: int
    seed: int
    num_workers: int
    placement: Placement     # Ray resources of one worker
    storage_path: str
    shape: ModelConfig       # [model]: read-out and training output
    checkpoint_metric: str   # "auroc" or "val_loss" (model/trainer.py BestSoFar)
    patience: int = 0        # evaluations without a new best that end a fold; 0 = run all epochs
    precision: str = "fp32"  # [train].precision (model/precision.py)


def concurrent_folds(placement: Placement, capacity: Capacity, num_workers: int, num_folds: int) -> int:
    """How many folds fit on the cluster at once (fold workers left waiting would time out)."""
    fits = units_that_fit(placement, capacity, per_group=num_workers)
    if fits < 1:
        raise IcurtError(f"one fold needs {num_workers} worker(s) × {placement.resources} but the Ray "
                         f"cluster has at most {capacity.max_cpus:g} CPUs and {capacity.max_gpus:g} GPUs; "
                         "lower train.num_workers, train.cpus_per_worker or train.gpus_per_worker")
    return min(num_folds, fits)


def run_folds(job: FoldJob, dataset: Dataset, folds: list[FoldRows], run_path: Path, parallel: int,
              only: list[int] | None = None) -> None:
    """Fit folds `only` (default: every fold) as Tune trials; each fold's chosen checkpoint (the
    evaluation BestSoFar chose) and record are written to `run_path/fold_<k>/` as its trial completes
    (model/train_run.py read_fold_record reads them). IcurtError naming the first fold that failed."""
    import ray
    from ray import tune

    from icurt.model.train_run import read_fold_record

    todo = list(range(len(folds))) if only is None else sorted(only)
    data_ref = ray.put({"features": dataset.features, "labels": dataset.labels, "folds": list(folds)})
    trainable = tune.with_resources(tune.with_parameters(fold_driver, job=job, data=[data_ref]),
                                    {"cpu": 0, "memory": DRIVER_MEMORY_BYTES})
    tuner = tune.Tuner(
        trainable,
        param_space={"train_loop_config": {"fold": tune.grid_search(todo)}},
        tune_config=tune.TuneConfig(max_concurrent_trials=parallel, trial_dirname_creator=_fold_dirname),
        run_config=tune.RunConfig(name="crossval", storage_path=str(run_path / "ray_results"), verbose=0,
                                  callbacks=[tensorboard_callback(run_path / "tensorboard"),
                                             fold_writer(run_path, job.precision),
                                             epoch_progress(len(todo) * job.epochs)]))
    with sigint_stops_tune() as interrupted:
        results = tuner.fit()
    raise_if_interrupted(interrupted)
    for result in results:
        if not result.config:   # a fold Tune never started
            continue
        fold = result.config["train_loop_config"]["fold"]
        if result.error is not None:
            # run.log only (icurt.runs.FILE_ONLY): the IcurtError below is the console's one line
            log.error("fold %d failed:\n%s", fold, result.error, extra={"console": False})
            raise IcurtError(f"fold {fold} failed: {_last_line(result.error) or type(result.error).__name__}; "
                             "its traceback is in the run's run.log")
        if not (result.metrics or {}).get("final"):
            raise IcurtError(f"fold {fold} ended before its last epoch, without a best checkpoint; "
                             "see the run's run.log")
    finished = [k for k in todo if read_fold_record(run_path, k) is not None]
    if len(finished) != len(todo):
        raise IcurtError(f"only {len(finished)} of {len(todo)} folds finished; see the run's run.log")


def fold_writer(run_path: Path, precision: str):
    """A Tune callback that, on the driver, copies each completed fold's chosen checkpoint into
    `run_path/fold_<k>/` and then writes its record (the record last: it marks the fold finished).
    The epochs a fold trained are those of its last reported evaluation (Ray Train's result only
    carries the chosen checkpoint's metrics)."""
    from ray.tune import Callback

    from icurt.model import checkpoint
    from icurt.model.train_run import write_fold_record

    class FoldWriter(Callback):
        def __init__(self):
            self.trained: dict[int, int] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "epoch" in result and not result.get("final"):
                fold = trial.config["train_loop_config"]["fold"]
                self.trained[fold] = max(self.trained.get(fold, 0), int(result["epoch"]))

        def on_trial_complete(self, iteration, trials, trial, **info):
            result = trial.last_result or {}
            if not result.get("final"):
                return
            fold = int(result["fold"])
            chosen = checkpoint.load(result["best_checkpoint_path"])
            checkpoint.save(checkpoint.fold_folder(run_path, fold), chosen)
            trained = self.trained.get(fold, int(result["best_epoch"]))
            write_fold_record(run_path, fold, int(result["best_epoch"]), trained)
            log.info("fold %d finished: %d epochs trained, best epoch %d (%s)", fold, trained,
                     result["best_epoch"], precision)

    return FoldWriter()


def _fold_dirname(trial) -> str:
    return f"fold_{trial.config['train_loop_config']['fold']}"


def _last_line(error) -> str:
    """The final line of a (Ray-wrapped) traceback: the original exception and its message."""
    lines = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", str(error or "")).splitlines()]
    return next((line for line in reversed(lines) if line), "")


def fold_driver(config: dict, job: FoldJob, data: list) -> None:
    """Tune trial: fit fold `config["train_loop_config"]["fold"]`, then report its best checkpoint."""
    import ray.train
    import ray.tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    # Ray Train's controller takes one report per worker per health check (2 s by default) and a
    # worker's report waits for the previous one to be taken: poll faster so reports cost ~nothing.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", str(REPORT_POLL_INTERVAL_S))
    fold = config["train_loop_config"]["fold"]
    # NCCL refuses two ranks on one GPU, which fractional GPU shares allow; gloo handles CUDA tensors too
    resources = job.placement.resources
    shared_gpu = job.placement.use_gpu and job.num_workers > 1 and resources.get("GPU", 0) < 1
    trainer = TorchTrainer(
        train_fold_worker,
        train_loop_config={"job": job, "fold": fold, "data": data},
        torch_config=TorchConfig(backend="gloo") if shared_gpu else None,
        scaling_config=ray.train.ScalingConfig(num_workers=job.num_workers, use_gpu=job.placement.use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=f"fold_{fold}", storage_path=job.storage_path, callbacks=[TuneReportCallback()],
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # icurt logs each evaluation itself
            # workers report a checkpoint only for a new best evaluation: the last one kept is the best
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1)))
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"fold {fold} diverged: no evaluation had a finite loss and finite scores, so "
                           "there is no checkpoint to keep; lower the learning rate or pick another trial")
    checkpoint, metrics = result.best_checkpoints[-1]
    ray.tune.report({"final": True, "fold": fold, "best_epoch": metrics["epoch"],
                     "best_checkpoint_path": checkpoint.path})


def train_fold_worker(config: dict) -> None:
    """Ray Train worker: fit one fold; at each evaluation report the metrics, a checkpoint and the
    training losses of the epochs since the last report."""
    import tempfile

    import ray
    import ray.train
    import ray.train.torch

    from icurt.model import checkpoint
    from icurt.model.trainer import BestSoFar, Trainer, fit

    job: FoldJob = config["job"]
    data = ray.get(config["data"][0])
    rows: FoldRows = data["folds"][config["fold"]]
    features, labels = data["features"], data["labels"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    trainer = Trainer(job.hparams, features[rows.fit], labels[rows.fit], features[rows.choice], labels[rows.choice],
                      device=str(ray.train.torch.get_device()), seed=job.seed + config["fold"],
                      rank=rank, world_size=world, shape=job.shape, precision=job.precision,
                      wrap_model=ray.train.torch.prepare_model if world > 1 else None)
    best = BestSoFar(job.checkpoint_metric)
    separate = rank == 0 and not rows.chooses_on_held_out
    # every rank reports at each evaluation (a barrier); rank 0 evaluates, checkpoints and decides the stop
    for evaluation in fit(trainer, job.epochs, job.eval_interval, evaluate=rank == 0, best=best,
                          patience=job.patience, agree=partial(_rank0_decides, trainer.device) if world > 1 else None):
        metrics = {"epoch": evaluation.epoch, "train_loss": evaluation.train_losses[-1],
                   "train_losses": evaluation.train_losses, **(evaluation.metrics or {})}
        if separate:   # the held-out curves, never used for the choice
            held = trainer.evaluate_on(features[rows.held_out], labels[rows.held_out])
            metrics.update({HELD_OUT + k: held[k] for k in CURVE_METRICS})
        if not evaluation.chosen:
            ray.train.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as folder:
            checkpoint.save(folder, checkpoint.Checkpoint.of(trainer.model, job.hparams, features.shape[2],
                                                             job.precision))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def _rank0_decides(device: str, stop: bool) -> bool:
    """Rank 0's stop decision, on every data-parallel rank (they must stop at the same epoch); the
    flag lives on the ranks' device (NCCL moves CUDA tensors only)."""
    import torch
    import torch.distributed as dist

    flag = torch.tensor([int(stop)], device=device)
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def epoch_progress(total_epochs: int):
    """A Tune callback moving a progress bar by the epochs each fold reports (early stopping ends
    the bar short of `total_epochs`, the folds' cap)."""
    from ray.tune import Callback

    from icurt.progress import progress_bar

    class EpochProgress(Callback):
        def setup(self, **info):
            self.bar, self.seen = progress_bar(total_epochs, "train", "epoch"), {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if "epoch" in result and not result.get("final"):
                fold = trial.config["train_loop_config"]["fold"]
                self.bar.update(int(result["epoch"]) - self.seen.get(fold, 0))
                self.seen[fold] = int(result["epoch"])

        def on_experiment_end(self, trials, **info):
            self.bar.close()

    return EpochProgress()


def tensorboard_callback(root: Path):
    """A Tune callback writing each fold's reported scalars to `root/fold_<k>/` on the driver."""
    from ray.tune import Callback
    from torch.utils.tensorboard import SummaryWriter

    class TensorBoardCallback(Callback):
        def __init__(self):
            self.writers: dict[int, SummaryWriter] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("final") or "train_loss" not in result:
                return
            fold = trial.config["train_loop_config"]["fold"]
            if fold not in self.writers:
                self.writers[fold] = SummaryWriter(str(root / f"fold_{fold}"))
            writer = self.writers[fold]
            epoch = int(result["epoch"])
            losses = result.get("train_losses") or [result["train_loss"]]
            for step, loss in enumerate(losses, start=epoch - len(losses) + 1):
                writer.add_scalar("train/loss", loss, step)
            if "val_loss" in result:
                for name in CURVE_METRICS:
                    writer.add_scalar(f"val/{name}", result[name], epoch)
                    if HELD_OUT + name in result:
                        writer.add_scalar(f"held_out/{name}", result[HELD_OUT + name], epoch)
                writer.flush()
                log.info("fold %d epoch %d: train loss %.4f, val auroc %.4f, auprc %.4f, loss %.4f", fold,
                         epoch, result["train_loss"], result["auroc"], result["auprc"], result["val_loss"],
                         extra=VERBOSE)

        def on_trial_complete(self, iteration, trials, trial, **info):
            writer = self.writers.pop(trial.config["train_loop_config"]["fold"], None)
            if writer is not None:
                writer.close()

        on_trial_error = on_trial_complete

        def on_experiment_end(self, trials, **info):
            for writer in self.writers.values():
                writer.close()
            self.writers.clear()

    return TensorBoardCallback()
