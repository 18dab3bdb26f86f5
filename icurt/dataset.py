"""The preprocessed dataset as it travels between stages: arrays in one .npz plus JSON sidecars."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from icurt.errors import IcurtError

ARRAYS_FILE, FEATURES_FILE, STATS_FILE = "dataset.npz", "feature_names.json", "normalisation.json"


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray        # (N, T, F) float32 in [0, 1]
    labels: np.ndarray          # (N,) int64, 1 = died in hospital
    stay_ids: np.ndarray        # (N,) int64 icustay_id
    feature_names: list[str]    # length F, the order of the last axis
    normalisation: dict         # per feature: {"p_low", "p_high", "median"} in clinical units

    def __post_init__(self):
        n, _, f = self.features.shape
        if self.labels.shape != (n,) or self.stay_ids.shape != (n,) or len(self.feature_names) != f:
            raise ValueError("dataset arrays disagree in shape")


def save_dataset(folder: Path, ds: Dataset) -> None:
    if not np.isfinite(ds.features).all():
        raise IcurtError("the features contain NaN or infinite values; nothing was written — "
                         "check the preprocess inputs")
    np.savez(folder / ARRAYS_FILE, features=ds.features.astype(np.float32),
             labels=ds.labels.astype(np.int64), stay_ids=ds.stay_ids.astype(np.int64))
    (folder / FEATURES_FILE).write_text(json.dumps(ds.feature_names))
    (folder / STATS_FILE).write_text(json.dumps(ds.normalisation, indent=2))


def load_dataset(folder: Path) -> Dataset:
    path = Path(folder) / ARRAYS_FILE
    if not path.exists():
        raise IcurtError(f"{folder} holds no {ARRAYS_FILE}; is it a completed preprocess run?")
    with np.load(path, allow_pickle=False) as arrays:
        return Dataset(features=arrays["features"], labels=arrays["labels"], stay_ids=arrays["stay_ids"],
                       feature_names=json.loads((Path(folder) / FEATURES_FILE).read_text()),
                       normalisation=json.loads((Path(folder) / STATS_FILE).read_text()))


def scaling_range(normalisation: Mapping, feature: str) -> tuple[float, float] | None:
    """(p_low, p_high) in clinical units that scaled [0, 1] maps onto: scaled = (v - p_low) /
    (p_high - p_low), so one scaled unit is p_high - p_low clinical units. None when
    normalisation.json has no usable range for the feature."""
    entry = normalisation.get(feature) or {}
    try:
        low, high = float(entry["p_low"]), float(entry["p_high"])
    except (KeyError, TypeError, ValueError):
        return None
    return (low, high) if np.isfinite(low) and np.isfinite(high) and high > low else None
