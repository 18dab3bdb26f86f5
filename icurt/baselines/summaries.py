"""Per-feature summaries of the observation window: the baselines' input.

For each of the F features of a stay's (T, F) scaled window, in this order of blocks:
mean, last (the value at the last hour), min, max and slope (the least-squares slope over the hours
t = 0 … T−1, in scaled units per hour), giving an (N, 5·F) matrix; column block b, feature j is
column b·F + j (`summary_names` names them). These are the summaries the field's benchmarks use
for their logistic-regression baselines (mimic3-benchmarks: mean, min, max, last … per window),
and each is a function of the values alone, so icurt/baselines/torch_lr.py computes them from the
same (B, T, F) tensor the attack perturbs.

The share of hours measured (from Dataset.measured, (N, T, F) bool, True where the cell holds a
measurement) is an optional sixth block (`measured=`), off in the train stage's baselines: the
BiLSTM reads the values only, not the mask, and the fragility sweep moves values, never the mask,
so a baseline reading the mask would be compared on information the BiLSTM does not have and would
carry a part no attack can move. Datasets made by hand (and icurt.planted) hold no mask at all.
"""

from __future__ import annotations

import numpy as np

BLOCKS = ("mean", "last", "min", "max", "slope")
MEASURED_BLOCK = "measured_share"


def slope_weights(hours: int) -> np.ndarray:
    """(T,) weights w with slope = Σ_t w_t x_t: the least-squares slope of x over t = 0 … T−1,
    (t − t̄) / Σ (t − t̄)². Zeros for a single hour (no slope)."""
    t = np.arange(hours, dtype=np.float64)
    centred = t - t.mean()
    denominator = float((centred ** 2).sum())
    return centred / denominator if denominator > 0 else np.zeros(hours)


def summaries(features: np.ndarray, measured: np.ndarray | None = None) -> np.ndarray:
    """(N, 5·F) float64 summaries of `features` (N, T, F) scaled to [0, 1] (see the module
    docstring); with `measured` (N, T, F) bool also the share of hours measured per feature,
    (N, 6·F). ValueError when the arrays are not (N, T, F) or disagree in shape."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"features must be (N, T, F), got shape {x.shape}")
    blocks = [x.mean(axis=1), x[:, -1, :], x.min(axis=1), x.max(axis=1),
              np.einsum("ntf,t->nf", x, slope_weights(x.shape[1]))]
    if measured is not None:
        mask = np.asarray(measured)
        if mask.shape != x.shape:
            raise ValueError(f"measured has shape {mask.shape}, features {x.shape}")
        blocks.append(mask.mean(axis=1, dtype=np.float64))
    return np.concatenate(blocks, axis=1)


def summary_names(feature_names: list[str], measured: bool = False) -> list[str]:
    """The column names of `summaries`: "<block>(<feature>)", block-major."""
    blocks = BLOCKS + ((MEASURED_BLOCK,) if measured else ())
    return [f"{block}({name})" for block in blocks for name in feature_names]
