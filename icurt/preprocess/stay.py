"""What lies outside the observation window, for the reference study's preprocessing choices
([preprocess] statistics = stay_rows, interpolation = stay, inclusion = resampled_rows) and for a
feature read from two tables (merged by charttime). Vectorised over a partition's flat Records
(icurt/preprocess/hourly.py): numpy and one pandas groupby, no loop over stays.

The reference resamples each stay hourly over its whole length (pandas resample + interpolate,
limit_direction "both"), then cuts the window; for the window's hours that is the same as
interpolating between the nearest measured hour on each side, wherever in the stay it lies, and
holding the value constant beyond the stay's first and last measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from icurt.preprocess.hourly import Records

NO_HOUR = 2**40  # sentinel "hour" of a stay without records: outside every window


@dataclass(frozen=True)
class Outside:
    """Per stay and feature (S, F), float64, NaN where nothing was measured on that side: the
    nearest measured hour before the window (negative) and after it (>= H), and the mean of the
    records in that hour."""
    before_hour: np.ndarray
    before_value: np.ndarray
    after_hour: np.ndarray
    after_value: np.ndarray


@dataclass(frozen=True)
class StayExtent:
    """Per stay (S,), over every record of the whole stay (any feature, any time)."""
    n_timestamps: np.ndarray    # int64, distinct charttimes
    first_hour: np.ndarray      # int64 hour of the first record (NO_HOUR when none)
    last_hour: np.ndarray       # int64 hour of the last record (-NO_HOUR when none)


def merge_by_time(records: Records) -> Records:
    """One record per stay, feature and charttime: the mean where two tables measured the same
    feature at the same time (a feature read from both). Sorted by stay, feature, charttime."""
    frame = pd.DataFrame({"stay": records.stay, "feature": records.feature, "time": records.time,
                          "hour": records.hour, "value": records.value})
    merged = frame.groupby(["stay", "feature", "time"], sort=True).agg(
        hour=("hour", "first"), value=("value", "mean")).reset_index()
    return Records(*(merged[k].to_numpy() for k in ("stay", "hour", "feature", "value", "time")))


def outside_window(records: Records, n_stays: int, n_features: int, hours: int) -> Outside:
    """The nearest measured hour on each side of the window per stay and feature, and its mean."""
    key = records.stay * n_features + records.feature
    before_hour, before_value = _nearest(records, key, n_stays * n_features, records.hour < 0, np.maximum)
    after_hour, after_value = _nearest(records, key, n_stays * n_features, records.hour >= hours, np.minimum)
    shape = (n_stays, n_features)
    return Outside(before_hour.reshape(shape), before_value.reshape(shape), after_hour.reshape(shape),
                   after_value.reshape(shape))


def _nearest(records: Records, key: np.ndarray, size: int, side: np.ndarray, pick) -> tuple[np.ndarray, ...]:
    """Per key, the hour `pick` chooses among the records on `side` and the mean value in it."""
    hour_at = np.full(size, -NO_HOUR if pick is np.maximum else NO_HOUR, np.int64)
    pick.at(hour_at, key[side], records.hour[side])
    at = side & (records.hour == hour_at[key])
    counts = np.bincount(key[at], minlength=size)
    sums = np.bincount(key[at], weights=records.value[at], minlength=size)
    found = counts > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(found, sums / counts, np.nan)
    return np.where(found, hour_at, np.nan), value


def stay_extent(records: Records, n_stays: int) -> StayExtent:
    """Distinct charttimes and the first and last record's hour per stay."""
    order = np.lexsort((records.time, records.stay))
    stay, time = records.stay[order], records.time[order]
    new = np.ones(stay.size, bool)
    new[1:] = (stay[1:] != stay[:-1]) | (time[1:] != time[:-1])
    first = np.full(n_stays, NO_HOUR, np.int64)
    last = np.full(n_stays, -NO_HOUR, np.int64)
    np.minimum.at(first, records.stay, records.hour)
    np.maximum.at(last, records.stay, records.hour)
    return StayExtent(np.bincount(stay[new], minlength=n_stays).astype(np.int64), first, last)


def resampled_rows(extent: StayExtent, hours: int, last_bin_inside: np.ndarray) -> np.ndarray:
    """(S,) hourly rows that resampling the whole stay (from its first record's hour to its last's)
    puts in the window's `hours` bins; the last bin counts only where `last_bin_inside` (with clock
    bins it starts at the window's end when the window starts on the hour, as in the reference's
    rows strictly inside (start, start + hours))."""
    high = np.minimum(extent.last_hour, hours - 1 - (~last_bin_inside).astype(np.int64))
    return np.maximum(high - np.maximum(extent.first_hour, 0) + 1, 0)


def values_by_feature(records: Records, n_features: int) -> list[np.ndarray]:
    """Every record's value per feature (the reference's describe() of all raw measurement rows)."""
    order = np.argsort(records.feature, kind="stable")
    bounds = np.searchsorted(records.feature[order], np.arange(n_features + 1))
    return [records.value[order[bounds[f]:bounds[f + 1]]] for f in range(n_features)]


def fill_from_stay(means: np.ndarray, median: np.ndarray, outside: Outside) -> tuple[np.ndarray, np.ndarray]:
    """The window's (S, H, F) hourly means interpolated linearly in time between the nearest
    measured hours on each side, wherever in the stay they are; constant beyond the stay's first and
    last measurement; the median where the feature was never measured in the stay.

    Returns the filled array and the (S, F) mask of features filled with the median.
    """
    n_stays, hours, n_features = means.shape
    values = np.concatenate([outside.before_value[:, None], means, outside.after_value[:, None]], axis=1)
    window = np.broadcast_to(np.arange(hours, dtype=np.float64)[None, :, None], means.shape)
    position = np.concatenate([outside.before_hour[:, None], window, outside.after_hour[:, None]], axis=1)
    measured = ~np.isnan(values)
    slot = np.arange(hours + 2)[None, :, None]
    before = np.maximum.accumulate(np.where(measured, slot, -1), axis=1)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(measured, slot, hours + 2), axis=1), axis=1), axis=1)
    has_before, has_after = before >= 0, after <= hours + 1
    value_before = np.take_along_axis(values, np.maximum(before, 0), axis=1)
    value_after = np.take_along_axis(values, np.minimum(after, hours + 1), axis=1)
    hour_before = np.take_along_axis(position, np.maximum(before, 0), axis=1)
    hour_after = np.take_along_axis(position, np.minimum(after, hours + 1), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = (position - hour_before) / (hour_after - hour_before)
        inside = (value_after - value_before) * fraction + value_before
    filled = np.where(has_before & has_after & (after > before), inside,
                      np.where(has_before, value_before, value_after))[:, 1:hours + 1]
    never = ~measured.any(axis=1)
    filled = np.where(never[:, None, :], median[None, None, :], filled)
    return filled, never
