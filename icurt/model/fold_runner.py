"""The Ray side of `icurt train`: a Tune trial per fold drives a Ray Train run of that fold's
workers; see icurt/model/crossval.py for the design."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from icurt.dataset import Dataset
from icurt.errors import IcurtError
from icurt.model.lstm import ModelHparams, save_checkpoint
from icurt.model.summary import SUMMARY_METRICS

log = logging.getLogger("icurt")

BEST_METRIC = "auroc"
CHECKPOINT_WEIGHTS = "model.pt"
# A fold's Tune trial only drives its Ray Train run: it holds no CPU (that would idle a core per
# fold), and Tune refuses an empty request, so it asks for a token amount of memory instead.
DRIVER_MEMORY_BYTES = 1 << 20
REPORT_POLL_INTERVAL_S = 0.1


@dataclass(frozen=True)
class FoldJob:
    """What every fold's training needs besides its index and the data."""

    hparams: dict
    epochs: int
    eval_interval: int
    seed: int
    num_workers: int
    use_gpu: bool
    resources_per_worker: dict
    storage_path: str


def run_folds(job: FoldJob, dataset: Dataset, folds, run_path: Path, parallel: int) -> list[dict]:
    """Fit every fold as a Tune trial; [{"fold", "best_epoch", "metrics", "checkpoint"}] by fold."""
    import ray
    from ray import tune

    data_ref = ray.put({"features": dataset.features, "labels": dataset.labels,
                        "folds": [(train, val) for train, val in folds]})
    trainable = tune.with_resources(tune.with_parameters(fold_driver, job=job, data=[data_ref]),
                                    {"cpu": 0, "memory": DRIVER_MEMORY_BYTES})
    tuner = tune.Tuner(
        trainable,
        param_space={"train_loop_config": {"fold": tune.grid_search(list(range(len(folds))))}},
        tune_config=tune.TuneConfig(max_concurrent_trials=parallel, trial_dirname_creator=_fold_dirname),
        run_config=tune.RunConfig(name="crossval", storage_path=str(run_path / "ray_results"), verbose=0,
                                  callbacks=[tensorboard_callback(run_path / "tensorboard")]))
    results = tuner.fit()
    out = []
    for result in results:
        fold = result.config["train_loop_config"]["fold"]
        if result.error is not None or not (result.metrics or {}).get("final"):
            log.error("fold %d failed:\n%s", fold, result.error)
            raise IcurtError(f"fold {fold} failed: {_last_line(result.error) or 'no best checkpoint'}; "
                             "its traceback is in the run's run.log")
        m = result.metrics
        out.append({"fold": fold, "best_epoch": int(m["best_epoch"]), "checkpoint": m["best_checkpoint_path"],
                    "metrics": {k: float(m[f"best_{k}"]) for k in SUMMARY_METRICS}})
    if len(out) != len(folds):
        raise IcurtError(f"only {len(out)} of {len(folds)} folds finished; see the run's run.log")
    return sorted(out, key=lambda r: r["fold"])


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
    shared_gpu = job.use_gpu and job.num_workers > 1 and job.resources_per_worker.get("GPU", 0) < 1
    trainer = TorchTrainer(
        train_fold_worker,
        train_loop_config={**asdict(job), "fold": fold, "data": data},
        torch_config=TorchConfig(backend="gloo") if shared_gpu else None,
        scaling_config=ray.train.ScalingConfig(num_workers=job.num_workers, use_gpu=job.use_gpu,
                                               resources_per_worker=job.resources_per_worker),
        run_config=ray.train.RunConfig(
            name=f"fold_{fold}", storage_path=job.storage_path, callbacks=[TuneReportCallback()],
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # icurt logs each evaluation itself
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=BEST_METRIC, checkpoint_score_order="max")))
    result = trainer.fit()
    checkpoint, metrics = result.best_checkpoints[0]
    ray.tune.report({"final": True, "fold": fold, "best_epoch": metrics["epoch"],
                     "best_checkpoint_path": checkpoint.path,
                     **{f"best_{name}": metrics[name] for name in SUMMARY_METRICS}})


def train_fold_worker(config: dict) -> None:
    """Ray Train worker: train one fold; on each evaluation report the metrics, a checkpoint and
    the training losses of the epochs since the last report."""
    import tempfile

    import ray
    import ray.train
    import ray.train.torch

    from icurt.model.trainer import Trainer

    data = ray.get(config["data"][0])
    train_idx, val_idx = data["folds"][config["fold"]]
    features, labels = data["features"], data["labels"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    hp = ModelHparams.from_dict(config["hparams"])
    trainer = Trainer(hp, features[train_idx], labels[train_idx], features[val_idx], labels[val_idx],
                      device=str(ray.train.torch.get_device()), seed=config["seed"] + config["fold"],
                      rank=rank, world_size=world,
                      wrap_model=ray.train.torch.prepare_model if world > 1 else None)
    epochs, interval = config["epochs"], config["eval_interval"]
    losses: list[float] = []
    for epoch in range(1, epochs + 1):
        losses.append(trainer.train_epoch())
        if epoch % interval and epoch != epochs:
            continue
        metrics = {"epoch": epoch, "train_loss": losses[-1], "train_losses": losses}
        losses = []
        if rank != 0:                       # every rank reports (a barrier); rank 0 evaluates
            ray.train.report(metrics)
            continue
        metrics.update(trainer.evaluate())
        with tempfile.TemporaryDirectory() as folder:
            save_checkpoint(folder, trainer.model, hp, features.shape[2], name=CHECKPOINT_WEIGHTS)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


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
            if BEST_METRIC in result:
                for name in SUMMARY_METRICS:
                    writer.add_scalar(f"val/{name}", result[name], epoch)
                writer.flush()
                log.info("fold %d epoch %d: train loss %.4f, val auroc %.4f, auprc %.4f, loss %.4f", fold,
                         epoch, result["train_loss"], result["auroc"], result["auprc"], result["val_loss"])

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
