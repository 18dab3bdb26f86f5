"""PhysioNet's open MIMIC-III demo: load-csv, the four queries, and facts recomputed from the CSVs.

The demo's folder is $ICURT_MIMIC_DEMO, else ../shared/data/mimic3-demo beside the checkout; the
tests skip when it is absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from icurt.db import query
from icurt.stages import run_stage
from icurt.db.load_csv import load_csv


def _query_checks():
    """The pandas checks of test_query.py (tests are imported with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location("icurt_test_query_checks", Path(__file__).with_name("test_query.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = _query_checks()

def demo_folder(env=None) -> Path:
    """$ICURT_MIMIC_DEMO, else ../shared/data/mimic3-demo beside the checkout."""
    env = os.environ if env is None else env
    if env.get("ICURT_MIMIC_DEMO"):
        return Path(env["ICURT_MIMIC_DEMO"]).expanduser()
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mimic3-demo"


DEMO = demo_folder()
TIME_COLUMNS = {
    "patients": ["dob", "dod", "dod_hosp", "dod_ssn"],
    "admissions": ["admittime", "dischtime", "deathtime", "edregtime", "edouttime"],
    "icustays": ["intime", "outtime"],
    "chartevents": ["charttime", "storetime"],
    "labevents": ["charttime"],
}
FILES = {"patients": "PATIENTS.csv", "admissions": "ADMISSIONS.csv", "icustays": "ICUSTAYS.csv",
         "chartevents": "CHARTEVENTS.csv.gz", "labevents": "LABEVENTS.csv", "d_items": "D_ITEMS.csv",
         "d_labitems": "D_LABITEMS.csv"}

needs_demo = pytest.mark.skipif(not DEMO.is_dir(), reason=f"the MIMIC-III demo is not at {DEMO} "
                                "(set ICURT_MIMIC_DEMO to its folder)")


def _read_demo_table(table: str) -> pd.DataFrame:
    # Second resolution: the DOBs of patients over 89 lie 300 years back, beyond nanosecond range.
    frame = pd.read_csv(DEMO / FILES[table], low_memory=False)
    for column in TIME_COLUMNS.get(table, []):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[s]")
    return frame


@pytest.fixture(scope="module")
def demo(pg_dsn, tmp_path_factory):
    from icurt.config import load_config, with_overrides

    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path_factory.mktemp('demo')}",
                                               f"db.dsn={pg_dsn}", "db.schema=tdemo_mimic3"])
    loads = load_csv(cfg, DEMO)
    run = run_stage("query", cfg)
    return {table: _read_demo_table(table) for table in FILES}, loads, run


@needs_demo
def test_demo_loads_every_row(demo):
    tables, loads, _ = demo
    assert {table: load.rows for table, load in loads.items()} == {t: len(f) for t, f in tables.items()}
    assert loads["icustays"].rows == 136 and loads["patients"].rows == 100


@needs_demo
def test_demo_icustay_detail(demo):
    tables, _, run = demo
    checks.check_icustay_detail(tables, run)
    detail = pq.read_table(run.path / "icustay_detail.parquet").to_pandas()
    charted = tables["admissions"].loc[tables["admissions"]["has_chartevents_data"] == 1, "hadm_id"]
    assert len(detail) == tables["icustays"]["hadm_id"].isin(charted).sum() < 136
    assert (detail["age_years"] == 91.4).sum() == (detail["admission_age"] > 89).sum() > 0


@needs_demo
def test_demo_vitals(demo):
    tables, _, run = demo
    checks.check_vitals(tables, run)


@needs_demo
def test_demo_labs(demo):
    tables, _, run = demo
    checks.check_lab_windows(tables, run)


@needs_demo
def test_demo_blood_gas(demo):
    tables, _, run = demo
    checks.check_blood_gas(tables, run)


@needs_demo
def test_demo_stats(demo):
    _, _, run = demo
    stats = json.loads((run.path / "query_stats.json").read_text())
    assert list(stats) == list(query.QUERIES)
    for name, entry in stats.items():
        assert entry["rows"] == pq.read_metadata(run.path / f"{name}.parquet").num_rows > 0


def test_the_demo_folder_comes_from_icurt_mimic_demo(tmp_path):
    assert demo_folder({"ICURT_MIMIC_DEMO": str(tmp_path)}) == tmp_path
    assert demo_folder({"ICURT_MIMIC_DEMO": "~/mimic"}) == Path.home() / "mimic"
    beside = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mimic3-demo"
    assert demo_folder({}) == beside == demo_folder({"ICURT_MIMIC_DEMO": ""})
