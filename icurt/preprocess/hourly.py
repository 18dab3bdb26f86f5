"""The per-stay work inside the observation window, vectorised over whole partitions of stays
(numpy, no loop over stays).

A partition holds every measurement of a contiguous range of stays. Per partition: one record
per stay and timestamp (mean of duplicates), flattened to (stay, hour, feature, value) records,
then the hourly means on a dense (stays × hours × features) array. After the global statistics
are known: linear interpolation between measured hours, constant fill before the first and after
the last one, the global median for a feature never measured in the stay, winsorising and min-max
scaling. What reads outside the window (the reference's choices) is icurt/preprocess/stay.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from icurt.errors import IcurtError


@dataclass(frozen=True)
class HourlyMeans:
    stay_ids: np.ndarray        # (S,) int64, ascending
    means: np.ndarray           # (S, H, F) float64, NaN where nothing was measured
    n_measurements: np.ndarray  # (S,) int64 records (stay, timestamp, feature) in the window
    hours_with_data: np.ndarray  # (S,) int64 hours with at least one record


@dataclass(frozen=True)
class Statistics:
    p_low: np.ndarray           # (F,) winsorising bounds = scaling min/max, clinical units
    p_high: np.ndarray
    median: np.ndarray          # (F,) the fill for a feature never measured in a stay

    def to_json(self, feature_names: list[str]) -> dict:
        return {name: {"p_low": float(self.p_low[f]), "p_high": float(self.p_high[f]),
                       "median": float(self.median[f])} for f, name in enumerate(feature_names)}


def one_record_per_timestamp(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Per stay and charttime one row: the mean of duplicate measurements; sorted."""
    keys = ["icustay_id", "charttime", "hour"]  # hour is a function of charttime within a stay
    return frame.groupby(keys, sort=True)[features].mean().reset_index()


@dataclass(frozen=True)
class Records:
    """Every measured (stay, timestamp, feature) value of a partition as flat (R,) arrays, ordered
    by table, then feature column, then stay and charttime."""
    stay: np.ndarray            # int64 index into the partition's stay_ids
    hour: np.ndarray            # int64 hour index (negative or >= H: outside the window)
    feature: np.ndarray         # int64 index into the feature names
    value: np.ndarray           # float64, clinical units
    time: np.ndarray | None     # int64 charttime in ns since the epoch (None: frames without charttime)


def flat_records(records: dict[str, pd.DataFrame], stay_ids: np.ndarray, feature_names: list[str],
                 with_time: bool = False) -> Records:
    """The measured values of per-timestamp record frames (one per table) as flat Records; their
    charttimes too `with_time`."""
    index = {name: f for f, name in enumerate(feature_names)}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("stay", "hour", "feature", "value", "time")}
    for frame in records.values():
        stay = np.searchsorted(stay_ids, frame["icustay_id"].to_numpy())
        hour = frame["hour"].to_numpy().astype(np.int64)
        time = frame["charttime"].to_numpy().astype("datetime64[ns]").view(np.int64) if with_time else None
        for name in frame.columns.intersection(feature_names, sort=False):
            column = frame[name].to_numpy(np.float64)
            measured = ~np.isnan(column)
            parts["stay"].append(stay[measured])
            parts["hour"].append(hour[measured])
            parts["feature"].append(np.full(int(measured.sum()), index[name], np.int64))
            parts["value"].append(column[measured])
            if with_time:
                parts["time"].append(time[measured])
    flat = {k: np.concatenate(v) if v else np.zeros(0, np.float64 if k == "value" else np.int64)
            for k, v in parts.items()}
    return Records(flat["stay"], flat["hour"], flat["feature"], flat["value"],
                   flat["time"] if with_time else None)


def hourly_means(records: dict[str, pd.DataFrame] | Records, stay_ids: np.ndarray,
                 feature_names: list[str], hours: int) -> HourlyMeans:
    """Mean of each stay's records per hour and feature inside the window, on a dense (S, H, F) array."""
    if not isinstance(records, Records):
        records = flat_records(records, stay_ids, feature_names)
    n_features = len(feature_names)
    inside = (records.hour >= 0) & (records.hour < hours)
    cell = (records.stay[inside] * hours + records.hour[inside]) * n_features + records.feature[inside]
    value = records.value[inside]
    size = len(stay_ids) * hours * n_features
    counts = np.bincount(cell, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.bincount(cell, weights=value, minlength=size) / counts
    shape = (len(stay_ids), hours, n_features)
    counts = counts.reshape(shape)
    return HourlyMeans(stay_ids, means.reshape(shape), counts.sum(axis=(1, 2)).astype(np.int64),
                       (counts.sum(axis=2) > 0).sum(axis=1).astype(np.int64))


def global_statistics(means: list[np.ndarray], feature_names: list[str],
                      percentiles: tuple[float, float]) -> Statistics:
    """Percentiles and median per feature over every measured hourly value of all partitions
    ([preprocess].statistics = window_hours)."""
    return statistics_of([[m[:, :, f][~np.isnan(m[:, :, f])] for m in means]
                          for f in range(len(feature_names))], feature_names, percentiles)


def statistics_of(values: list[list[np.ndarray]], feature_names: list[str],
                  percentiles: tuple[float, float]) -> Statistics:
    """numpy percentiles (linear, as pandas' describe()) and median per feature of `values[f]`
    (arrays of one feature's values, one per partition). IcurtError for a feature with no value
    or an infinite one."""
    p_low, p_high, median = (np.empty(len(feature_names)) for _ in range(3))
    for f, name in enumerate(feature_names):
        values_f = np.concatenate(values[f])
        if values_f.size == 0:
            raise IcurtError(f"feature '{name}' has no measurement in any stay of the cohort, so it "
                             "cannot be imputed; check the query run or drop it from "
                             "[preprocess].features")
        if not np.isfinite(values_f).all():
            raise IcurtError(f"feature '{name}' has infinite values in the query run; nothing was "
                             "written — fix or drop those rows in the query output")
        p_low[f], p_high[f] = np.percentile(values_f, percentiles)
        median[f] = np.median(values_f)
    return Statistics(p_low, p_high, median)


def fill_hours(means: np.ndarray, median: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation over hours, constant at both ends, median where never measured.

    Returns the filled (S, H, F) array and the (S, F) mask of features never measured.
    """
    _, hours, _ = means.shape
    measured = ~np.isnan(means)
    index_type = np.int16 if hours < 2**15 else np.int64  # small index arrays: less memory traffic
    hour = np.arange(hours, dtype=index_type)[None, :, None]
    before = np.maximum.accumulate(np.where(measured, hour, index_type(-1)), axis=1)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(measured, hour, index_type(hours)), axis=1),
                                          axis=1), axis=1)
    value_before = np.take_along_axis(means, np.maximum(before, 0), axis=1)
    filled = np.take_along_axis(means, np.minimum(after, hours - 1), axis=1)  # value after
    # in place on the big temporaries: filled = before + (after - before) * fraction of the gap
    fraction = (hour - before) / np.where(after > before, after - before, index_type(1))
    inside = np.subtract(filled, value_before)
    inside *= fraction
    inside += value_before
    np.copyto(filled, inside, where=(before >= 0) & (after < hours))
    np.copyto(filled, value_before, where=after >= hours)   # after the last measured hour
    never = ~measured.any(axis=1)
    np.copyto(filled, np.broadcast_to(median[None, None, :], filled.shape),
              where=never[:, None, :])
    return filled, never


def winsorise_and_scale(values: np.ndarray, stats: Statistics) -> np.ndarray:
    """Clip to [p_low, p_high] per feature and map that range onto [0, 1] (constant → 0)."""
    width = stats.p_high - stats.p_low
    scaled = np.clip(values, stats.p_low, stats.p_high)
    scaled -= stats.p_low
    scaled /= np.where(width == 0, 1.0, width)   # a NaN bound stays NaN, for the final check
    scaled[:, :, width == 0] = 0.0
    return scaled.astype(np.float32)
