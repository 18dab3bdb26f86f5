"""The logistic-regression baseline as a torch module over the attack's input, so the fragility
sweep (icurt/attack/sweep.py sweep_curve) attacks it exactly as it attacks the BiLSTM.

forward(x): x (B, T, F) scaled to [0, 1] → the summaries of baselines/summaries.py (mean, last,
min, max, least-squares slope per feature; each differentiable almost everywhere: min/max pass the
gradient to the extreme hour) → the fitted StandardScaler and LogisticRegression → (B, 2) logits
[0, z], z = w · (s − μ) / σ + b. softmax(logits)[:, 1] = sigmoid(z) is scikit-learn's
predict_proba(·)[:, 1], and argmax is its prediction, as for the BiLSTM (icurt/model/lstm.py: the
second logit is "died"). The weights are kept in float64 and cast to the input's dtype.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from icurt.baselines.summaries import BLOCKS, slope_weights


class SummaryLogistic(nn.Module):
    """(B, T, F) → (B, 2) logits of a logistic regression on the window's summaries."""

    def __init__(self, hours: int, mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float):
        super().__init__()
        d = len(coef)
        if len(mean) != d or len(scale) != d or d % len(BLOCKS):
            raise ValueError(f"mean, scale and coef must have one entry per summary column, got {len(mean)}, "
                             f"{len(scale)}, {d} (columns: {len(BLOCKS)} blocks × features)")
        frozen = lambda a: nn.Parameter(torch.as_tensor(np.asarray(a, np.float64)), requires_grad=False)  # noqa: E731
        self.mean, self.scale, self.coef = frozen(mean), frozen(scale), frozen(coef)
        self.intercept = frozen([intercept])
        self.slope = frozen(slope_weights(hours))

    def summaries(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 5·F): mean, last, min, max, slope per feature, block-major (as summaries.py)."""
        slope = torch.einsum("btf,t->bf", x, self.slope.to(x.dtype))
        return torch.cat([x.mean(dim=1), x[:, -1, :], x.amin(dim=1), x.amax(dim=1), slope], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.summaries(x)
        z = ((s - self.mean.to(x.dtype)) / self.scale.to(x.dtype)) @ self.coef.to(x.dtype) + self.intercept.to(x.dtype)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def from_pipeline(pipeline, hours: int) -> SummaryLogistic:
    """The module of a fitted Pipeline(StandardScaler, LogisticRegression) on summaries(x) (no
    measured-share block) of windows of `hours` hours."""
    scaler, lr = pipeline[0], pipeline[-1]
    return SummaryLogistic(hours, scaler.mean_, scaler.scale_, lr.coef_[0], float(lr.intercept_[0]))


def from_record(weights: dict, hours: int) -> SummaryLogistic:
    """The module of one fold's entry of baselines.json "logistic_weights" (baselines/compare.py)."""
    return SummaryLogistic(hours, weights["mean"], weights["scale"], weights["coef"], weights["intercept"])
