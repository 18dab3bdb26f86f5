"""The preprocessed dataset as it travels between stages: arrays in one .npz plus JSON sidecars."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from icurt.errors import IcurtError
from icurt.files import damaged, read_json, read_npz, write_json

ARRAYS_FILE, FEATURES_FILE, STATS_FILE = "dataset.npz", "feature_names.json", "normalisation.json"


@dataclass(frozen=True)
class Dataset:
    features: np.ndarray        # (N, T, F) float32 in [0, 1]
    labels: np.ndarray          # (N,) int64, 1 = died in hospital
    stay_ids: np.ndarray        # (N,) int64 icustay_id
    feature_names: list[str]    # length F, the order of the last axis
    normalisation: dict         # per feature: {"p_low", "p_high", "median"} in clinical units
    subject_ids: np.ndarray | None = None  # (N,) int64 subject_id (the patient); None in hand-made data
    hadm_ids: np.ndarray | None = None     # (N,) int64 hadm_id (the hospital admission)
    measured: np.ndarray | None = None     # (N, T, F) bool: the hour × feature cell holds a measurement
                                           # (False: interpolated, held constant or imputed)

    def __post_init__(self):
        n, t, f = self.features.shape
        if self.labels.shape != (n,) or self.stay_ids.shape != (n,) or len(self.feature_names) != f:
            raise ValueError("dataset arrays disagree in shape")
        for name, shape in (("subject_ids", (n,)), ("hadm_ids", (n,)), ("measured", (n, t, f))):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"dataset {name} has shape {value.shape}, expected {shape}")


OPTIONAL_ARRAYS = {"subject_ids": np.int64, "hadm_ids": np.int64, "measured": np.bool_}


def save_dataset(folder: Path, ds: Dataset) -> None:
    if not np.isfinite(ds.features).all():
        raise IcurtError("the features contain NaN or infinite values; nothing was written — "
                         "check the preprocess inputs")
    optional = {name: getattr(ds, name).astype(dtype) for name, dtype in OPTIONAL_ARRAYS.items()
                if getattr(ds, name) is not None}
    np.savez(folder / ARRAYS_FILE, features=ds.features.astype(np.float32),
             labels=ds.labels.astype(np.int64), stay_ids=ds.stay_ids.astype(np.int64), **optional)
    write_json(folder / FEATURES_FILE, list(ds.feature_names))
    write_json(folder / STATS_FILE, ds.normalisation)


def load_dataset(folder: Path) -> Dataset:
    """The dataset of a preprocess run folder. IcurtError (one line naming the file) when a file is
    missing or damaged (see icurt/files.py), when arrays disagree in shape, or when the features
    hold NaN or infinite values (which no training or attack can use)."""
    path = Path(folder) / ARRAYS_FILE
    for name in (ARRAYS_FILE, FEATURES_FILE, STATS_FILE):
        if not (Path(folder) / name).exists():
            raise IcurtError(f"{folder} holds no {name}; is it a completed preprocess run?")
    arrays = read_npz(path)
    missing = [name for name in ("features", "labels", "stay_ids") if name not in arrays]
    if missing:
        raise damaged(path, f"it lacks {', '.join(missing)}")
    features = arrays["features"]
    if not np.issubdtype(features.dtype, np.floating) or features.ndim != 3:
        raise damaged(path, f"features are {features.dtype} of shape {features.shape}, not (N, T, F) floats")
    bad = int(features.size - np.isfinite(features).sum())
    if bad:
        raise damaged(path, f"{bad:,} of its {features.size:,} feature values are NaN or infinite")
    optional = {name: arrays[name] for name in OPTIONAL_ARRAYS if name in arrays}
    try:
        return Dataset(features=features, labels=arrays["labels"], stay_ids=arrays["stay_ids"],
                       feature_names=read_json(Path(folder) / FEATURES_FILE),
                       normalisation=read_json(Path(folder) / STATS_FILE), **optional)
    except ValueError as exc:
        raise damaged(path, str(exc)) from None


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
