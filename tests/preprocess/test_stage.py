"""The whole stage on hand-built query runs, with every expected value worked out by hand here."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from icurt.config import load_config, with_overrides
from icurt.dataset import load_dataset
from icurt.errors import IcurtError
from icurt.preprocess import build
from icurt.stages import run_stage
from icurt.runs import RunStore

FEATURES = ["heartrate", "sysbp", "glucose", "ph"]


def config(tmp_path, *overrides: str):
    return with_overrides(load_config(env={}), [
        f"paths.data={tmp_path}", "preprocess.engine=\"pandas\"", "ray.num_cpus=2",
        f"preprocess.features={json.dumps(FEATURES)}", "preprocess.winsorize_percentiles=[25.0, 75.0]",
        *overrides])


def hand_built_run(qr, cfg):
    """Stays 101, 102, 105 make the dataset; 103 is too short; 104 is a child."""
    stays = [qr.stay(101), qr.stay(102, died=1), qr.stay(103, los_icu=1.5), qr.stay(104, age=10.0),
             qr.stay(105)]
    vital = [
        (101, 2.5, "heartrate", 50.0), (101, 2.5, "heartrate", 70.0),  # same charttime → 60
        (101, 6 + 10 / 60, "heartrate", 90.0), (101, 6 + 40 / 60, "heartrate", 110.0),  # hour 6 → 100
        (101, 10.5, "sysbp", 120.0),
        (101, 3.0, "glucose", 1000.0),                    # glucose comes from pivoted_lab only
        (102, -1.0, "heartrate", 500.0), (102, 48.0, "heartrate", 500.0),  # outside the window
        (102, 0.25, "heartrate", 80.0), (102, 1.0, "sysbp", 100.0), (102, 3.0, "sysbp", 140.0),
        (103, 1.0, "heartrate", 40.0),
        (104, 1.0, "heartrate", 300.0), (104, 1.0, "sysbp", 300.0),
        (105, 47.5, "heartrate", 75.0), (105, 20.0, "sysbp", 110.0),
    ]
    lab = [(101, 3.0, "glucose", 100.0), (102, 10.0, "glucose", 200.0), (105, 30.0, "glucose", 150.0),
           (104, 2.0, "glucose", 999.0)]
    bg = [(102, 5.0, "ph", 7.2), (102, 7.0, "ph", 7.4), (103, 2.0, "ph", 7.0), (105, 1.5, "ph", 7.3),
          (None, 1.0, "ph", 6.0)]
    return qr.write(cfg, stays, vital=vital, lab=lab, bg=bg)


def hours(*pieces) -> np.ndarray:
    """A (48,) series from (value, repeat) pieces."""
    return np.concatenate([np.full(n, v, dtype=float) for v, n in pieces])


# Measured hourly values of the stays in the hourly step (101, 102, 103, 105), per feature:
MEASURED = {"heartrate": [60, 100, 80, 40, 75], "sysbp": [120, 100, 140, 110],
            "glucose": [100, 200, 150], "ph": [7.2, 7.4, 7.0, 7.3]}
PH_MEDIAN = np.median(MEASURED["ph"])  # 7.25, the fill for stay 101's never-measured pH
FILLED = {  # (stay 101, stay 102, stay 105) before winsorising
    "heartrate": [hours((60, 3), (70, 1), (80, 1), (90, 1), (100, 42)), hours((80, 48)),
                  hours((75, 48))],
    "sysbp": [hours((120, 48)), hours((100, 2), (120, 1), (140, 45)), hours((110, 48))],
    "glucose": [hours((100, 48)), hours((200, 48)), hours((150, 48))],
    "ph": [hours((PH_MEDIAN, 48)), hours((7.2, 6), (7.3, 1), (7.4, 41)), hours((7.3, 48))],
}


def test_stage_output_matches_the_hand_computation(tmp_path, qr):
    cfg = config(tmp_path)
    run = run_stage("preprocess", cfg, hand_built_run(qr, cfg))
    ds = load_dataset(run.path)
    assert ds.features.dtype == np.float32 and ds.features.shape == (3, 48, 4)
    assert ds.stay_ids.tolist() == [101, 102, 105]
    assert ds.subject_ids.tolist() == [1101, 1102, 1105] and ds.hadm_ids.tolist() == [5101, 5102, 5105]
    assert ds.labels.tolist() == [0, 1, 0]
    assert ds.feature_names == FEATURES
    # measured cells, by hand from the rows above (feature order heartrate, sysbp, glucose, ph)
    measured = {101: [(2, 0), (6, 0), (10, 1), (3, 2)],
                102: [(0, 0), (1, 1), (3, 1), (10, 2), (5, 3), (7, 3)],
                105: [(47, 0), (20, 1), (30, 2), (1, 3)]}
    for s, cells in enumerate(measured.values()):
        expected = np.zeros((48, 4), bool)
        expected[tuple(zip(*cells))] = True
        np.testing.assert_array_equal(ds.measured[s], expected)
    for f, name in enumerate(FEATURES):
        low, high = np.percentile(MEASURED[name], [25, 75])
        for s, series in enumerate(FILLED[name]):
            expected = (np.clip(series, low, high) - low) / (high - low)
            np.testing.assert_allclose(ds.features[s, :, f], expected, rtol=1e-6, atol=1e-6,
                                       err_msg=f"{name} of stay {ds.stay_ids[s]}")
        assert ds.normalisation[name] == {"p_low": low, "p_high": high, "median": np.median(MEASURED[name])}
    assert 0 <= ds.features.min() and ds.features.max() <= 1

    imputation = json.loads(run.file("imputation.json").read_text())
    assert imputation == {"heartrate": 0.0, "sysbp": 0.0, "glucose": 0.0, "ph": pytest.approx(1 / 3)}
    cohort = json.loads(run.file("cohort.json").read_text())
    assert cohort == {"n_samples": 3, "n_died": 1, "n_survived": 2, "filters": {
        "icustay_detail": 5, "min_age": 4, "min_los_hospital": 4, "min_los_icu": 4, "times_present": 4,
        "one_row_per_stay": 4, "measured_in_window": 4, "min_observation_hours": 3},
        "median_filled": imputation}   # interpolation inside the window: never measured there = the median

    kept = pd.read_parquet(run.file("5_window") / "stays.parquet").set_index("icustay_id")
    # stay 101: heart rate at 2:30 (one record), 6:10, 6:40; sysbp; glucose → 5 records in 4 hours
    assert kept.loc[101, "n_measurements"] == 5 and kept.loc[101, "hours_with_data"] == 4
    assert kept.loc[101, "features_never_measured"] == 1
    for folder in build.STEP_FOLDERS:
        assert any(run.file(folder).rglob("*.parquet")), folder
    hourly = pd.read_parquet(run.file("4_hourly") / "hourly.parquet")
    assert sorted(hourly["icustay_id"].unique()) == [101, 102, 103, 105] and len(hourly) == 4 * 48
    assert run.meta["inputs"]["query"] and run.meta["engine"] == "pandas"


def test_newest_query_run_is_the_default_input(tmp_path, qr):
    cfg = config(tmp_path)
    hand_built_run(qr, cfg)
    newest = hand_built_run(qr, cfg)
    assert run_stage("preprocess", cfg).meta["inputs"] == {"query": newest.run_id}


def test_a_missing_column_fails_before_any_run_is_made(tmp_path, qr):
    cfg = config(tmp_path)
    query_run = qr.write(cfg, [qr.stay(1)], vital=[(1, 1.0, "heartrate", 70.0)],
                         drop={"pivoted_lab": ["glucose"]})
    with pytest.raises(IcurtError, match="pivoted_lab.parquet has no column 'glucose'"):
        run_stage("preprocess", cfg, query_run)
    assert RunStore(tmp_path).list("preprocess") == [] and RunStore(tmp_path).failed("preprocess") == []


def test_an_infinite_value_is_never_written(tmp_path, qr):
    cfg = config(tmp_path)
    query_run = qr.write(cfg, [qr.stay(1), qr.stay(2)],
                         vital=[(1, 1.0, "heartrate", np.inf), (2, 1.0, "heartrate", 70.0),
                                (1, 1.0, "sysbp", 1.0), (1, 1.0, "glucose", 1.0)],
                         lab=[(1, 1.0, "glucose", 1.0)], bg=[(1, 1.0, "ph", 7.0)])
    with pytest.raises(IcurtError, match="'heartrate' has infinite values"):
        run_stage("preprocess", cfg, query_run)
    assert RunStore(tmp_path).list("preprocess") == []


def test_nan_left_in_the_output_is_an_error_naming_the_feature():
    values = np.zeros((2, 48, 3), np.float32)
    values[1, 7, 2] = np.nan
    build.check_finite(values[:, :, :2], ["a", "b"])
    with pytest.raises(IcurtError, match="left in c after preprocessing; nothing was written"):
        build.check_finite(values, ["a", "b", "c"])


def test_a_feature_never_measured_in_the_cohort_is_an_error(tmp_path, qr):
    cfg = config(tmp_path)
    query_run = qr.write(cfg, [qr.stay(1)], vital=[(1, 1.0, "heartrate", 70.0), (1, 1.0, "sysbp", 1.0)],
                         lab=[(1, 1.0, "glucose", 1.0)])
    with pytest.raises(IcurtError, match="'ph' has no measurement in any stay"):
        run_stage("preprocess", cfg, query_run)


def test_empty_cohort_error_names_the_filter(tmp_path, qr):
    cfg = config(tmp_path, "preprocess.min_los_icu=10")
    query_run = hand_built_run(qr, cfg)
    with pytest.raises(IcurtError, match="after the min_los_icu filter"):
        run_stage("preprocess", cfg, query_run)


@pytest.mark.parametrize("stays_full", [False, True])
def test_a_full_disk_is_one_line_and_keeps_the_run_as_failed(stays_full, tmp_path, qr, monkeypatch, capsys):
    """ENOSPC while the real stage writes dataset.npz: one line naming the path, the run renamed
    .failed-<id>; with the disk still full, run.json cannot take the reason but the rename happens."""
    import errno

    from icurt import files
    from icurt.cli import main

    cfg = config(tmp_path)
    hand_built_run(qr, cfg)
    full, write_text = {"now": False}, files.write_text

    def savez(path, **arrays):
        full["now"] = stays_full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def write_text_unless_full(path, text):
        if full["now"]:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_text(path, text)

    monkeypatch.setattr(np, "savez", savez)
    monkeypatch.setattr(files, "write_text", write_text_unless_full)
    overrides = [f"paths.data={tmp_path}", "preprocess.engine=\"pandas\"", f"preprocess.features={json.dumps(FEATURES)}",
                 "preprocess.winsorize_percentiles=[25.0, 75.0]"]
    capsys.readouterr()
    assert main(["preprocess", "-q", *[a for o in overrides for a in ("--set", o)]]) == 2
    err = capsys.readouterr().err
    (kept,) = RunStore(tmp_path).unfinished("preprocess")
    folder = tmp_path / "preprocess"
    assert kept.state == "failed" and kept.path == folder / f".failed-{kept.run_id}"
    assert not list(folder.glob(".tmp-*")) and RunStore(tmp_path).list("preprocess") == []
    reason = (f"the disk is full (writing {folder / f'.tmp-{kept.run_id}' / 'dataset.npz'}); free space on that "
              "disk (or point ICURT_DATA / --set paths.data=... at a larger one)")
    assert err.strip().splitlines() == [f"icurt: error: {reason}; preprocess run {kept.run_id} is kept as "
                                        f"{kept.path} (then rerun `icurt preprocess`)"]
    meta = json.loads((kept.path / "run.json").read_text())
    if stays_full:   # run.json keeps what it held; no half-written file is left beside it
        assert meta["status"] == "running" and "error" not in meta and kept.error == ""
        assert not list(kept.path.glob(".*.tmp"))
    else:
        assert meta["status"] == "failed" and meta["error"] == reason == kept.error
        assert f"failed: {reason}" in (kept.path / "run.log").read_text()
