"""The reference study's preprocessing choices, each a [preprocess] setting, on hand-built query runs
whose right values are worked out by hand here; and the reference profile against a plain per-stay
pandas rendering of the reference code (resample, interpolate, cut) on random stays."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from icurt.config import load_config, named_config_path, with_overrides
from icurt.dataset import load_dataset
from icurt.errors import IcurtError
from icurt.preprocess import stay, steps
from icurt.preprocess.partition import PartitionPlan, summarise_partition
from icurt.preprocess.sources import source_features
from icurt.stages import run_stage

REFERENCE = {"statistics": "stay_rows", "interpolation": "stay", "inclusion": "resampled_rows",
             "hour_bins": "clock"}


def config(tmp_path, features, *overrides: str, **settings: str):
    return with_overrides(load_config(env={}), [
        f"paths.data={tmp_path}", "preprocess.engine=\"pandas\"", f"preprocess.features={json.dumps(features)}",
        *[f"preprocess.{key}=\"{value}\"" for key, value in settings.items()], *overrides])


def preprocess(cfg, query_run):
    run = run_stage("preprocess", cfg, query_run)
    return run, load_dataset(run.path), json.loads(run.file("cohort.json").read_text())


# ---- statistics ------------------------------------------------------------------------------

@pytest.mark.parametrize("statistics", ["window_hours", "stay_rows"])
def test_statistics_over_window_hours_or_every_record_of_the_stay(tmp_path, qr, statistics):
    cfg = config(tmp_path, ["heartrate", "sysbp"], "preprocess.winsorize_percentiles=[25.0, 75.0]",
                 statistics=statistics)
    vital = [(1, -2.0, "heartrate", 10.0), (1, 0.5, "heartrate", 20.0), (1, 1.2, "heartrate", 30.0),
             (1, 1.7, "heartrate", 50.0), (1, 60.0, "heartrate", 100.0),
             (1, 1.0, "sysbp", 120.0), (1, 2.0, "sysbp", 130.0)]
    _, ds, _ = preprocess(cfg, qr.write(cfg, [qr.stay(1)], vital=vital))
    if statistics == "window_hours":      # hourly means in the window: hour 0 → 20, hour 1 → (30 + 50) / 2
        low, high, median = 25.0, 35.0, 30.0   # percentiles of [20, 40]
    else:                                 # every record of the stay: [10, 20, 30, 50, 100]
        low, high, median = 20.0, 50.0, 30.0
    assert ds.normalisation["heartrate"] == {"p_low": low, "p_high": high, "median": median}
    assert ds.normalisation["sysbp"] == {"p_low": 122.5, "p_high": 127.5, "median": 125.0}
    expected = (np.clip([20.0] + [40.0] * 47, low, high) - low) / (high - low)
    np.testing.assert_allclose(ds.features[0, :, 0], expected, atol=1e-6)


# ---- interpolation ---------------------------------------------------------------------------

@pytest.mark.parametrize("interpolation", ["window", "stay"])
def test_interpolation_inside_the_window_or_over_the_whole_stay(tmp_path, qr, interpolation):
    cfg = config(tmp_path, ["heartrate", "sysbp"], "preprocess.winsorize_percentiles=[0.0, 100.0]",
                 interpolation=interpolation)
    vital = [(1, -4.0, "heartrate", 0.0), (1, 4.0, "heartrate", 80.0), (1, 60.0, "heartrate", 136.0),
             (1, -10.0, "sysbp", 100.0),                       # stay 1: sysbp only before the window
             (2, 0.0, "heartrate", 0.0), (2, 1.0, "heartrate", 200.0),
             (2, 0.0, "sysbp", 120.0), (2, 1.0, "sysbp", 140.0)]
    run, ds, cohort = preprocess(cfg, qr.write(cfg, [qr.stay(1), qr.stay(2)], vital=vital))
    # bounds from the window's hourly means: heart rate {80, 0, 200}, sysbp {120, 140}
    hour = np.arange(48.0)
    if interpolation == "window":   # only hour 4 is in the window: 80 throughout; sysbp never → median 130
        heartrate, sysbp = np.full(48, 80.0), np.full(48, 130.0)
    else:                           # (-4, 0) → (4, 80) → (60, 136); sysbp held at 100 from hour -10
        heartrate, sysbp = np.where(hour < 4, 10 * (hour + 4), 80 + (hour - 4)), np.full(48, 100.0)
    np.testing.assert_allclose(ds.features[0, :, 0], heartrate / 200, atol=1e-6)
    np.testing.assert_allclose(ds.features[0, :, 1], (np.clip(sysbp, 120, 140) - 120) / 20, atol=1e-6)
    assert json.loads(run.file("imputation.json").read_text())["sysbp"] == 0.5   # never in the window
    assert cohort["median_filled"]["sysbp"] == (0.5 if interpolation == "window" else 0.0)


def test_whole_stay_fill_between_the_nearest_hours_on_either_side():
    means = np.full((2, 4, 1), np.nan)
    means[0, 2, 0] = 6.0
    outside = stay.Outside(before_hour=np.array([[-2.0], [np.nan]]), before_value=np.array([[2.0], [np.nan]]),
                           after_hour=np.array([[10.0], [np.nan]]), after_value=np.array([[14.0], [np.nan]]))
    filled, median = stay.fill_from_stay(means, np.array([9.0]), outside)
    # stay 0: (-2, 2) → (2, 6): slope 1; (2, 6) → (10, 14): slope 1. Stay 1: nothing → median.
    np.testing.assert_allclose(filled[:, :, 0], [[4.0, 5.0, 6.0, 7.0], [9.0] * 4])
    assert median.tolist() == [[False], [True]]


# ---- hour bins -------------------------------------------------------------------------------

def test_clock_bins_start_at_the_first_whole_hour_after_the_window_start(qr):
    intime = qr.T0 + pd.Timedelta(minutes=30)     # 00:30
    frame = pd.DataFrame([qr.stay(1, intime=intime)])
    minutes = [15, 40, 70, 119, 48 * 60 + 20, 48 * 60 + 40]   # after T0 (00:00)
    table = qr.measurements("pivoted_vital", [(1, m / 60, "heartrate", float(m)) for m in minutes])
    hours = {}
    for bins in ("window_start", "clock"):
        settings = with_overrides(load_config(env={}), [f"preprocess.hour_bins=\"{bins}\""]).preprocess
        stays = steps.assign_partitions(steps.prefilter(frame, settings).stays, 1)
        merged = steps.merge_measurements(table, stays, ["heartrate"], hours=48, whole_stay=True)
        by_value = dict(zip(merged["heartrate"], merged["hour"]))
        hours[bins] = [by_value[float(m)] for m in minutes]
    # from 00:30: 00:15 → -1, 00:40 → 0, 01:10 → 0, 01:59 → 1, 48:20 → 47, 48:40 → 48
    assert hours["window_start"] == [-1, 0, 0, 1, 47, 48]
    # clock hours from 01:00: 00:15 and 00:40 → -1, 01:10 → 0, 01:59 → 0, 48:20 → 47, 48:40 → 47
    assert hours["clock"] == [-1, -1, 0, 0, 47, 47]


# ---- inclusion -------------------------------------------------------------------------------

def inclusion_run(qr, cfg):
    half = pd.Timedelta(minutes=30)
    stays = [qr.stay(1, intime=qr.T0 + half), qr.stay(2, intime=qr.T0 + half), qr.stay(3),
             qr.stay(4), qr.stay(5, intime=qr.T0 + half, los_icu=1.5)]
    times = {1: [10 / 60, 20, 48 + 20 / 60],   # clock hours -1 … 47: 48 rows in the window
             2: [70 / 60, 20, 47 + 50 / 60],   # 0 … 46: 47 rows
             3: [-1, 20, 55],                  # intime on the hour: the 48th bin starts at intime + 48 h
             4: [-5, 60],                      # two timestamps
             5: [-2, 10, 52]}                  # 48 rows, but outtime - intime = 36 h
    vital = [(s, t, "heartrate", 70.0 + s) for s, ts in times.items() for t in ts]
    return qr.write(cfg, stays, vital=vital)


def test_inclusion_by_resampled_rows_in_the_window(tmp_path, qr):
    cfg = config(tmp_path, ["heartrate"], inclusion="resampled_rows", hour_bins="clock")
    _, ds, cohort = preprocess(cfg, inclusion_run(qr, cfg))
    assert ds.stay_ids.tolist() == [1, 5]
    assert cohort["filters"]["min_stay_timestamps"] == 4 and cohort["filters"]["resampled_rows"] == 2


def test_inclusion_by_window_length(tmp_path, qr):
    cfg = config(tmp_path, ["heartrate"])
    _, ds, cohort = preprocess(cfg, inclusion_run(qr, cfg))
    # stay 4 has nothing in [intime, intime + 48 h); stay 5 was observed 36 h
    assert ds.stay_ids.tolist() == [1, 2, 3]
    assert cohort["filters"]["measured_in_window"] == 4 and cohort["filters"]["min_observation_hours"] == 3


def test_resampled_rows_count_the_window_bins_a_stay_spans():
    extent = stay.StayExtent(n_timestamps=np.array([3, 3, 3, 0]), first_hour=np.array([-1, 0, -2, stay.NO_HOUR]),
                             last_hour=np.array([47, 46, 54, -stay.NO_HOUR]))
    rows = stay.resampled_rows(extent, 48, last_bin_inside=np.array([True, True, False, True]))
    assert rows.tolist() == [48, 47, 47, 0]


# ---- feature sources -------------------------------------------------------------------------

def source_frame(rows):
    """A merged frame: (hours after T0, potassium) rows of stay 1, window from T0."""
    t0 = pd.Timestamp("2150-01-01")
    return pd.DataFrame({"icustay_id": 1, "charttime": [t0 + pd.Timedelta(hours=h) for h, _ in rows],
                         "hour": [int(h) for h, _ in rows], "potassium": [v for _, v in rows]})


@pytest.mark.parametrize("source,expected", [
    ("blood_gas", {1: 4.3, 3: 5.0}),              # hour 1: (4.0 + 4.6) / 2
    ("chemistry", {1: 4.4, 2: 3.0}),
    ("both", {1: 4.4, 2: 3.0, 3: 5.0}),           # 01:00 in both tables → 4.2 once; hour 1: (4.2 + 4.6) / 2
])
def test_a_feature_source_is_a_table_or_both_merged_by_charttime(source, expected):
    settings = with_overrides(load_config(env={}), [f"preprocess.potassium_source=\"{source}\"",
                                                    "preprocess.features=[\"potassium\"]"]).preprocess
    plan = PartitionPlan.of(settings)
    tables = {"pivoted_bg": source_frame([(1.0, 4.0), (1.5, 4.6), (3.0, 5.0)]),
              "pivoted_lab": source_frame([(1.0, 4.4), (2.0, 3.0)])}
    merged = {table: frame for table, frame in tables.items() if plan.source_features[table]}
    _, summary = summarise_partition(merged, np.array([1]), plan)
    means = summary.hourly.means[0, :, 0]
    assert {h: round(float(means[h]), 10) for h in np.flatnonzero(~np.isnan(means))} == expected


def test_chemistry_calcium_is_read_from_the_lab_query(tmp_path, qr):
    cfg = config(tmp_path, ["calcium"], calcium_source="chemistry")
    query_run = qr.write(cfg, [qr.stay(1)], lab=[(1, 2.0, "calcium", 8.8)], bg=[(1, 2.0, "calcium", 1.1)])
    _, ds, _ = preprocess(cfg, query_run)
    assert ds.normalisation["calcium"]["median"] == 8.8      # total calcium, mg/dL
    old = qr.write(cfg, [qr.stay(1)], bg=[(1, 2.0, "calcium", 1.1)], drop={"pivoted_lab": ["calcium"]})
    with pytest.raises(IcurtError, match="pivoted_lab.parquet has no column 'calcium'"):
        run_stage("preprocess", cfg, old)


def test_calcium_is_never_merged_across_its_two_quantities():
    with pytest.raises(IcurtError, match="calcium_source.*'both'"):
        with_overrides(load_config(env={}), ["preprocess.calcium_source=\"both\""])


def test_the_reference_profile_sets_every_preprocessing_choice():
    cfg = load_config(named_config_path("reference"), env={})
    assert {key: getattr(cfg.preprocess, key) for key in REFERENCE} == REFERENCE
    assert cfg.profile.name == "reference" and load_config(env={}).profile.name == "default"
    assert (cfg.preprocess.potassium_source, cfg.preprocess.calcium_source) == ("blood_gas", "blood_gas")


# ---- the reference profile against the reference code's steps, per stay in plain pandas ------

def random_query_run(qr, cfg, n_stays=40, seed=3):
    """Stays with random start times (some on the clock hour) and lengths; features at random times
    from 12 h before to 72 h after intime, some never measured in a stay, a few stays nearly empty."""
    rng = np.random.default_rng(seed)
    stays = [qr.stay(100 + i, intime=qr.T0 + int(rng.integers(0, 300)) * qr.HOUR
                     + int(rng.choice([0, 5, 31, 59])) * pd.Timedelta(minutes=1),
                     los_icu=float(rng.uniform(1.0, 4.0)), died=i % 3 == 0) for i in range(n_stays)]
    rows = {table: [] for table in ("pivoted_vital", "pivoted_lab", "pivoted_bg")}
    for i, s in enumerate(stays):
        start = (s["intime"] - qr.T0) / qr.HOUR
        if i % 10 == 9:   # two timestamps only
            rows["pivoted_vital"] += [(s["icustay_id"], start + 1, "heartrate", 80.0),
                                      (s["icustay_id"], start + 40, "heartrate", 90.0)]
            continue
        for table, names in source_features(cfg.preprocess.features, cfg.preprocess).items():
            for name in names:
                for t in start + np.round(rng.uniform(-12, 72, rng.integers(0, 8)), 3):
                    rows[table].append((s["icustay_id"], float(t), name, float(rng.normal(50, 15))))
    return qr.write(cfg, stays, vital=rows["pivoted_vital"], lab=rows["pivoted_lab"], bg=rows["pivoted_bg"])


def reference_by_pandas(query_run, settings):
    """What the reference code does, stay by stay: a describe() of the merged measurement rows,
    drop stays with <= 2 timestamps, resample('h').mean().interpolate(limit_direction='both'), the
    median for a never-measured column, clip and scale, rows strictly inside (intime, intime + 48 h)."""
    features = list(settings.features)
    detail = pd.read_parquet(query_run.path / "icustay_detail.parquet")
    stays = steps.prefilter(detail, settings).stays.set_index("icustay_id")   # the age / LOS filters
    tables = []
    for table, names in source_features(features, settings).items():
        frame = pd.read_parquet(query_run.path / f"{table}.parquet", columns=["icustay_id", "charttime", *names])
        frame = frame[frame["icustay_id"].isin(stays.index) & frame[names].notna().any(axis=1)]
        tables.append(frame.groupby(["icustay_id", "charttime"])[names].mean())  # the SQL's one row
    merged = pd.concat(tables, axis=1).reset_index()[["icustay_id", "charttime", *features]]
    stats = merged[features].describe(percentiles=[0.05, 0.95])
    low, high, median = stats.loc["5%"], stats.loc["95%"], stats.loc["50%"]
    kept = {}
    for icustay_id, rows in merged.groupby("icustay_id"):
        if len(rows) <= 2:
            continue
        series = rows.set_index("charttime")[features].resample("h").mean()
        series = series.interpolate(method="linear", limit_direction="both").fillna(median)
        scaled = (series.clip(low, high, axis=1) - low) / (high - low)
        intime = stays.loc[icustay_id, "intime"]
        window = scaled[(scaled.index > intime) & (scaled.index < intime + pd.Timedelta(hours=48))]
        if len(window) >= 48:
            kept[icustay_id] = window.iloc[:48].to_numpy()
    return stats, kept


def test_the_reference_profile_matches_the_reference_code_stay_by_stay(tmp_path, qr):
    cfg = with_overrides(load_config(named_config_path("reference"), env={}),
                         [f"paths.data={tmp_path}", "preprocess.engine=\"pandas\""])
    query_run = random_query_run(qr, cfg)
    stats, kept = reference_by_pandas(query_run, cfg.preprocess)
    _, ds, cohort = preprocess(cfg, query_run)
    assert 5 < len(kept) < 40 and cohort["filters"]["min_stay_timestamps"] < 40
    assert ds.stay_ids.tolist() == sorted(kept)
    np.testing.assert_allclose(ds.features, np.stack([kept[i] for i in sorted(kept)]), atol=2e-6)
    for name in cfg.preprocess.features:
        np.testing.assert_allclose([ds.normalisation[name][k] for k in ("p_low", "p_high", "median")],
                                   stats.loc[["5%", "95%", "50%"], name].to_numpy(), rtol=1e-12)
