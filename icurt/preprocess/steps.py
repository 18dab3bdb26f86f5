"""Frame-wide preprocess steps: the query-run contract, prefilter, merge, final window.

The functions use only the DataFrame API that pandas and Modin share, so the same code runs on a
pandas frame in-process or on a Modin frame spread over Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from icurt.config import PreprocessConfig
from icurt.errors import IcurtError
from icurt.preprocess.sources import TABLES, source_features

DETAIL = "icustay_detail"
SOURCES = TABLES
DETAIL_COLUMNS = ("subject_id", "hadm_id", "icustay_id", "admittime", "intime", "outtime",
                  "los_hospital", "los_icu", "admission_age", "hospital_expire_flag")
KEY_COLUMNS = ("icustay_id", "charttime")
HOUR = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class Prefiltered:
    stays: object            # one row per kept stay (pandas or Modin frame)
    filters: dict[str, int]  # rows left after each filter, in the order applied


def required_columns(settings: PreprocessConfig) -> dict[str, list[str]]:
    """Columns each query-run file must have for the configured features and their sources."""
    needed = {DETAIL: list(DETAIL_COLUMNS)}
    for source, names in source_features(settings.features, settings).items():
        needed[source] = [*KEY_COLUMNS, *names]
    return needed


def check_columns(available: dict[str, list[str]], settings: PreprocessConfig) -> None:
    """IcurtError naming the first column the query run lacks."""
    for table, columns in required_columns(settings).items():
        have = set(available[table])
        for column in columns:
            if column not in have:
                raise IcurtError(f"the query run's {table}.parquet has no column '{column}'; "
                                 "rerun `icurt query` with the current sql/ queries")


def prefilter(detail, settings: PreprocessConfig) -> Prefiltered:
    """Adult stays with long enough hospital and ICU stays, times present, one row per stay."""
    start = settings.observation_window_start
    filters = {DETAIL: len(detail)}
    conditions = [
        ("min_age", lambda d: d["admission_age"].clip(upper=settings.age_cap) >= settings.min_age,
         f"age >= {settings.min_age} years, ages capped at [preprocess].age_cap = {settings.age_cap}; "
         "lower [preprocess].min_age"),
        ("min_los_hospital", lambda d: d["los_hospital"] >= settings.min_los_hospital,
         f"los_hospital >= {settings.min_los_hospital} days; lower [preprocess].min_los_hospital"),
        ("min_los_icu", lambda d: d["los_icu"] >= settings.min_los_icu,
         f"los_icu >= {settings.min_los_icu} days; lower [preprocess].min_los_icu"),
        ("times_present", lambda d: d["icustay_id"].notna() & d["intime"].notna()
         & d["outtime"].notna() & d[start].notna(),
         f"icustay_id, intime, outtime and {start} not NULL; check the query run"),
    ]
    for name, condition, why in conditions:
        detail = detail[condition(detail)]
        filters[name] = _rows_left(detail, name, why)
    detail = detail.drop_duplicates(subset=["icustay_id"], keep="first")
    filters["one_row_per_stay"] = len(detail)
    if detail["hospital_expire_flag"].isna().any():
        raise IcurtError("the query run's icustay_detail has NULL hospital_expire_flag values; "
                         "rerun `icurt query` (every admission needs its outcome)")
    return Prefiltered(_typed_stays(detail, settings), filters)


def _rows_left(frame, name: str, why: str) -> int:
    rows = len(frame)
    if rows == 0:
        raise IcurtError(f"no ICU stay is left after the {name} filter (keeps {why})")
    return rows


def _typed_stays(detail, settings: PreprocessConfig):
    stays = detail[list(DETAIL_COLUMNS)].astype({
        "subject_id": "int64", "hadm_id": "int64", "icustay_id": "int64",
        "admittime": "datetime64[ns]", "intime": "datetime64[ns]", "outtime": "datetime64[ns]",
        "los_hospital": "float64", "los_icu": "float64", "admission_age": "float64",
        "hospital_expire_flag": "int64"})
    stays["age"] = stays["admission_age"].clip(upper=settings.age_cap)
    stays["window_start"] = stays[settings.observation_window_start]
    stays["observed_hours"] = (stays["outtime"] - stays["window_start"]) / HOUR
    # where hour 0 starts: the window start, or (clock bins) the first whole clock hour after it
    stays["hour_origin"] = (stays["window_start"] if settings.hour_bins == "window_start"
                            else stays["window_start"].dt.floor("h") + HOUR)
    return stays


def assign_partitions(stays: pd.DataFrame, num_partitions: int) -> pd.DataFrame:
    """Sorted by icustay_id, with `part`: contiguous id ranges of (nearly) equal stay counts."""
    stays = stays.sort_values("icustay_id", kind="stable", ignore_index=True)
    rank = np.arange(len(stays), dtype=np.int64)
    parts = max(1, min(num_partitions, len(stays)))
    return stays.assign(part=(rank * parts // len(stays)).astype(np.int64))


def merge_measurements(table, stays, features: list[str], hours: int, whole_stay: bool = False):
    """Measurements of kept stays with hour_origin, part and hour = floor((charttime - hour_origin)
    / 1 h): those inside the observation window (0 <= hour < hours), or every one of the stay with
    `whole_stay` (negative hours before the window, >= hours after it).

    Rows with a NULL icustay_id or no value for these features are dropped; `stays` needs
    icustay_id, hour_origin and part.
    """
    if list(table.columns) != [*KEY_COLUMNS, *features]:   # each Modin operation costs a pass
        table = table[[*KEY_COLUMNS, *features]]
    table = table[table["icustay_id"].notna() & table["charttime"].notna()
                  & table[features].notna().any(axis=1)]
    table = _cast(table, {"icustay_id": "int64", "charttime": "datetime64[ns]",
                          **dict.fromkeys(features, "float64")})
    merged = table.merge(stays[["icustay_id", "hour_origin", "part"]], on="icustay_id", how="inner")
    merged["hour"] = (merged["charttime"] - merged["hour_origin"]) // HOUR
    return merged if whole_stay else merged[(merged["hour"] >= 0) & (merged["hour"] < hours)]


def _cast(frame, dtypes: dict[str, str]):
    """astype for the columns not already of that type (each cast is a pass over the data).

    Any datetime64 unit is accepted as it is: the hour arithmetic is exact in each of them.
    """
    todo = {c: t for c, t in dtypes.items() if str(frame.dtypes[c]).split("[")[0] != t.split("[")[0]}
    return frame.astype(todo) if todo else frame


def final_window(stays: pd.DataFrame, n_measurements: np.ndarray, settings: PreprocessConfig,
                 filters: dict[str, int], n_timestamps: np.ndarray | None = None,
                 resampled_rows: np.ndarray | None = None) -> np.ndarray:
    """Mask of the stays kept; adds the rows left after each of its filters to `filters`.

    inclusion = window_length: `n_measurements` (records in the window) > 0 and outtime - window
    start >= min_observation_hours. inclusion = resampled_rows (the reference): the whole stay has
    >= min_stay_timestamps measurement timestamps (`n_timestamps`) and resampling it puts >=
    min_observation_hours hourly rows in the window (`resampled_rows`, icurt.preprocess.stay).
    """
    if settings.inclusion == "resampled_rows":
        keep = n_timestamps >= settings.min_stay_timestamps
        filters["min_stay_timestamps"] = _rows_left_mask(
            keep, "min_stay_timestamps", f"stays with >= {settings.min_stay_timestamps} measurement "
            "timestamps; lower [preprocess].min_stay_timestamps")
        keep &= resampled_rows >= settings.min_observation_hours
        filters["resampled_rows"] = _rows_left_mask(
            keep, "resampled_rows", f">= {settings.min_observation_hours} resampled hourly rows in the "
            "observation window; lower [preprocess].min_observation_hours or use inclusion = "
            "\"window_length\"")
        return keep
    keep = n_measurements > 0
    filters["measured_in_window"] = _rows_left_mask(
        keep, "measured_in_window", "stays with at least one measurement in the observation window; "
        "check the query run's charttimes")
    keep &= stays["observed_hours"].to_numpy() >= settings.min_observation_hours
    filters["min_observation_hours"] = _rows_left_mask(
        keep, "min_observation_hours", f"outtime - {settings.observation_window_start} >= "
        f"{settings.min_observation_hours} h; lower [preprocess].min_observation_hours")
    return keep


def _rows_left_mask(mask: np.ndarray, name: str, why: str) -> int:
    rows = int(mask.sum())
    if rows == 0:
        raise IcurtError(f"no ICU stay is left after the {name} filter (keeps {why})")
    return rows
