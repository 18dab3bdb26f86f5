"""The groups of an attack run's samples and where a group's perturbations fall (pure numpy/pandas;
the definitions are in stats.py's docstring). Below stats.py and reference_stats.py, which both use it.

A *direction* is named by the original label: "0to1" = label-0 samples pushed to 1, "1to0" the
reverse; the group "all" pools both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from icurt.attack.results import Perturbations

DIRECTIONS = ("0to1", "1to0")
GROUPS = ("all", *DIRECTIONS)
ORIGINAL_LABEL = {"0to1": 0, "1to0": 1}
GROUP_TITLE = {"all": "all", "0to1": "0 → 1", "1to0": "1 → 0"}


@dataclass(frozen=True)
class LocationStats:
    """Where the perturbations of one group's n successful samples fall, on the (T, F) grid."""

    n_samples: int
    count: np.ndarray               # (T, F) samples with P_tj != 0
    max_abs: np.ndarray             # (T, F) MP_tj
    sum_abs: np.ndarray             # (T, F) Σ |P_tj|
    samples_by_feature: np.ndarray  # (F,) samples with some P_tj != 0
    samples_by_hour: np.ndarray     # (T,) samples with some P_tj != 0
    median_abs_by_feature: np.ndarray  # (F,) NaN where never perturbed

    @property
    def frequency(self) -> np.ndarray:
        """PP_tj (needs n_samples > 0)."""
        return self.count / self.n_samples

    @property
    def susceptibility(self) -> np.ndarray:
        """S_tj = MP_tj · PP_tj."""
        return self.max_abs * self.frequency


def group_rows(results: pd.DataFrame, group: str) -> pd.DataFrame:
    return results if group == "all" else results[results["label"] == ORIGINAL_LABEL[group]]


def successful_rows(results: pd.DataFrame, group: str) -> pd.DataFrame:
    rows = group_rows(results, group)
    return rows[rows["attacked"].astype(bool) & rows["success"].astype(bool)]


def location_stats(pert: Perturbations, samples: np.ndarray, shape: tuple) -> LocationStats:
    """Counts, MP, Σ|P| and per-feature median |P| over the given samples' non-zero elements."""
    _, hours, features = shape
    cells = hours * features
    keep = np.isin(pert.sample, np.asarray(samples, dtype=np.int64)) & (pert.value != 0)
    sample, cell = pert.sample[keep], pert.t[keep] * features + pert.f[keep]
    # one element per (sample, cell), whatever the writer did
    _, first = np.unique(sample * cells + cell, return_index=True)
    sample, cell, size = sample[first], cell[first], np.abs(pert.value[keep][first])
    max_abs = np.zeros(cells)
    np.maximum.at(max_abs, cell, size)
    feature, hour = cell % features, cell // features
    medians = np.array([np.median(size[feature == j]) if (feature == j).any() else np.nan
                        for j in range(features)])
    return LocationStats(
        n_samples=len(np.unique(samples)),
        count=np.bincount(cell, minlength=cells).reshape(hours, features),
        max_abs=max_abs.reshape(hours, features),
        sum_abs=np.bincount(cell, weights=size, minlength=cells).reshape(hours, features),
        samples_by_feature=np.bincount(np.unique(sample * features + feature) % features,
                                       minlength=features),
        samples_by_hour=np.bincount(np.unique(sample * hours + hour) % hours, minlength=hours),
        median_abs_by_feature=medians,
    )
