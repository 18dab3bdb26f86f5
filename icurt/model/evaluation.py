"""What a train run reports per fold, from the checkpoint each fold chose (no Ray): predictions on
the held-out, the checkpoint-choice and the fit samples; the F1-maximising threshold on the choice
samples (validation data: never 0.5 by default, since training oversamples deaths); the held-out
metrics at that threshold and the same metrics on the samples the model was fitted on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from icurt.model.checkpoint import Checkpoint
from icurt.model.folds import FoldRows
from icurt.model.metrics import f1_threshold
from icurt.model.trainer import metrics_of, predict_logits


@dataclass(frozen=True)
class FoldReport:
    fold: int
    best_epoch: int
    epochs_trained: int | None   # epochs the fold trained (fewer than [train].epochs when it stopped early)
    threshold: float             # P(died) > threshold predicts "died"
    metrics: dict[str, float]    # on the held-out samples (model/summary.py SUMMARY_METRICS)
    train_metrics: dict[str, float]  # on the fit samples, same threshold
    sizes: dict[str, int]        # samples fitted on, choosing on, held out
    p_held_out: np.ndarray       # (len(rows.held_out),) P(died) in rows.held_out order

    def as_summary_row(self) -> dict:
        return {"fold": self.fold, "best_epoch": self.best_epoch, "epochs_trained": self.epochs_trained,
                "threshold": self.threshold,
                "metrics": self.metrics, "train_metrics": self.train_metrics, "sizes": self.sizes}


def _logits(model, features: np.ndarray, rows: np.ndarray, device: str, precision: str) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(features[rows])).to(device)
    return predict_logits(model, x, precision=precision).float()


def report_fold(fold: int, best_epoch: int, checkpoint: Checkpoint, features: np.ndarray, labels: np.ndarray,
                rows: FoldRows, device: str = "cpu", epochs_trained: int | None = None) -> FoldReport:
    """The FoldReport of `checkpoint` (the fold's chosen model) on its fold's rows of the dataset
    (features (N, T, F) scaled to [0, 1], labels (N,) 0/1), evaluated in the precision it was
    trained in (IcurtError where `device` cannot run it)."""
    model = checkpoint.build(device)
    output = checkpoint.shape.output
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    held = _logits(model, features, rows.held_out, device, checkpoint.precision)
    choice = held if rows.chooses_on_held_out else _logits(model, features, rows.choice, device, checkpoint.precision)
    p_choice = torch.softmax(choice, dim=1)[:, 1].cpu().numpy()
    threshold = f1_threshold(labels[rows.choice], p_choice)
    threshold = 0.5 if math.isnan(threshold) else threshold
    metrics = metrics_of(held, y[rows.held_out], output, threshold)
    fitted = _logits(model, features, rows.fit, device, checkpoint.precision)
    train_metrics = metrics_of(fitted, y[rows.fit], output, threshold)
    sizes = {"fit": int(len(rows.fit)), "choice": int(len(rows.choice)), "held_out": int(len(rows.held_out))}
    return FoldReport(fold, best_epoch, epochs_trained, float(threshold), metrics, train_metrics, sizes,
                      torch.softmax(held, dim=1)[:, 1].cpu().numpy().astype(np.float64))
