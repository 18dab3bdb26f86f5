"""Modin on Ray vs pandas (byte-identical), the CLI, and the stage on a synthetic MIMIC-III query run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from icurt.cli import main
from icurt.config import load_config, with_overrides
from icurt.config_sections import FEATURE_COLUMNS
from icurt.dataset import load_dataset
from icurt.stages import run_stage
from icurt.preprocess.sources import feature_tables
from icurt.runs import RunStore

REFERENCE = ["preprocess.statistics=\"stay_rows\"", "preprocess.interpolation=\"stay\"",
             "preprocess.inclusion=\"resampled_rows\"", "preprocess.hour_bins=\"clock\""]
SOURCES = [f"preprocess.{name}_source=\"both\"" for name in ("potassium", "sodium", "glucose", "bicarbonate")
           ] + ["preprocess.calcium_source=\"chemistry\""]


def random_query_run(qr, cfg, n_stays=30, seed=7):
    """Stays of random lengths and start times (some on the clock hour); every feature at random
    times, some duplicated, a feature read from two tables sometimes in both at the same time."""
    rng = np.random.default_rng(seed)
    stays = [qr.stay(1000 + i, intime=qr.T0 + rng.integers(0, 500) * qr.HOUR
                     + int(rng.choice([0, 17, 45])) * pd.Timedelta(minutes=1),
                     los_icu=float(rng.uniform(1.0, 4.0)), died=int(rng.random() < 0.3),
                     age=float(rng.choice([40.0, 300.0, 15.0])))
             for i in range(n_stays)]
    rows = {"pivoted_vital": [], "pivoted_lab": [], "pivoted_bg": []}
    for s in stays:
        start = (s["intime"] - qr.T0) / qr.HOUR
        for feature in FEATURE_COLUMNS:
            tables = feature_tables(feature, cfg.preprocess)
            for t in start + rng.uniform(-8, 70, rng.integers(0, 12)):
                value = float(rng.normal(10, 3))
                table = tables[rng.integers(len(tables))]
                rows[table].append((s["icustay_id"], float(t), feature, value))
                if rng.random() < 0.2:   # a second value at the same charttime, in the same or the other table
                    other = tables[rng.integers(len(tables))]
                    rows[other].append((s["icustay_id"], float(t), feature, value + 1))
    return qr.write(cfg, stays, vital=rows["pivoted_vital"], lab=rows["pivoted_lab"],
                    bg=rows["pivoted_bg"])


@pytest.mark.parametrize("settings", [[], REFERENCE, SOURCES + REFERENCE[1:3]],
                         ids=["default", "reference", "merged-sources"])
def test_modin_and_pandas_give_byte_identical_arrays(tmp_path, qr, ray_session, settings):
    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path}", "preprocess.num_partitions=3",
                                               *settings])
    query_run = random_query_run(qr, cfg)
    on_pandas = run_stage("preprocess", cfg, query_run, engine="pandas")
    on_modin = run_stage("preprocess", cfg, query_run, engine="modin")
    a, b = load_dataset(on_pandas.path), load_dataset(on_modin.path)
    assert a.features.shape[0] > 5 and a.features.shape[1:] == (48, 19)
    assert a.features.tobytes() == b.features.tobytes()
    assert a.labels.tobytes() == b.labels.tobytes() and a.stay_ids.tobytes() == b.stay_ids.tobytes()
    assert json.dumps(a.normalisation) == json.dumps(b.normalisation)
    for name in ("imputation.json", "cohort.json"):
        assert on_pandas.file(name).read_text() == on_modin.file(name).read_text()
    assert on_modin.meta["engine"] == "modin"


def test_cli_preprocess_and_inspect(tmp_path, qr, capsys):
    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path}"])
    query_run = random_query_run(qr, cfg, n_stays=12)
    settings = ["--set", f"paths.data={tmp_path}"]
    assert main(["preprocess", "--engine", "pandas", "--from", query_run.run_id, *settings]) == 0
    run = RunStore(tmp_path).latest("preprocess")
    assert run.run_id in capsys.readouterr().out
    assert main(["show", "preprocess", *settings]) == 0
    text = capsys.readouterr().out
    n = len(load_dataset(run.path).labels)
    assert f"samples: {n:,} × 48 h × 19 features" in text
    assert "hours with data (of 48)" in text and "imputed" in text and "creatinine" in text
    assert "profile default: statistics window_hours, interpolation window, inclusion window_length" in text
    assert main(["preprocess", "--engine", "pandas", "--from", "nosuchrun", *settings]) == 2
    assert "no completed query run 'nosuchrun'" in capsys.readouterr().err


def test_on_a_synthetic_mimic_query_run(make_config, pg_dsn):
    from icurt.db.connection import connection
    from icurt.db.synth import cohort as synth

    cfg = make_config()
    cohort = synth.generate_cohort(300, seed=5, mortality_rate=0.2)
    with connection(cfg) as conn:
        synth.load_cohort(conn, cfg.db.schema, cohort)
    run = run_stage("preprocess", cfg, run_stage("query", cfg), engine="pandas")
    ds = load_dataset(run.path)
    assert ds.features.shape[1:] == (48, 19) and np.isfinite(ds.features).all()
    assert 0.0 <= ds.features.min() and ds.features.max() <= 1.0
    # synth's own count of stays that are adult, in the ICU >= 48 h, with chart data
    assert len(ds.labels) == cohort.qualifying_stays
    truth = cohort.truth.set_index("icustay_id")["died"]
    assert ds.labels.tolist() == truth.loc[ds.stay_ids].tolist()
    kept = pd.read_parquet(run.file("5_window") / "stays.parquet")
    assert (kept["hours_with_data"] > 24).mean() > 0.9   # hourly vitals fill most hours
