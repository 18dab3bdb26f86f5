"""The query stage on real PostgreSQL: hand-built rows for every rule, then a synthetic cohort.

Expected rows are written out by hand from the rules of the standard concepts (and icurt's
choices), never taken from the queries' output.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from icurt.db import query
from icurt.stages import run_stage
from icurt.db.connection import connect
from icurt.db.schema import TABLES, create_table_sql, recreate_schema
from icurt.errors import IcurtError
from icurt.runs import RunStore

T = datetime.fromisoformat
CONTRACT_COLUMNS = {
    "icustay_detail": ["subject_id", "hadm_id", "icustay_id", "gender", "dod", "admittime", "dischtime",
                       "los_hospital", "admission_age", "age_years", "ethnicity", "ethnicity_grouped",
                       "hospital_expire_flag", "hospstay_seq", "first_hosp_stay", "intime", "outtime",
                       "los_icu", "icustay_seq", "first_icu_stay"],
    "pivoted_vital": ["icustay_id", "charttime", "heartrate", "sysbp", "diasbp", "meanbp", "resprate",
                      "tempc", "spo2", "glucose"],
    "pivoted_lab": ["icustay_id", "hadm_id", "subject_id", "charttime", "aniongap", "albumin", "bands",
                    "bicarbonate", "bilirubin", "creatinine", "chloride", "glucose", "hematocrit",
                    "hemoglobin", "lactate", "platelet", "potassium", "ptt", "inr", "pt", "sodium", "bun",
                    "wbc", "magnesium", "calcium"],
    "pivoted_bg": ["icustay_id", "hadm_id", "charttime", "specimen", "aado2", "baseexcess", "bicarbonate",
                   "totalco2", "carboxyhemoglobin", "chloride", "calcium", "glucose", "hematocrit",
                   "hemoglobin", "intubated", "lactate", "methemoglobin", "o2flow", "fio2", "so2", "pco2",
                   "peep", "ph", "po2", "potassium", "requiredo2", "sodium", "temperature", "tidalvolume",
                   "ventilationrate", "ventilator"],
}


# ---------------------------------------------------------------- hand-built MIMIC-III rows

def _filler(kind: str):
    if "NOT NULL" not in kind:
        return None
    if kind.startswith("TIMESTAMP"):
        return T("2100-01-01 00:00:00")
    return "x" if kind.startswith("VARCHAR") else 0


def build_schema(dsn: str, schema: str, rows: dict[str, list[dict]], skip_tables=()) -> None:
    """Create `schema` with the MIMIC-III DDL and insert `rows` (unnamed NOT NULL columns get fillers)."""
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        recreate_schema(cur, schema)
        for table, columns in TABLES.items():
            if table in skip_tables:
                continue
            cur.execute(create_table_sql(schema, table))
            names = [name for name, _ in columns]
            insert = sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
                sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names)),
                sql.SQL(", ").join(sql.Placeholder() * len(names)))
            for row_id, row in enumerate(rows.get(table, []), start=1):
                unknown = set(row) - set(names)
                assert not unknown, f"{table} has no column {unknown}"
                values = {name: _filler(kind) for name, kind in columns} | {"row_id": row_id} | row
                cur.execute(insert, [values[name] for name in names])
    conn.close()


def _ce(time, itemid, valuenum, icustay_id=111, error=0):
    return {"subject_id": 1 if icustay_id in (111, 112, None) else 2, "hadm_id": 11, "icustay_id": icustay_id,
            "itemid": itemid, "charttime": T(time), "valuenum": valuenum, "value": str(valuenum),
            "error": error}


def _le(time, itemid, valuenum, hadm_id=11, subject_id=1, value=None):
    return {"subject_id": subject_id, "hadm_id": hadm_id, "itemid": itemid, "charttime": T(time),
            "valuenum": valuenum, "value": value if value is not None else str(valuenum)}


def _admission(subject_id, hadm_id, admittime, dischtime, ethnicity, has_chartevents_data=1, expire=0):
    return {"subject_id": subject_id, "hadm_id": hadm_id, "admittime": T(admittime), "dischtime": T(dischtime),
            "ethnicity": ethnicity, "has_chartevents_data": has_chartevents_data,
            "hospital_expire_flag": expire}


def _stay(subject_id, hadm_id, icustay_id, intime, outtime):
    return {"subject_id": subject_id, "hadm_id": hadm_id, "icustay_id": icustay_id, "intime": T(intime),
            "outtime": T(outtime)}


# Subject 1: admission 11 with stays 111 and 112 (10.5 h apart), admission 12 with stay 121.
# Subject 2: over 89 (DOB 300 years before the admission). Subject 3: admission 31 has no chart
# data (its stay is dropped); admission 32 does.
HAND_ROWS = {
    "patients": [
        {"subject_id": 1, "gender": "F", "dob": T("2100-01-01 00:00:00")},
        {"subject_id": 2, "gender": "M", "dob": T("1880-05-05 12:00:00"), "dod": T("2180-05-10 00:00:00"),
         "expire_flag": 1},
        {"subject_id": 3, "gender": "F", "dob": T("2090-06-01 00:00:00")},
    ],
    "admissions": [
        _admission(1, 11, "2150-01-01 10:00:00", "2150-01-11 10:00:00", "WHITE - RUSSIAN"),
        _admission(1, 12, "2150-03-01 08:00:00", "2150-03-05 08:00:00", "WHITE - RUSSIAN"),
        _admission(2, 21, "2180-05-05 12:00:00", "2180-05-10 12:00:00", "PATIENT DECLINED TO ANSWER", expire=1),
        _admission(3, 31, "2160-01-01 00:00:00", "2160-01-05 00:00:00", "PORTUGUESE", has_chartevents_data=0),
        _admission(3, 32, "2160-06-01 00:00:00", "2160-06-03 06:00:00", "PORTUGUESE"),
    ],
    "icustays": [
        _stay(1, 11, 111, "2150-01-02 00:00:00", "2150-01-04 00:00:00"),
        _stay(1, 11, 112, "2150-01-04 10:30:00", "2150-01-06 00:00:00"),
        _stay(1, 12, 121, "2150-03-01 12:00:00", "2150-03-03 12:00:00"),
        _stay(2, 21, 211, "2180-05-05 14:00:00", "2180-05-08 14:00:00"),
        _stay(3, 31, 311, "2160-01-01 06:00:00", "2160-01-02 06:00:00"),
        _stay(3, 32, 321, "2160-06-01 06:00:00", "2160-06-02 06:00:00"),
    ],
    "chartevents": [
        _ce("2150-01-02 01:00:00", 211, 80), _ce("2150-01-02 01:00:00", 220045, 90),
        _ce("2150-01-02 01:00:00", 51, 120), _ce("2150-01-02 01:00:00", 455, 110),
        _ce("2150-01-02 02:00:00", 211, 350),                          # out of range: NULL, row kept
        _ce("2150-01-02 03:00:00", 678, 98.6),                         # °F → 37 °C
        _ce("2150-01-02 04:00:00", 223761, 68),                        # 68 °F = 20 °C, but out of the °F range
        _ce("2150-01-02 05:00:00", 223761, 115),                       # 115 °F → 46.1 °C (range checked in °F)
        _ce("2150-01-02 06:00:00", 223762, 36.5), _ce("2150-01-02 06:30:00", 676, 55),
        _ce("2150-01-02 07:00:00", 211, 100, error=1),                 # error row: no row at 07:00
        _ce("2150-01-02 08:00:00", 211, 70, error=None),               # NULL error is kept
        _ce("2150-01-02 09:00:00", 211, 75, icustay_id=None),          # no ICU stay: dropped
        _ce("2150-01-02 10:00:00", 999, 5),                            # not a vital: no row
        _ce("2150-01-02 11:00:00", 646, 100), _ce("2150-01-02 11:30:00", 220277, 100.5),
        _ce("2150-01-02 12:00:00", 807, 500), _ce("2150-01-02 12:30:00", 225664, 0),
        _ce("2150-01-02 13:00:00", 618, 70), _ce("2150-01-02 13:00:00", 615, 69),
        _ce("2150-01-02 14:00:00", 8368, 60), _ce("2150-01-02 14:00:00", 52, 80),
        _ce("2150-01-02 14:00:00", 220052, 90),
        _ce("2150-01-02 15:00:00", 211, 0),
        _ce("2180-05-05 15:00:00", 220045, 88, icustay_id=211),
    ],
    "labevents": [
        _le("2150-01-01 13:00:00", 50912, 1.2), _le("2150-01-01 13:00:00", 50983, 140),
        _le("2150-01-01 11:00:00", 50862, 3.0),                        # before stay 111's window
        _le("2150-01-04 05:14:00", 50971, 4.0, hadm_id=12),            # labevents.hadm_id is not used
        _le("2150-01-04 05:15:00", 50971, 4.4),                        # at the midpoint: stay 112
        _le("2150-01-04 05:20:00", 51006, 20),
        _le("2150-01-06 11:59:00", 51265, 200), _le("2150-01-06 12:00:00", 51265, 210),
        _le("2150-02-10 00:00:00", 50931, 100),                        # outside every window
        _le("2150-01-03 00:00:00", 50960, 2.1), _le("2150-01-03 00:00:00", 51300, 10),
        _le("2150-01-03 00:00:00", 51301, 12), _le("2150-01-03 00:00:00", 50862, 12),
        _le("2150-01-03 00:00:00", 50813, 60),
        _le("2150-01-03 01:00:00", 50960, 25),                         # magnesium > 20: NULL, row kept
        _le("2150-01-03 01:00:00", 50893, 21),                         # total calcium > 20: NULL
        _le("2150-01-03 02:00:00", 50960, 20), _le("2150-01-03 02:00:00", 50893, 8.6),
        _le("2150-01-03 03:00:00", 50960, 0), _le("2150-01-03 03:00:00", 50960, -1),
        _le("2150-01-03 04:00:00", 50912, None, value="ERROR"),
        _le("2150-01-03 05:00:00", 51000, 5),
        _le("2180-05-06 00:00:00", 50882, 24, hadm_id=None, subject_id=2),
        # blood gases
        _le("2150-01-02 06:00:00", 50800, None, value="ART"), _le("2150-01-02 06:00:00", 50820, 7.35),
        _le("2150-01-02 06:00:00", 50800, None, value="ART"),          # the same specimen listed twice
        _le("2150-01-02 06:00:00", 50818, 40), _le("2150-01-02 06:00:00", 50822, 4.2),
        _le("2150-01-02 06:00:00", 50808, 1.1), _le("2150-01-02 06:00:00", 50813, 2.0),
        _le("2150-01-02 06:00:00", 50802, -2), _le("2150-01-02 06:00:00", 50816, 15),
        _le("2150-01-02 07:00:00", 50800, None, value="ART"), _le("2150-01-02 07:00:00", 50800, None, value="VEN"),
        _le("2150-01-02 07:00:00", 50820, 7.30),
        _le("2150-01-02 08:00:00", 50816, 50), _le("2150-01-02 08:00:00", 50817, 101),
        _le("2150-01-02 08:00:00", 50810, 101), _le("2150-01-02 08:00:00", 50815, 71),
        _le("2150-01-02 08:00:00", 50821, 801), _le("2150-01-02 08:00:00", 50827, 12),
        _le("2150-01-02 08:00:00", 50827, 14),
        _le("2150-01-04 05:20:00", 50820, 7.40), _le("2150-01-04 05:40:00", 50820, 7.41),
        _le("2150-01-02 09:00:00", 50820, 7.2, hadm_id=None),
        _le("2150-01-02 10:00:00", 51545, 3),
        _le("2150-01-02 11:00:00", 50820, 7.1, hadm_id=999),
    ],
}


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame([{c: row.get(c) for c in columns} for row in rows], columns=columns)


def _read(run, name: str) -> pd.DataFrame:
    return pq.read_table(run.path / f"{name}.parquet").to_pandas()


def _assert_values(got: pd.DataFrame, expected: list[dict], keys: list[str], columns: list[str]) -> None:
    """Rows match `expected` (missing value columns are NULL), compared after sorting on `keys`."""
    want = _frame(expected, columns).sort_values(keys, ignore_index=True)
    got = got[columns].sort_values(keys, ignore_index=True)
    assert len(got) == len(want), f"{len(got)} rows, expected {len(want)}:\n{got[keys]}"
    for column in columns:
        for i, (g, w) in enumerate(zip(got[column], want[column])):
            if w is None or (not isinstance(w, str) and pd.isna(w)):
                assert pd.isna(g), f"row {i} ({want.loc[i, keys].tolist()}) {column}: {g} is not NULL"
            elif isinstance(w, float):
                assert g == pytest.approx(w, rel=1e-9), f"row {i} {column}: {g} != {w}"
            else:
                assert g == w, f"row {i} ({want.loc[i, keys].tolist()}) {column}: {g} != {w}"


@pytest.fixture(scope="module")
def hand_run(pg_dsn, tmp_path_factory):
    from icurt.config import load_config, with_overrides

    build_schema(pg_dsn, "tq_hand", HAND_ROWS)
    data = tmp_path_factory.mktemp("hand_run")
    cfg = with_overrides(load_config(env={}), [f"paths.data={data}", f"db.dsn={pg_dsn}",
                                               "db.schema=tq_hand", "query.fetch_size=100"])
    return run_stage("query", cfg, csv=True)


def test_icustay_detail_rules(hand_run):
    def age(admit, dob):
        return (T(admit) - T(dob)).total_seconds() / 86400 / 365.242

    age_1 = age("2150-01-01 10:00:00", "2100-01-01 00:00:00")
    age_2 = age("2180-05-05 12:00:00", "1880-05-05 12:00:00")
    assert 299.9 < age_2 < 300.1
    base = {"dod": None}
    expected = [
        {**base, "subject_id": 1, "hadm_id": 11, "icustay_id": 111, "los_hospital": 10.0, "los_icu": 2.0,
         "admission_age": age_1, "age_years": age_1, "ethnicity_grouped": "white", "hospstay_seq": 1,
         "first_hosp_stay": True, "icustay_seq": 1, "first_icu_stay": True, "hospital_expire_flag": 0},
        {**base, "subject_id": 1, "hadm_id": 11, "icustay_id": 112, "los_hospital": 10.0, "los_icu": 1 + 13.5 / 24,
         "admission_age": age_1, "age_years": age_1, "ethnicity_grouped": "white", "hospstay_seq": 1,
         "first_hosp_stay": True, "icustay_seq": 2, "first_icu_stay": False, "hospital_expire_flag": 0},
        {**base, "subject_id": 1, "hadm_id": 12, "icustay_id": 121, "los_hospital": 4.0, "los_icu": 2.0,
         "admission_age": age("2150-03-01 08:00:00", "2100-01-01 00:00:00"),
         "age_years": age("2150-03-01 08:00:00", "2100-01-01 00:00:00"), "ethnicity_grouped": "white",
         "hospstay_seq": 2, "first_hosp_stay": False, "icustay_seq": 1, "first_icu_stay": True,
         "hospital_expire_flag": 0},
        {"subject_id": 2, "hadm_id": 21, "icustay_id": 211, "los_hospital": 5.0, "los_icu": 3.0,
         "admission_age": age_2, "age_years": 91.4, "ethnicity_grouped": "unknown", "hospstay_seq": 1,
         "first_hosp_stay": True, "icustay_seq": 1, "first_icu_stay": True, "hospital_expire_flag": 1,
         "dod": pd.Timestamp("2180-05-10")},
        # admission 31 (no chart data) is filtered before ranking, so admission 32 ranks first
        {**base, "subject_id": 3, "hadm_id": 32, "icustay_id": 321, "los_hospital": 2.25, "los_icu": 1.0,
         "admission_age": age("2160-06-01 00:00:00", "2090-06-01 00:00:00"),
         "age_years": age("2160-06-01 00:00:00", "2090-06-01 00:00:00"), "ethnicity_grouped": "other",
         "hospstay_seq": 1, "first_hosp_stay": True, "icustay_seq": 1, "first_icu_stay": True,
         "hospital_expire_flag": 0},
    ]
    got = _read(hand_run, "icustay_detail")
    assert got["icustay_id"].tolist() == [111, 112, 121, 211, 321]        # ordered subject, admittime, intime
    _assert_values(got, expected, ["icustay_id"], list(expected[0]))
    assert got.loc[got.icustay_id == 211, "gender"].item() == "M"
    assert got.loc[got.icustay_id == 112, "intime"].item() == pd.Timestamp("2150-01-04 10:30")


def test_pivoted_vital_rules(hand_run):
    def at(hour, icustay_id=111, **values):
        return {"icustay_id": icustay_id, "charttime": pd.Timestamp(f"2150-01-02 {hour}"), **values}

    expected = [
        at("01:00", heartrate=85.0, sysbp=115.0), at("02:00"), at("03:00", tempc=(98.6 - 32) / 1.8),
        at("04:00"), at("05:00", tempc=(115 - 32) / 1.8), at("06:00", tempc=36.5), at("06:30"),
        at("08:00", heartrate=70.0), at("11:00", spo2=100.0), at("11:30"), at("12:00", glucose=500.0),
        at("12:30"), at("13:00", resprate=69.0), at("14:00", diasbp=60.0, meanbp=85.0), at("15:00"),
        {"icustay_id": 211, "charttime": pd.Timestamp("2180-05-05 15:00"), "heartrate": 88.0},
    ]
    got = _read(hand_run, "pivoted_vital")
    _assert_values(got, expected, ["icustay_id", "charttime"], CONTRACT_COLUMNS["pivoted_vital"])


def test_pivoted_lab_windows_and_bounds(hand_run):
    def at(time, icustay_id, hadm_id, subject_id=1, **values):
        return {"icustay_id": icustay_id, "hadm_id": hadm_id, "subject_id": subject_id,
                "charttime": pd.Timestamp(time), **values}

    # stay 111 window [01-01 12:00, 01-04 05:15) and stay 112 [05:15, 01-06 12:00): the 10.5 h
    # gap is split at its midpoint; admission 11 covers [12-31 22:00, 01-11 22:00)
    expected = [
        at("2150-01-01 13:00", 111, 11, creatinine=1.2, sodium=140.0),
        at("2150-01-01 11:00", None, 11, albumin=3.0),
        at("2150-01-04 05:14", 111, 11, potassium=4.0),
        at("2150-01-04 05:15", 112, 11, potassium=4.4),
        at("2150-01-04 05:20", 112, 11, bun=20.0),
        at("2150-01-06 11:59", 112, 11, platelet=200.0),
        at("2150-01-06 12:00", None, 11, platelet=210.0),
        at("2150-02-10 00:00", None, None, glucose=100.0),
        at("2150-01-03 00:00", 111, 11, magnesium=2.1, wbc=11.0),      # albumin 12 > 10, lactate 60 > 50
        at("2150-01-03 01:00", 111, 11),                                 # magnesium 25, calcium 21 > 20
        at("2150-01-03 02:00", 111, 11, magnesium=20.0, calcium=8.6),
        at("2150-01-02 06:00", 111, 11, lactate=2.0),                    # blood-gas lactate is a lab too
        at("2180-05-06 00:00", 211, 21, subject_id=2, bicarbonate=24.0),
    ]
    got = _read(hand_run, "pivoted_lab")
    _assert_values(got, expected, ["subject_id", "charttime"], CONTRACT_COLUMNS["pivoted_lab"])


def test_pivoted_bg_rules(hand_run):
    def at(time, icustay_id, **values):
        return {"icustay_id": icustay_id, "hadm_id": 11, "charttime": pd.Timestamp(time), **values}

    # blood-gas windows round the gap to whole hours at the start: stay 112 starts at 05:30, not 05:15
    expected = [
        at("2150-01-02 06:00", 111, specimen="ART", ph=7.35, pco2=40.0, potassium=4.2, calcium=1.1, lactate=2.0),
        at("2150-01-02 08:00", 111, fio2=50.0, ventilationrate=14.0),
        at("2150-01-04 05:20", None, ph=7.40),
        at("2150-01-04 05:40", 112, ph=7.41),
        at("2150-01-02 10:00", 111),                                     # item 51545 alone still makes a row
        at("2150-01-03 00:00", 111, lactate=60.0),                       # no upper bound on blood-gas lactate
    ]
    got = _read(hand_run, "pivoted_bg")
    _assert_values(got, expected, ["hadm_id", "charttime"], CONTRACT_COLUMNS["pivoted_bg"])


def test_run_files_stats_and_csv(hand_run):
    store = RunStore(hand_run.path.parent.parent)
    assert [r.run_id for r in store.list("query")] == [hand_run.run_id]
    stats = json.loads((hand_run.path / "query_stats.json").read_text())
    expected_rows = {"icustay_detail": 5, "pivoted_vital": 16, "pivoted_lab": 13, "pivoted_bg": 6}
    assert {name: s["rows"] for name, s in stats.items()} == expected_rows
    assert all(set(s) == {"rows", "query_s", "write_s"} for s in stats.values())
    for name, columns in CONTRACT_COLUMNS.items():
        table = pq.read_table(hand_run.path / f"{name}.parquet")
        assert table.column_names == columns
        csv = pd.read_csv(hand_run.path / f"{name}.csv")
        assert list(csv.columns) == columns and len(csv) == expected_rows[name]
    assert not list(hand_run.path.glob("*.partial"))


# Every table holds rows and every feature's items occur, yet no query returns a row: the only
# ICU stay has no chart data, the chart row has no stay, the lab rows no value and no admission.
NO_RESULT_ROWS = {
    "patients": [{"subject_id": 1, "gender": "F", "dob": T("2100-01-01 00:00:00")}],
    "admissions": [_admission(1, 11, "2150-01-01 10:00:00", "2150-01-11 10:00:00", "WHITE", has_chartevents_data=0)],
    "icustays": [_stay(1, 11, 111, "2150-01-02 00:00:00", "2150-01-04 00:00:00")],
    "chartevents": [_ce("2150-01-02 01:00:00", items[0], 80, icustay_id=None)
                    for table, items in query.FEATURE_ITEMS.values() if table == "chartevents"],
    "labevents": [_le("2150-01-02 01:00:00", items[0], None, hadm_id=None)
                  for table, items in query.FEATURE_ITEMS.values() if table == "labevents"],
}


def test_logged_lines(pg_dsn, make_config, capsys):
    build_schema(pg_dsn, "tq_print", NO_RESULT_ROWS)
    run = run_stage("query", make_config("db.schema=tq_print"))
    assert capsys.readouterr().out == ""   # the stage logs like the others; it prints nothing
    lines = [line.split(" query ", 1)[1] for line in run.file("run.log").read_text().splitlines()
             if " query [" in line]
    assert [line.split()[:4] for line in lines] == [
        ["[1/4]", "icustay_detail:", "0", "rows,"], ["[2/4]", "pivoted_vital:", "0", "rows,"],
        ["[3/4]", "pivoted_lab:", "0", "rows,"], ["[4/4]", "pivoted_bg:", "0", "rows,"]]
    assert all(", query " in line and ", write " in line and line.endswith(" s") for line in lines)
    for name, columns in CONTRACT_COLUMNS.items():        # empty results are still typed files
        table = pq.read_table(run.path / f"{name}.parquet")
        assert table.num_rows == 0 and table.column_names == columns
        assert table.schema.field("charttime" if name != "icustay_detail" else "intime").type == pa.timestamp("us")
        assert table.schema.field("icustay_id").type == pa.int64()


# ---------------------------------------------------------------- errors a user can cause

def _assert_failed_cleanly(cfg, error: IcurtError, *words: str) -> None:
    """A one-line error naming `words`, found before the run folder was made: no run of any kind."""
    message = str(error)
    assert "\n" not in message and all(word in message for word in words), message
    store = RunStore.from_config(cfg)
    assert store.list("query") == [] and store.failed("query") == []
    assert not store.stage_dir("query").exists() or not list(store.stage_dir("query").iterdir())


def test_missing_table(pg_dsn, make_config):
    build_schema(pg_dsn, "tq_no_labs", {}, skip_tables=("labevents",))
    cfg = make_config("db.schema=tq_no_labs")
    with pytest.raises(IcurtError) as err:
        run_stage("query", cfg)
    _assert_failed_cleanly(cfg, err.value, "labevents", "tq_no_labs", "icurt db load-csv")


def test_missing_column(pg_dsn, make_config):
    build_schema(pg_dsn, "tq_no_error_col", {})
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute('ALTER TABLE tq_no_error_col.chartevents DROP COLUMN "error"')
    conn.close()
    cfg = make_config("db.schema=tq_no_error_col")
    with pytest.raises(IcurtError) as err:
        run_stage("query", cfg)
    _assert_failed_cleanly(cfg, err.value, '"error"', "pivoted_vital")


def test_wrong_schema(make_config):
    cfg = make_config("db.schema=tq_no_such_schema")
    with pytest.raises(IcurtError) as err:
        run_stage("query", cfg)
    _assert_failed_cleanly(cfg, err.value, "tq_no_such_schema", "[db].schema")


def _without(rows: dict[str, list[dict]], table: str, items) -> dict[str, list[dict]]:
    return {**rows, table: [row for row in rows[table] if row["itemid"] not in items]}


def test_an_empty_table_is_named_before_any_run(pg_dsn, make_config):
    build_schema(pg_dsn, "tq_empty_chart", {**HAND_ROWS, "chartevents": []})
    cfg = make_config("db.schema=tq_empty_chart")
    with pytest.raises(IcurtError) as err:
        run_stage("query", cfg)
    _assert_failed_cleanly(cfg, err.value, "chartevents", "tq_empty_chart", "no rows", "icurt db load-csv")
    assert "labevents" not in str(err.value)


def test_a_feature_whose_items_never_occur_is_named(pg_dsn, make_config):
    rows = _without(_without(HAND_ROWS, "labevents", (50960,)), "chartevents", (211, 220045))
    build_schema(pg_dsn, "tq_no_magnesium", rows)
    cfg = make_config("db.schema=tq_no_magnesium")
    with pytest.raises(IcurtError) as err:
        run_stage("query", cfg)
    _assert_failed_cleanly(cfg, err.value, "magnesium (labevents itemid 50960)",
                           "heartrate (chartevents itemid 211, 220045)")
    assert "sodium" not in str(err.value)


def test_feature_items_are_those_of_the_queries():
    from icurt.config import load_config
    from icurt.config_sections import FEATURE_COLUMNS
    from icurt.preprocess.sources import SOURCE_TABLES, feature_tables

    assert list(query.FEATURE_ITEMS) == list(FEATURE_COLUMNS)
    settings = load_config(env={}).preprocess
    for feature, (table, items) in query.FEATURE_ITEMS.items():
        # every table preprocess may read the feature from, under any source setting
        tables = set(feature_tables(feature, settings))
        if hasattr(settings, f"{feature}_source"):
            tables = {t for option in SOURCE_TABLES.values() for t in option}
        texts = [query.query_text(t) for t in tables if f"AS {feature}" in query.query_text(t)]
        assert texts and all(f"FROM {table}" in text for text in texts), feature
        assert all(any(str(item) in text for text in texts) for item in items), feature


# ---------------------------------------------------------------- a synthetic cohort

VITAL_HEARTRATE_ITEMS = (211, 220045)
VITAL_ITEMS = (211, 220045, 51, 442, 455, 6701, 220179, 220050, 8368, 8440, 8441, 8555, 220180, 220051,
               456, 52, 6702, 443, 220052, 220181, 225312, 615, 618, 220210, 224690, 676, 223762, 678,
               223761, 646, 220277, 807, 811, 1529, 3745, 3744, 225664, 220621, 226537)
LAB_ITEMS = (50868, 50862, 51144, 50882, 50885, 50912, 50902, 50931, 51221, 51222, 50813, 51265, 50971,
             51275, 51237, 51274, 50983, 51006, 51300, 51301, 50960, 50893)


@pytest.fixture(scope="module")
def synth_run(pg_dsn, tmp_path_factory):
    from icurt.config import load_config, with_overrides
    from icurt.db.synth.cohort import generate_cohort, load_cohort

    cohort = generate_cohort(300, seed=11, mortality_rate=0.1)
    conn = connect(pg_dsn)
    load_cohort(conn, "tq_synth", cohort)
    conn.close()
    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path_factory.mktemp('synth_run')}",
                                               f"db.dsn={pg_dsn}", "db.schema=tq_synth",
                                               "query.fetch_size=1000"])
    return cohort.tables, run_stage("query", cfg)


def _valid_chart(tables) -> pd.DataFrame:
    ce = tables["chartevents"]
    keep = ce["itemid"].isin(VITAL_ITEMS) & ce["icustay_id"].notna() & (ce["error"].isna() | (ce["error"] != 1))
    return ce[keep].assign(icustay_id=lambda f: f["icustay_id"].astype("int64"))


def test_synth_icustay_detail(synth_run):
    check_icustay_detail(*synth_run)


def test_synth_vitals(synth_run):
    check_vitals(*synth_run)


def test_synth_lab_windows(synth_run):
    check_lab_windows(*synth_run)


def test_synth_blood_gas(synth_run):
    check_blood_gas(*synth_run)


# Checks of query output against facts recomputed with pandas from the source tables (also used
# by test_mimic_demo.py on PhysioNet's demo).

def check_icustay_detail(tables: dict[str, pd.DataFrame], run) -> None:
    adm = tables["admissions"]
    stays = tables["icustays"].merge(adm[["hadm_id", "admittime", "has_chartevents_data"]], on="hadm_id")
    stays = stays.merge(tables["patients"][["subject_id", "dob"]], on="subject_id")
    kept = stays[stays["has_chartevents_data"] == 1]
    got = _read(run, "icustay_detail")
    assert sorted(got["icustay_id"]) == sorted(kept["icustay_id"])
    assert len(kept) < len(stays) or (adm["has_chartevents_data"] == 1).all()
    age = (kept["admittime"] - kept["dob"]).dt.total_seconds() / 86400 / 365.242
    expected = pd.DataFrame({"icustay_id": kept["icustay_id"].to_numpy(), "age": age.to_numpy()})
    merged = got.merge(expected, on="icustay_id")
    np.testing.assert_allclose(merged["admission_age"], merged["age"], rtol=1e-9)
    old = merged["age"] > 89
    assert old.any(), "the cohort should hold patients over 89"
    assert (merged["admission_age"] > 250).any(), "the cohort should hold DOBs shifted by 300 years"
    assert (merged.loc[old, "age_years"] == 91.4).all()
    np.testing.assert_allclose(merged.loc[~old, "age_years"], merged.loc[~old, "age"], rtol=1e-9)


def check_vitals(tables: dict[str, pd.DataFrame], run) -> None:
    chart = _valid_chart(tables)
    got = _read(run, "pivoted_vital")
    assert len(got) == len(chart.drop_duplicates(["icustay_id", "charttime"]))
    hr = chart[chart["itemid"].isin(VITAL_HEARTRATE_ITEMS) & (chart["valuenum"] > 0) & (chart["valuenum"] < 300)]
    assert got["heartrate"].notna().sum() == len(hr.drop_duplicates(["icustay_id", "charttime"]))
    # temperature: °F items checked on (70, 120) °F and converted, °C items on (10, 50) °C, then averaged
    fahrenheit = chart["itemid"].isin((678, 223761)) & chart["valuenum"].between(70, 120, inclusive="neither")
    celsius = chart["itemid"].isin((676, 223762)) & chart["valuenum"].between(10, 50, inclusive="neither")
    assert fahrenheit.any()
    temps = pd.concat([chart[fahrenheit].assign(t=(chart["valuenum"] - 32) / 1.8), chart[celsius].assign(t=chart["valuenum"])])
    expected = temps.groupby(["icustay_id", "charttime"])["t"].mean().rename("expected").reset_index()
    merged = got.merge(expected, on=["icustay_id", "charttime"], how="left")
    np.testing.assert_allclose(merged["tempc"].fillna(-1), merged["expected"].fillna(-1), rtol=1e-9)
    assert set(got["icustay_id"]) <= set(tables["icustays"]["icustay_id"])


def _windows(frame: pd.DataFrame, key: str, start: str, end: str) -> pd.DataFrame:
    """Reference window rule: ±12 h, or the midpoint (to the second, ties to even) of a gap < 24 h."""
    f = frame.sort_values(["subject_id", start])[["subject_id", key, start, end]].copy()
    previous_end = f.groupby("subject_id")[end].shift(1)
    next_start = f.groupby("subject_id")[start].shift(-1)
    half_before = np.rint((f[start] - previous_end).dt.total_seconds() / 2)
    half_after = np.rint((next_start - f[end]).dt.total_seconds() / 2)
    twelve, day = pd.Timedelta(hours=12), pd.Timedelta(hours=24)
    close_before = previous_end > f[start] - day
    close_after = next_start < f[end] + day
    f["window_start"] = f[start] - twelve
    f.loc[close_before, "window_start"] = f[start] - pd.to_timedelta(half_before, unit="s")
    f["window_end"] = f[end] + twelve
    f.loc[close_after, "window_end"] = f[end] + pd.to_timedelta(half_after, unit="s")
    return f[["subject_id", key, "window_start", "window_end"]]


def check_lab_windows(tables: dict[str, pd.DataFrame], run) -> None:
    le = tables["labevents"]
    le = le[le["itemid"].isin(LAB_ITEMS) & (le["valuenum"] > 0)]
    times = le[["subject_id", "charttime"]].drop_duplicates()
    stays = _windows(tables["icustays"], "icustay_id", "intime", "outtime")
    inside = times.merge(stays, on="subject_id")
    inside = inside[(inside["charttime"] >= inside["window_start"]) & (inside["charttime"] < inside["window_end"])]
    expected = times.merge(inside[["subject_id", "charttime", "icustay_id"]], how="left", on=["subject_id", "charttime"])
    got = _read(run, "pivoted_lab")
    assert len(got) == len(expected)
    key = ["subject_id", "charttime"]
    compared = got.merge(expected, on=key, suffixes=("", "_expected"))
    assert len(compared) == len(got)
    assert compared["icustay_id"].fillna(-1).astype("int64").tolist() == \
        compared["icustay_id_expected"].fillna(-1).astype("int64").tolist()
    assert got["icustay_id"].isna().any() and got["icustay_id"].notna().any()
    magnesium = le[(le["itemid"] == 50960) & (le["valuenum"] <= 20)]
    assert got["magnesium"].notna().sum() == len(magnesium.drop_duplicates(key)) > 0


def check_blood_gas(tables: dict[str, pd.DataFrame], run) -> None:
    le = tables["labevents"]
    bg = le[(le["itemid"].between(50800, 50828) | (le["itemid"] == 51545)) & le["hadm_id"].isin(tables["admissions"]["hadm_id"])]
    bg = bg.assign(hadm_id=bg["hadm_id"].astype("int64"))
    # a sample listing two different specimen types is dropped; the same type twice is not
    specimen_rows = bg[bg["itemid"] == 50800].assign(value=lambda f: f["value"].fillna(""))
    specimens = specimen_rows.groupby(["hadm_id", "charttime"])["value"].nunique()
    doubled = set(specimens[specimens >= 2].index)
    samples = bg[["hadm_id", "charttime"]].drop_duplicates()
    samples = samples[[key not in doubled for key in zip(samples["hadm_id"], samples["charttime"])]]
    got = _read(run, "pivoted_bg")
    assert len(got) == len(samples)
    potassium = bg[(bg["itemid"] == 50822) & (bg["valuenum"] > 0)]
    potassium = potassium[[key not in doubled for key in zip(potassium["hadm_id"], potassium["charttime"])]]
    assert got["potassium"].notna().sum() == len(potassium.drop_duplicates(["hadm_id", "charttime"])) > 0


def _as_role(pg_dsn: str, schema: str, role: str, tables: list[str]) -> str:
    """A DSN for a login role that may only read `tables` of `schema` (as a user's MIMIC-III copy)."""
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role)))
        for table in tables:
            cur.execute(sql.SQL("GRANT SELECT ON {}.{} TO {}").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Identifier(role)))
    conn.close()
    user, rest = pg_dsn.split("://", 1)[1].split("@", 1)
    return f"postgresql://{role}@{rest}"


def test_select_privilege_is_enough(pg_dsn, make_config):
    build_schema(pg_dsn, "tq_readonly", HAND_ROWS)
    dsn = _as_role(pg_dsn, "tq_readonly", "tq_reader", list(TABLES))
    run = run_stage("query", make_config("db.schema=tq_readonly", f"db.dsn={dsn}"))
    assert pq.read_metadata(run.path / "pivoted_vital.parquet").num_rows == 16


def test_missing_privilege(pg_dsn, make_config):
    build_schema(pg_dsn, "tq_no_grant", {})
    dsn = _as_role(pg_dsn, "tq_no_grant", "tq_partial_reader", ["icustays", "admissions", "patients"])
    cfg = make_config("db.schema=tq_no_grant", f"db.dsn={dsn}")
    with pytest.raises(IcurtError) as err:
        run_stage("query", cfg)
    _assert_failed_cleanly(cfg, err.value, "chartevents", "grant")


def test_failure_while_streaming_leaves_no_partial_file(pg_dsn, make_config):
    # chartevents as a view whose `error` column divides by zero on one row: planning succeeds,
    # execution fails after the first query's files were written
    build_schema(pg_dsn, "tq_midway", HAND_ROWS)
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("ALTER TABLE tq_midway.chartevents RENAME TO chartevents_rows")
        cur.execute("CREATE VIEW tq_midway.chartevents AS SELECT row_id, subject_id, hadm_id, icustay_id, itemid, "
                    "charttime, valuenum, 1 / (row_id - 7) AS error FROM tq_midway.chartevents_rows")
    conn.close()
    cfg = make_config("db.schema=tq_midway")
    with pytest.raises(Exception, match="division by zero"):
        run_stage("query", cfg)
    store = RunStore.from_config(cfg)
    assert store.list("query") == []
    (failed,) = store.stage_dir("query").glob(".failed-*")
    assert sorted(p.name for p in failed.glob("*.parquet*")) == ["icustay_detail.parquet"]


def test_queries_run_in_read_only_transactions(pg_dsn, make_config):
    # a chartevents view whose rows write to a side table: only a read-only transaction refuses it
    build_schema(pg_dsn, "tq_read_only", HAND_ROWS)
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE tq_read_only.touched (n INT)")
        cur.execute("CREATE FUNCTION tq_read_only.touch() RETURNS INT LANGUAGE plpgsql VOLATILE AS "
                    "$$ BEGIN INSERT INTO tq_read_only.touched VALUES (1); RETURN 0; END $$")
        cur.execute("ALTER TABLE tq_read_only.chartevents RENAME TO chartevents_rows")
        cur.execute("CREATE VIEW tq_read_only.chartevents AS SELECT row_id, subject_id, hadm_id, icustay_id, "
                    "itemid, charttime, valuenum, tq_read_only.touch() AS error FROM tq_read_only.chartevents_rows")
    cfg = make_config("db.schema=tq_read_only")
    with pytest.raises(Exception, match="read-only transaction"):
        run_stage("query", cfg)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM tq_read_only.touched")
        assert cur.fetchone()[0] == 0
    conn.close()


def test_cli_reports_a_missing_schema_in_one_line(pg_dsn, tmp_path, capsys):
    from icurt.cli import main

    code = main(["query", "--set", f"db.dsn={pg_dsn}", "--set", f"paths.data={tmp_path}",
                 "--set", "db.schema=tq_cli_nowhere"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("icurt: error: schema 'tq_cli_nowhere' does not exist")
