"""The vectorised per-partition work, on hand-built arrays and frames (no Ray, no files)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from icurt.errors import IcurtError
from icurt.preprocess import hourly

NAN = np.nan
T0 = pd.Timestamp("2150-01-01")


def test_interpolation_between_measured_hours_and_constant_fill_both_ways():
    means = np.full((1, 10, 1), NAN)
    means[0, 2, 0], means[0, 6, 0] = 10.0, 30.0
    filled, never = hourly.fill_hours(means, median=np.array([999.0]))
    expected = [10, 10, 10, 15, 20, 25, 30, 30, 30, 30]
    np.testing.assert_allclose(filled[0, :, 0], expected)
    assert not never.any()


def test_several_measured_hours_and_features_at_once():
    means = np.full((2, 8, 2), NAN)
    means[0, [0, 3, 7], 0] = [0.0, 3.0, -4.0]
    means[1, [1, 2], 1] = [5.0, 7.0]
    filled, never = hourly.fill_hours(means, median=np.array([100.0, 200.0]))
    np.testing.assert_allclose(filled[0, :, 0], [0, 1, 2, 3, 1.25, -0.5, -2.25, -4])  # slope -7/4
    np.testing.assert_allclose(filled[1, :, 1], [5, 5, 7, 7, 7, 7, 7, 7])
    # never measured: the global median, and counted
    np.testing.assert_allclose(filled[0, :, 1], 200.0)
    np.testing.assert_allclose(filled[1, :, 0], 100.0)
    assert never.tolist() == [[False, True], [True, False]]


def test_a_single_measurement_fills_the_whole_window():
    means = np.full((1, 48, 1), NAN)
    means[0, 20, 0] = 7.5
    filled, _ = hourly.fill_hours(means, median=np.array([0.0]))
    np.testing.assert_array_equal(filled[0, :, 0], np.full(48, 7.5))


def test_hourly_means_average_the_records_of_each_hour():
    stay_ids = np.array([11, 12])
    records = {"pivoted_vital": pd.DataFrame({
        "icustay_id": [11, 11, 11, 12], "hour": [0, 0, 2, 1],
        "heartrate": [60.0, 80.0, 90.0, NAN], "sysbp": [NAN, 120.0, NAN, 100.0]})}
    result = hourly.hourly_means(records, stay_ids, ["sysbp", "heartrate"], hours=3)
    expected = np.full((2, 3, 2), NAN)
    expected[0, 0] = [120.0, 70.0]
    expected[0, 2, 1] = 90.0
    expected[1, 1, 0] = 100.0
    np.testing.assert_array_equal(result.means, expected)
    assert result.n_measurements.tolist() == [4, 1]
    assert result.hours_with_data.tolist() == [2, 1]


def test_one_record_per_timestamp_is_the_mean_of_duplicates():
    frame = pd.DataFrame({"icustay_id": [5, 5, 5, 4], "hour": [1, 1, 1, 0],
                          "charttime": [T0 + pd.Timedelta("90min")] * 2 + [T0 + pd.Timedelta("100min"), T0],
                          "heartrate": [50.0, 70.0, 80.0, 1.0], "sysbp": [NAN, 110.0, NAN, NAN]})
    records = hourly.one_record_per_timestamp(frame, ["heartrate", "sysbp"])
    assert records["icustay_id"].tolist() == [4, 5, 5]
    assert records["heartrate"].tolist() == [1.0, 60.0, 80.0]
    assert records["sysbp"].iloc[1] == 110.0 and np.isnan(records["sysbp"].iloc[2])


def test_global_statistics_are_numpy_percentiles_of_all_measured_hourly_values():
    rng = np.random.default_rng(3)
    parts = [rng.normal(size=(4, 6, 2)), rng.normal(size=(3, 6, 2))]
    for part in parts:
        part[rng.random(part.shape) < 0.4] = NAN
    stats = hourly.global_statistics(parts, ["a", "b"], (10.0, 90.0))
    for f in range(2):
        values = np.concatenate([p[:, :, f].ravel() for p in parts])
        values = values[~np.isnan(values)]
        assert stats.p_low[f] == np.percentile(values, 10)
        assert stats.p_high[f] == np.percentile(values, 90)
        assert stats.median[f] == np.median(values)


def test_a_feature_measured_nowhere_is_an_error_naming_it():
    parts = [np.ones((2, 3, 2))]
    parts[0][:, :, 1] = NAN
    with pytest.raises(IcurtError, match="'lactate'"):
        hourly.global_statistics(parts, ["ph", "lactate"], (5.0, 95.0))


def test_winsorise_and_scale():
    stats = hourly.Statistics(p_low=np.array([10.0, 3.0]), p_high=np.array([20.0, 3.0]),
                              median=np.array([15.0, 3.0]))
    values = np.array([[[5.0, 1.0], [12.5, 3.0], [25.0, 9.0]]])
    scaled = hourly.winsorise_and_scale(values, stats)
    assert scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled[0, :, 0], np.float32([0.0, 0.25, 1.0]))
    np.testing.assert_array_equal(scaled[0, :, 1], np.zeros(3, np.float32))  # constant feature → 0


def test_a_nan_statistic_is_not_hidden_by_scaling():
    stats = hourly.Statistics(p_low=np.array([NAN]), p_high=np.array([NAN]), median=np.array([0.0]))
    assert np.isnan(hourly.winsorise_and_scale(np.ones((1, 2, 1)), stats)).all()
