"""Frame-wide steps on small pandas frames: filters, the column contract, the window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from icurt.config import load_config, with_overrides
from icurt.errors import IcurtError
from icurt.preprocess import steps


def settings(*overrides: str):
    return with_overrides(load_config(env={}), list(overrides)).preprocess


def detail(qr, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([qr.stay(**row) for row in rows])


def test_each_filter_drops_its_stays_and_counts_rows_left(qr):
    frame = detail(qr, [
        {"icustay_id": 1},
        {"icustay_id": 2, "age": 17.9},               # child
        {"icustay_id": 3, "age": 300.0},              # > 89: shifted age, an adult
        {"icustay_id": 4, "los_hospital": 0.9},
        {"icustay_id": 5, "los_icu": 0.5},
        {"icustay_id": 6},
    ])
    frame.loc[5, "outtime"] = pd.NaT
    frame = pd.concat([frame, frame.iloc[[0]]])      # a duplicate row of stay 1
    result = steps.prefilter(frame, settings())
    assert sorted(result.stays["icustay_id"]) == [1, 3]
    assert result.filters == {"icustay_detail": 7, "min_age": 6, "min_los_hospital": 5,
                              "min_los_icu": 4, "times_present": 3, "one_row_per_stay": 2}
    aged = result.stays.set_index("icustay_id")["age"]
    assert aged[3] == 91.4 and aged[1] == 60.0


def test_filters_follow_the_configured_thresholds(qr):
    frame = detail(qr, [{"icustay_id": 1, "age": 30, "los_hospital": 2.0, "los_icu": 1.5},
                        {"icustay_id": 2, "age": 50, "los_hospital": 4.0, "los_icu": 3.0}])
    assert steps.prefilter(frame, settings("preprocess.min_age=40")).filters["min_age"] == 1
    assert steps.prefilter(frame, settings("preprocess.min_los_hospital=3")).filters["min_los_hospital"] == 1
    assert steps.prefilter(frame, settings("preprocess.min_los_icu=2")).filters["min_los_icu"] == 1


def test_min_age_filters_on_the_capped_age(qr):
    # over-89s are shifted to ~300 years in MIMIC-III; their capped age is age_cap (91.4)
    frame = detail(qr, [{"icustay_id": 1, "age": 60.0}, {"icustay_id": 2, "age": 300.0},
                        {"icustay_id": 3, "age": 91.0}])
    kept = steps.prefilter(frame, settings("preprocess.min_age=91.2")).stays
    assert sorted(kept["icustay_id"]) == [2]                      # 91.4 >= 91.2; 91.0 and 60 are not
    assert sorted(steps.prefilter(frame, settings("preprocess.min_age=91.4")).stays["icustay_id"]) == [2]
    with pytest.raises(IcurtError, match="after the min_age filter .*capped at .*age_cap = 91.4"):
        steps.prefilter(frame, settings("preprocess.min_age=150"))


@pytest.mark.parametrize("override, name", [("preprocess.min_age=100", "min_age"),
                                            ("preprocess.min_los_hospital=50", "min_los_hospital"),
                                            ("preprocess.min_los_icu=50", "min_los_icu")])
def test_an_emptied_cohort_names_the_filter(qr, override, name):
    frame = detail(qr, [{"icustay_id": 1, "age": 60.0}, {"icustay_id": 2, "age": 70.0}])
    with pytest.raises(IcurtError, match=f"after the {name} filter"):
        steps.prefilter(frame, settings(override))


def test_a_missing_column_is_named():
    chosen = settings('preprocess.features=["heartrate", "ph"]')
    available = {table: list(columns) for table, columns in steps.required_columns(chosen).items()}
    available["pivoted_bg"].remove("ph")
    with pytest.raises(IcurtError, match=r"pivoted_bg.parquet has no column 'ph'"):
        steps.check_columns(available, chosen)


def test_merge_keeps_the_window_from_intime_and_drops_null_ids(qr):
    stays = steps.assign_partitions(
        steps.prefilter(detail(qr, [{"icustay_id": 1, "intime": qr.T0 + 5 * qr.HOUR}]), settings()).stays, 1)
    table = qr.measurements("pivoted_vital", [
        (1, 4.0, "heartrate", 1.0),      # intime - 1 h: before the window
        (1, 5.0, "heartrate", 2.0),      # intime: hour 0
        (1, 52.99, "heartrate", 3.0),    # intime + 47.99 h: hour 47
        (1, 53.0, "heartrate", 4.0),     # intime + 48 h: after the window
        (1, 6.0, "sysbp", 5.0),          # no heart rate, but a value: kept
        (None, 6.0, "heartrate", 6.0),   # NULL icustay_id
        (2, 6.0, "heartrate", 7.0),      # not a kept stay
    ])
    merged = steps.merge_measurements(table, stays, ["heartrate", "sysbp"], hours=48)
    assert merged["heartrate"].dropna().tolist() == [2.0, 3.0]
    assert merged["hour"].tolist() == [0, 47, 1]
    assert merged["sysbp"].dropna().tolist() == [5.0]


def test_window_start_can_be_the_admission(qr):
    frame = detail(qr, [{"icustay_id": 1, "intime": qr.T0 + 10 * qr.HOUR, "admit_before_h": 10.0}])
    cfg = settings("preprocess.observation_window_start=\"admittime\"")
    stays = steps.assign_partitions(steps.prefilter(frame, cfg).stays, 1)
    table = qr.measurements("pivoted_vital", [(1, 10.5, "heartrate", 1.0)])
    assert steps.merge_measurements(table, stays, ["heartrate"], hours=48)["hour"].tolist() == [10]


def test_final_window_drops_short_and_unmeasured_stays(qr):
    frame = detail(qr, [{"icustay_id": 1, "los_icu": 3.0}, {"icustay_id": 2, "los_icu": 47.5 / 24},
                        {"icustay_id": 3, "los_icu": 2.0}, {"icustay_id": 4, "los_icu": 5.0}])
    stays = steps.assign_partitions(steps.prefilter(frame, settings()).stays, 1)
    filters = {}
    keep = steps.final_window(stays, np.array([3, 9, 1, 0]), settings(), filters)
    assert keep.tolist() == [True, False, True, False]
    assert filters == {"measured_in_window": 3, "min_observation_hours": 2}
    with pytest.raises(IcurtError, match="after the min_observation_hours filter"):
        steps.final_window(stays.iloc[[1]], np.array([4]), settings(), {})


def test_partitions_are_contiguous_id_ranges():
    stays = pd.DataFrame({"icustay_id": [9, 3, 7, 1, 5]})
    parted = steps.assign_partitions(stays, 2)
    assert parted["icustay_id"].tolist() == [1, 3, 5, 7, 9]
    assert parted["part"].tolist() == [0, 0, 0, 1, 1]


def test_partition_count():
    from icurt.preprocess.engine import partition_count

    assert partition_count(0, 35_000, cpus=2) == 4        # at most 10,000 stays per partition
    assert partition_count(0, 500, cpus=2) == 2           # one per CPU
    assert partition_count(8, 500, cpus=2) == 8           # as configured
    assert partition_count(8, 3, cpus=2) == 3             # never more than stays
