"""The training loop (plain torch, no Ray): tensors stay on the device, batches are index slices.

Why it is fast: the whole dataset is moved to the device once; each epoch draws n_train
indices with `torch.multinomial` (weights 1/class count, so both classes are equally likely —
the minority class is oversampled for training only) and a batch is one gather `x[idx]`, with no
DataLoader, no per-sample Python collate and no host→device copy per batch. The loss is summed
on the device and read once per epoch (no sync per batch). The forward pass runs in the
precision [train].precision names (model/precision.py: fp32 by default; bf16/fp16 autocast, fp16
with a GradScaler), training and every evaluation alike. Evaluation uses the natural class
distribution, in large batches under `torch.no_grad()`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from icurt.config import ModelConfig
from icurt.errors import IcurtError
from icurt.model.hparams import ModelHparams
from icurt.model.lstm import ICURT_SHAPE, LSTMClassifier, training_loss
from icurt.model.metrics import all_finite, classification_metrics
from icurt.model.precision import autocast, check_precision, needs_grad_scaler

# Evaluation batch: large on a GPU (fewer launches); small on a CPU, where each LSTM step's
# activations then stay in cache (measured: 128–256 beat 1k–4k by ~1.5–2× for LSTM-128).
EVAL_BATCH_SIZE = {"cuda": 8192, "cpu": 256}
OPTIMIZER_CLASSES = {"sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop, "adam": torch.optim.Adam}


def make_optimizer(hp: ModelHparams, params, device: str) -> torch.optim.Optimizer:
    """The optimizer named by hp.optimizer with hp.learning_rate (otherwise PyTorch defaults)."""
    if hp.optimizer not in OPTIMIZER_CLASSES:
        raise IcurtError(f"unknown optimizer '{hp.optimizer}'; choose from {', '.join(OPTIMIZER_CLASSES)}")
    kwargs = {"lr": hp.learning_rate}
    if hp.optimizer == "adam" and str(device).startswith("cuda"):
        kwargs["fused"] = True  # same maths as the default Adam, one kernel per step
    return OPTIMIZER_CLASSES[hp.optimizer](params, **kwargs)


def balanced_sample_weights(labels: torch.Tensor) -> torch.Tensor:
    """Per-sample weight 1 / (count of its class), so each class carries the same total weight."""
    counts = torch.bincount(labels, minlength=2).to(torch.float32)
    if (counts == 0).any():
        raise IcurtError("the training data holds only one class; a classifier needs both "
                         "(use a larger cohort or fewer folds)")
    return (1.0 / counts)[labels]


def _as_tensor(values, dtype: torch.dtype, device: str) -> torch.Tensor:
    tensor = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
    return tensor.to(device=device, dtype=dtype).contiguous()


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int | None = None,
                   precision: str = "fp32") -> torch.Tensor:
    """The model's (n, 2) float32 logits for x (n, T, F), already on the model's device, in eval
    mode, computed in `precision` (the one the model was trained in; IcurtError where x's device
    cannot run it, model/precision.py check_precision)."""
    check_precision(precision, x.device)
    batch_size = batch_size or EVAL_BATCH_SIZE.get(x.device.type, 256)
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(x), batch_size):
        with autocast(precision, x.device):
            outputs.append(model(x[start:start + batch_size]).float())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty((0, 2), device=x.device)


def metrics_of(logits: torch.Tensor, labels: torch.Tensor, output: str, threshold: float = 0.5) -> dict[str, float]:
    """val_loss (the training loss of `output`, over these samples) and classification_metrics of
    P(died) = softmax(logits)[:, 1] at `threshold`; a non-finite logit makes every score NaN."""
    loss = training_loss(logits, labels, output).item() if len(logits) else float("nan")
    p_died = torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()
    return {"val_loss": loss, **classification_metrics(labels.cpu().numpy(), p_died, threshold)}


def usable(metrics: dict[str, float] | None) -> bool:
    """An evaluation that may be chosen: its loss and its threshold-free scores are all finite."""
    return bool(metrics) and all_finite(metrics[k] for k in ("val_loss", "auroc", "auprc"))


class BestSoFar:
    """The checkpoint rule of one fit: the usable evaluation with the highest AUROC
    (`metric="auroc"`) or the lowest val_loss (`"val_loss"`); on a tie the later one. An
    evaluation with a non-finite loss or score is never chosen."""

    def __init__(self, metric: str):
        if metric not in ("auroc", "val_loss"):
            raise ValueError(f"checkpoint metric must be auroc or val_loss, got {metric!r}")
        self.metric, self.value, self.epoch = metric, None, None

    def offer(self, epoch: int, metrics: dict[str, float] | None) -> bool:
        """True when this evaluation is the new best (its checkpoint should then be kept)."""
        if not usable(metrics):
            return False
        value = metrics["auroc"] if self.metric == "auroc" else -metrics["val_loss"]
        if self.value is not None and value < self.value:
            return False
        self.value, self.epoch = value, epoch
        return True


class Trainer:
    """Trains an LSTMClassifier on (x_train, y_train) and evaluates it on (x_val, y_val).

    `rank`/`world_size`/`wrap_model` serve data-parallel training: every rank draws the same
    sampled batch and trains on its `rank::world_size` share of it through the wrapped (DDP)
    model. `seed` fixes the model's initial weights, dropout and the sampling. `precision` is
    [train].precision (IcurtError where `device` cannot run it).
    """

    def __init__(self, hp: ModelHparams, x_train, y_train, x_val, y_val, device: str = "cpu",
                 seed: int = 0, tb_writer=None, rank: int = 0, world_size: int = 1,
                 wrap_model: Callable[[nn.Module], nn.Module] | None = None, shape: ModelConfig = ICURT_SHAPE,
                 precision: str = "fp32"):
        check_precision(precision, device)
        self.hp, self.device, self.tb_writer, self.shape = hp, str(device), tb_writer, shape
        self.precision = precision
        self.rank, self.world_size = rank, world_size
        self.x_train = _as_tensor(x_train, torch.float32, self.device)
        self.y_train = _as_tensor(y_train, torch.int64, self.device)
        self.x_val = _as_tensor(x_val, torch.float32, self.device)
        self.y_val = _as_tensor(y_val, torch.int64, self.device)
        if self.x_train.ndim != 3 or len(self.x_train) != len(self.y_train):
            raise ValueError("x_train must be (n, T, F) with one label per sample")
        torch.manual_seed(seed)
        self.model = LSTMClassifier(self.x_train.shape[2], hp, shape).to(self.device)
        self.net = wrap_model(self.model) if wrap_model else self.model
        self.optimizer = make_optimizer(hp, self.net.parameters(), self.device)
        self.scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(precision, self.device) else None
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.sample_weights = balanced_sample_weights(self.y_train)
        self.epoch = 0

    def sample_epoch_indices(self) -> torch.Tensor:
        """n_train training indices drawn with replacement so both classes are equally likely."""
        return torch.multinomial(self.sample_weights, len(self.y_train), replacement=True,
                                 generator=self.generator)

    def train_epoch(self) -> float:
        """One epoch over weighted-sampled batches; returns the mean training loss."""
        self.net.train()
        indices = self.sample_epoch_indices()
        loss_sum = torch.zeros((), device=self.device)
        seen = 0
        for start in range(0, len(indices), self.hp.batch_size):
            batch = indices[start:start + self.hp.batch_size]
            if len(batch) < self.world_size:
                break  # every rank must take a step (DDP); all ranks see the same length here
            batch = batch[self.rank::self.world_size]
            self.optimizer.zero_grad(set_to_none=True)
            with autocast(self.precision, self.device):
                loss = training_loss(self.net(self.x_train[batch]).float(), self.y_train[batch], self.shape.output)
            self.step(loss)
            loss_sum += loss.detach().float() * len(batch)
            seen += len(batch)
        self.epoch += 1
        mean_loss = loss_sum.item() / max(seen, 1)
        if self.tb_writer is not None:
            self.tb_writer.add_scalar("train/loss", mean_loss, self.epoch)
        return mean_loss

    def step(self, loss: torch.Tensor) -> None:
        """Back-propagate `loss` and step the optimizer (through the GradScaler under fp16 on CUDA)."""
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def evaluate(self) -> dict[str, float]:
        """val_loss, auroc, auprc, brier, f1, precision, recall, accuracy on the validation set."""
        metrics = self.evaluate_on(self.x_val, self.y_val)
        if self.tb_writer is not None:
            for name, value in metrics.items():
                self.tb_writer.add_scalar(f"val/{name}", value, self.epoch)
            self.tb_writer.flush()
        return metrics

    def evaluate_on(self, x, y) -> dict[str, float]:
        """metrics_of the model's logits on (x, y) (arrays or tensors; moved to the device)."""
        x, y = _as_tensor(x, torch.float32, self.device), _as_tensor(y, torch.int64, self.device)
        return metrics_of(predict_logits(self.model, x, precision=self.precision), y, self.shape.output)


class EarlyStopping:
    """The stop rule of one fit ([train].patience): stop once `patience` evaluations in a row were
    not chosen by the fit's BestSoFar (none better, none tied; an unusable one never is); 0 = never
    stop early (the fit runs its `epochs`, the cap)."""

    def __init__(self, patience: int):
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        self.patience, self.stale = patience, 0

    def update(self, chosen: bool) -> bool:
        """Record one evaluation (chosen as the new best or not); True when the fit should stop now."""
        self.stale = 0 if chosen else self.stale + 1
        return 0 < self.patience <= self.stale


@dataclass(frozen=True)
class Evaluation:
    """What one evaluation of a fit reports."""

    epoch: int                      # epochs trained so far
    train_losses: list[float]       # mean training loss of each epoch since the last evaluation
    metrics: dict[str, float] | None  # Trainer.evaluate(), None where the fit does not evaluate
    chosen: bool = False            # the fit's BestSoFar chose this evaluation: keep its checkpoint
    last: bool = False              # the fit ends here (its epochs are done, or it stopped early)


def fit(trainer: Trainer, epochs: int, eval_interval: int, evaluate: bool = True, best: BestSoFar | None = None,
        patience: int = 0, agree: Callable[[bool], bool] | None = None) -> Iterator[Evaluation]:
    """Train up to `epochs` epochs, yielding an Evaluation after every `eval_interval`-th and the last.

    The one training loop: the train stage's Ray Train workers and tune-model's cross-validation
    rounds both consume it. `evaluate=False` (data-parallel ranks other than 0) skips the metrics.
    Each evaluation is offered to `best` (Evaluation.chosen); with `patience` > 0 the fit ends
    early once that many evaluations in a row were not chosen (EarlyStopping). `agree` turns this
    process's stop decision into every data-parallel rank's (rank 0's, which evaluates).
    """
    losses: list[float] = []
    stopping = EarlyStopping(patience)
    for epoch in range(1, epochs + 1):
        losses.append(trainer.train_epoch())
        if epoch % eval_interval and epoch != epochs:
            continue
        metrics = trainer.evaluate() if evaluate else None
        chosen = best is not None and best.offer(epoch, metrics)
        stop = stopping.update(chosen)
        if agree is not None and patience > 0:
            stop = agree(stop)
        yield Evaluation(epoch, losses, metrics, chosen, stop or epoch == epochs)
        if stop:
            return
        losses = []


def mean_over_folds(fold_metrics: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over the folds."""
    return {name: float(np.mean([m[name] for m in fold_metrics])) for name in fold_metrics[0]}


def cross_validation_rounds(trainers: Sequence[Trainer], rounds: int, epochs_per_round: int,
                            metric: str = "val_loss", score: str = "last") -> Iterator[dict]:
    """One fit per fold, advanced together: after every round of `epochs_per_round` epochs yields
    the fold means, with `metric` replaced by the trial's score so far: this round's mean
    (`score="last"`) or the lowest mean of the rounds so far (`"best"`, the reference; `metric` is
    minimised); `round_<metric>` keeps this round's mean.

    A fold whose loss or scores stop being finite has diverged: the last item then has
    `diverged` True and a one-line `reason`, and no further round is trained (it would not recover).
    """
    fits = [fit(trainer, rounds * epochs_per_round, epochs_per_round) for trainer in trainers]
    best = math.inf
    for round_ in range(1, rounds + 1):
        fold_metrics = [next(f).metrics for f in fits]
        broken = [k for k, m in enumerate(fold_metrics) if not usable(m)]
        if broken:
            m = fold_metrics[broken[0]]
            yield {"diverged": True, "reason": (
                f"diverged at cv epoch {round_}: fold {broken[0]} has val_loss {m['val_loss']:.4g}, "
                f"auroc {m['auroc']:.4g} (non-finite loss or scores)")}
            return
        metrics = mean_over_folds(fold_metrics)
        best = min(best, metrics[metric])
        yield {**metrics, f"round_{metric}": metrics[metric], metric: best if score == "best" else metrics[metric],
               "diverged": False}
