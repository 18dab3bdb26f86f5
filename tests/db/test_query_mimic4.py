"""The MIMIC-IV queries (sql/mimic-iv/) on hand-built rows in mimiciv_hosp / mimiciv_icu-shaped
schemas, the checks naming MIMIC-IV's objects, and icurt's MIMIC-IV DDL against the community's.

Expected values are computed by hand from the rules in the SQL files' headers."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from icurt.db import schema_iv
from icurt.db.connection import connect
from icurt.db.schema import create_table_sql, recreate_schema
from icurt.errors import IcurtError
from icurt.stages import run_stage

T = datetime.fromisoformat
HOSP, ICU = "t4q_hosp", "t4q_icu"


def build_mimic4(dsn: str, hosp: str, icu: str, rows: dict[str, list[dict]], skip_tables=()) -> None:
    """Both schemas with icurt's MIMIC-IV DDL holding `rows` (unnamed columns NULL, or a filler
    where NOT NULL)."""
    schemas = {"hosp": hosp, "icu": icu}
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        for name in schemas.values():
            recreate_schema(cur, name)
        for table, (module, columns) in schema_iv.TABLES.items():
            if table in skip_tables:
                continue
            schema = schemas[module]
            cur.execute(create_table_sql(schema, table, "mimic-iv"))
            for row in rows.get(table, []):
                assert not set(row) - {c for c, _ in columns}, row
                values = {c: (0 if "INT" in k else "x") if "NOT NULL" in k else None for c, k in columns} | row
                cur.execute(sql.SQL("INSERT INTO {}.{} ({}) VALUES ({})").format(
                    sql.Identifier(schema), sql.Identifier(table),
                    sql.SQL(", ").join(map(sql.Identifier, values)), sql.SQL(", ").join(sql.Placeholder() * len(values))),
                    list(values.values()))
    conn.close()


def _ce(time, itemid, valuenum, stay_id=301):
    return {"subject_id": 1, "hadm_id": 201, "stay_id": stay_id, "charttime": T(time), "itemid": itemid,
            "valuenum": valuenum, "value": str(valuenum)}


def _le(labevent_id, time, itemid, valuenum, hadm_id=201, value=None):
    return {"labevent_id": labevent_id, "subject_id": 1, "hadm_id": hadm_id, "specimen_id": labevent_id,
            "itemid": itemid, "charttime": T(time), "valuenum": valuenum,
            "value": value if value is not None else str(valuenum)}


# Subject 1 (anchor_age 60 in anchor_year 2150) is admitted in 2153: admission 201, stay 301 from
# 2153-03-01 12:00 to 2153-03-04 12:00. Subject 2 is over 89 (anchor_age 91), stay 302.
ROWS = {
    "patients": [
        {"subject_id": 1, "gender": "F", "anchor_age": 60, "anchor_year": 2150, "anchor_year_group": "2011 - 2013"},
        {"subject_id": 2, "gender": "M", "anchor_age": 91, "anchor_year": 2170, "anchor_year_group": "2014 - 2016",
         "dod": date(2170, 6, 3)},
    ],
    "admissions": [
        {"subject_id": 1, "hadm_id": 201, "admittime": T("2153-03-01 08:00:00"),
         "dischtime": T("2153-03-06 08:00:00"), "admission_type": "EW EMER.", "race": "WHITE - RUSSIAN",
         "hospital_expire_flag": 0},
        {"subject_id": 2, "hadm_id": 202, "admittime": T("2170-06-01 00:00:00"),
         "dischtime": T("2170-06-03 00:00:00"), "admission_type": "URGENT", "race": "UNKNOWN",
         "hospital_expire_flag": 1, "deathtime": T("2170-06-03 00:00:00")},
    ],
    "icustays": [
        {"subject_id": 1, "hadm_id": 201, "stay_id": 301, "intime": T("2153-03-01 12:00:00"),
         "outtime": T("2153-03-04 12:00:00")},
        {"subject_id": 2, "hadm_id": 202, "stay_id": 302, "intime": T("2170-06-01 06:00:00"),
         "outtime": T("2170-06-02 18:00:00")},
    ],
    "chartevents": [
        _ce("2153-03-01 13:00:00", 223761, 98.6),      # °F → (98.6 − 32) / 1.8 = 37.0 °C
        _ce("2153-03-01 13:00:00", 220045, 350.0),     # heart rate ≥ 300: dropped, the row stays
        _ce("2153-03-01 14:00:00", 220045, 80.0),
        _ce("2153-03-01 14:00:00", 220179, 120.0),
        _ce("2153-03-01 14:00:00", 225309, 110.0),     # ART BP systolic: averaged in → 115
        _ce("2153-03-01 14:00:00", 223762, 51.0),      # °C ≥ 50: dropped
        _ce("2153-03-01 15:00:00", 220277, 101.0),     # SpO2 > 100: dropped
        _ce("2153-03-01 15:00:00", 220210, 18.0),
        {**_ce("2170-06-01 07:00:00", 220045, 90.0, stay_id=302), "subject_id": 2, "hadm_id": 202},
        {**_ce("2170-06-01 07:00:00", 220180, 60.0, stay_id=302), "subject_id": 2, "hadm_id": 202},
    ],
    "labevents": [
        _le(1, "2153-03-01 13:00:00", 50960, 2.1),              # magnesium, read from labevents
        _le(2, "2153-03-01 13:00:00", 50983, 140.0),
        _le(3, "2153-02-28 22:00:00", 50983, 150.0, hadm_id=None),  # intime − 14 h: outside the stay's window
        _le(4, "2153-03-01 13:00:00", 50960, 25.0, hadm_id=None),   # magnesium > 20: NULL; joined by time
        _le(5, "2153-03-02 10:00:00", 52033, None, value="ART"),    # blood gas: specimen
        _le(6, "2153-03-02 10:00:00", 50813, 2.5),                  # lactate without a pO2: kept
        _le(7, "2153-03-02 10:00:00", 50816, 0.5),                  # FiO2 as a fraction → 50 %
        # subject 2: one row of every other feature's item, so the item check passes
        *[{**_le(100 + k, "2170-06-01 08:00:00", itemid, 1.0 + k, hadm_id=202), "subject_id": 2}
          for k, itemid in enumerate((50822, 50808, 50820, 50818, 50862, 51006, 50912, 50882, 51265, 50931))],
    ],
}


@pytest.fixture(scope="module")
def hand_run(pg_dsn, tmp_path_factory):
    from icurt.config import load_config, with_overrides

    build_mimic4(pg_dsn, HOSP, ICU, ROWS)
    data = tmp_path_factory.mktemp("hand_run_iv")
    cfg = with_overrides(load_config(env={}), [f"paths.data={data}", f"db.dsn={pg_dsn}", "db.dataset=mimic-iv",
                                               f"db.hosp_schema={HOSP}", f"db.icu_schema={ICU}"])
    return run_stage("query", cfg)


def _read(run, name: str):
    return pq.read_table(run.path / f"{name}.parquet").to_pandas()


def test_icustay_detail_ages_from_anchor_year(hand_run):
    detail = _read(hand_run, "icustay_detail").set_index("icustay_id")
    assert list(detail.index) == [301, 302]
    assert detail.loc[301, "admission_age"] == 60 + (2153 - 2150)
    assert detail.loc[301, "age_years"] == 63
    assert detail.loc[302, "admission_age"] == 91 and detail.loc[302, "age_years"] == 91.4
    assert detail.loc[301, "los_icu"] == pytest.approx(3.0) and detail.loc[301, "los_hospital"] == pytest.approx(5.0)
    assert detail.loc[301, "ethnicity"] == "WHITE - RUSSIAN" and detail.loc[301, "ethnicity_grouped"] == "white"
    assert detail.loc[302, "ethnicity_grouped"] == "unknown" and detail.loc[302, "hospital_expire_flag"] == 1
    assert str(detail.loc[302, "dod"]) == "2170-06-03 00:00:00"
    assert bool(detail.loc[301, "first_icu_stay"]) and detail.loc[301, "hospstay_seq"] == 1
    assert hand_run.meta["dataset"] == {"dataset": "mimic-iv", "release": "MIMIC-IV v2.2+", "schemas": [HOSP, ICU]}


def test_vitals_fahrenheit_and_ranges(hand_run):
    vital = _read(hand_run, "pivoted_vital").set_index(["icustay_id", "charttime"])
    first = vital.loc[(301, T("2153-03-01 13:00:00"))]
    assert first["tempc"] == pytest.approx((98.6 - 32) / 1.8)
    assert first[["heartrate", "sysbp", "spo2"]].isna().all()
    second = vital.loc[(301, T("2153-03-01 14:00:00"))]
    assert second["heartrate"] == 80 and second["sysbp"] == pytest.approx(115) and second[["tempc"]].isna().all()
    third = vital.loc[(301, T("2153-03-01 15:00:00"))]
    assert third["resprate"] == 18 and third[["spo2"]].isna().all()
    assert len(vital) == 4   # three times of stay 301, one of stay 302


def test_labs_window_and_magnesium(hand_run):
    lab = _read(hand_run, "pivoted_lab")
    inside = lab[lab["charttime"] == T("2153-03-01 13:00:00")].iloc[0]
    assert inside["icustay_id"] == 301 and inside["hadm_id"] == 201
    assert inside["magnesium"] == pytest.approx(2.1)     # 25 is above 20 mg/dL: not averaged in
    assert inside["sodium"] == 140
    outside = lab[lab["charttime"] == T("2153-02-28 22:00:00")].iloc[0]
    # the stay's window opens at intime − 12 h = 2153-03-01 00:00; the admission's at admittime − 12 h
    # = 2153-02-28 20:00, so the lab belongs to the admission but to no stay
    assert outside["sodium"] == 150 and pd.isna(outside["icustay_id"]) and outside["hadm_id"] == 201


def test_blood_gas_specimen_and_lactate_without_po2(hand_run):
    bg = _read(hand_run, "pivoted_bg")
    bg = bg[bg["hadm_id"] == 201]
    assert len(bg) == 1
    row = bg.iloc[0]
    assert row["icustay_id"] == 301 and row["specimen"] == "ART"
    assert row["lactate"] == 2.5 and row["fio2"] == 50 and row[["po2"]].isna().all()


# ---------------------------------------------------------------- checks naming MIMIC-IV's objects

def _cfg(make_config, hosp, icu):
    return make_config("db.dataset=mimic-iv", f"db.hosp_schema={hosp}", f"db.icu_schema={icu}")


def test_missing_schema_names_mimic4s(make_config):
    with pytest.raises(IcurtError) as err:
        run_stage("query", _cfg(make_config, "t4q_none_hosp", "t4q_none_icu"))
    message = str(err.value)
    assert "'t4q_none_hosp', 't4q_none_icu'" in message and "[db].hosp_schema" in message and "\n" not in message


def test_missing_table_names_mimic4s(pg_dsn, make_config):
    build_mimic4(pg_dsn, "t4q_nolab_hosp", "t4q_nolab_icu", ROWS, skip_tables=("labevents",))
    with pytest.raises(IcurtError) as err:
        run_stage("query", _cfg(make_config, "t4q_nolab_hosp", "t4q_nolab_icu"))
    assert "labevents" in str(err.value) and "MIMIC-IV v2.2+ table missing" in str(err.value)
    assert "'t4q_nolab_hosp', 't4q_nolab_icu'" in str(err.value)


def test_empty_table_and_missing_items_name_mimic4s(pg_dsn, make_config):
    build_mimic4(pg_dsn, "t4q_empty_hosp", "t4q_empty_icu", {**ROWS, "chartevents": []})
    with pytest.raises(IcurtError) as err:
        run_stage("query", _cfg(make_config, "t4q_empty_hosp", "t4q_empty_icu"))
    assert "t4q_empty_icu.chartevents" in str(err.value) and "no rows" in str(err.value)
    rows = {**ROWS, "chartevents": [r for r in ROWS["chartevents"] if r["itemid"] != 220045]}
    build_mimic4(pg_dsn, "t4q_nohr_hosp", "t4q_nohr_icu", rows)
    with pytest.raises(IcurtError) as err:
        run_stage("query", _cfg(make_config, "t4q_nohr_hosp", "t4q_nohr_icu"))
    assert "heartrate (t4q_nohr_icu.chartevents itemid 220045)" in str(err.value)
    assert "MIMIC-IV v2.2+" in str(err.value)


def test_missing_privilege_names_both_schemas(pg_dsn, make_config):
    build_mimic4(pg_dsn, "t4q_priv_hosp", "t4q_priv_icu", ROWS)
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:   # a role that may read the hosp tables but none of icu's
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = 't4q_reader'")
        if cur.fetchone() is None:
            cur.execute("CREATE ROLE t4q_reader LOGIN")
        cur.execute("GRANT USAGE ON SCHEMA t4q_priv_hosp, t4q_priv_icu TO t4q_reader")
        cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA t4q_priv_hosp TO t4q_reader")
    conn.close()
    rest = pg_dsn.split("://", 1)[1].split("@", 1)[1]
    cfg = make_config("db.dataset=mimic-iv", "db.hosp_schema=t4q_priv_hosp", "db.icu_schema=t4q_priv_icu",
                      f"db.dsn=postgresql://t4q_reader@{rest}")
    with pytest.raises(IcurtError) as err:
        run_stage("query", cfg)
    assert "grant the database user SELECT" in str(err.value)
    assert "'t4q_priv_hosp', 't4q_priv_icu'" in str(err.value)


# ---------------------------------------------------------------- the DDL of the tables icurt reads

# Source: MIT-LCP/mimic-code, mimic-iv/buildmimic/postgres/create.sql (the MIMIC-IV v2.2+ DDL),
# columns and types of the seven tables icurt loads, in order, copied from that file by hand.
COMMUNITY_DDL = {
    "mimiciv_hosp.patients": "subject_id INTEGER NOT NULL, gender CHAR(1) NOT NULL, anchor_age SMALLINT, "
                             "anchor_year SMALLINT NOT NULL, anchor_year_group VARCHAR(20) NOT NULL, dod DATE",
    "mimiciv_hosp.admissions": "subject_id INTEGER NOT NULL, hadm_id INTEGER NOT NULL, admittime TIMESTAMP NOT NULL, "
                               "dischtime TIMESTAMP, deathtime TIMESTAMP, admission_type VARCHAR(40) NOT NULL, "
                               "admit_provider_id VARCHAR(10), admission_location VARCHAR(60), "
                               "discharge_location VARCHAR(60), insurance VARCHAR(255), language VARCHAR(25), "
                               "marital_status VARCHAR(30), race VARCHAR(80), edregtime TIMESTAMP, "
                               "edouttime TIMESTAMP, hospital_expire_flag SMALLINT",
    "mimiciv_hosp.d_labitems": "itemid INTEGER NOT NULL, label VARCHAR(50), fluid VARCHAR(50), category VARCHAR(50)",
    "mimiciv_hosp.labevents": "labevent_id INTEGER NOT NULL, subject_id INTEGER NOT NULL, hadm_id INTEGER, "
                              "specimen_id INTEGER NOT NULL, itemid INTEGER NOT NULL, order_provider_id VARCHAR(10), "
                              "charttime TIMESTAMP(0), storetime TIMESTAMP(0), value VARCHAR(200), "
                              "valuenum DOUBLE PRECISION, valueuom VARCHAR(20), ref_range_lower DOUBLE PRECISION, "
                              "ref_range_upper DOUBLE PRECISION, flag VARCHAR(10), priority VARCHAR(7), comments TEXT",
    "mimiciv_icu.icustays": "subject_id INTEGER NOT NULL, hadm_id INTEGER NOT NULL, stay_id INTEGER NOT NULL, "
                            "first_careunit VARCHAR(255), last_careunit VARCHAR(255), intime TIMESTAMP, "
                            "outtime TIMESTAMP, los FLOAT",
    "mimiciv_icu.d_items": "itemid INTEGER NOT NULL, label VARCHAR(100) NOT NULL, abbreviation VARCHAR(50) NOT NULL, "
                           "linksto VARCHAR(30) NOT NULL, category VARCHAR(50) NOT NULL, unitname VARCHAR(50), "
                           "param_type VARCHAR(20) NOT NULL, lownormalvalue FLOAT, highnormalvalue FLOAT",
    "mimiciv_icu.chartevents": "subject_id INTEGER NOT NULL, hadm_id INTEGER NOT NULL, stay_id INTEGER NOT NULL, "
                               "caregiver_id INTEGER, charttime TIMESTAMP NOT NULL, storetime TIMESTAMP, "
                               "itemid INTEGER NOT NULL, value VARCHAR(200), valuenum FLOAT, valueuom VARCHAR(20), "
                               "warning SMALLINT",
}
# constraint.sql's primary keys of those tables (chartevents has none)
COMMUNITY_PRIMARY_KEYS = {"patients": ("subject_id",), "admissions": ("hadm_id",), "d_labitems": ("itemid",),
                          "labevents": ("labevent_id",), "icustays": ("stay_id",), "d_items": ("itemid",),
                          "chartevents": ()}


def test_ddl_is_the_communitys():
    ours = {f"mimiciv_{module}.{table}": ", ".join(f"{c} {k}" for c, k in columns)
            for table, (module, columns) in schema_iv.TABLES.items()}
    assert ours == COMMUNITY_DDL
    assert schema_iv.PRIMARY_KEYS == COMMUNITY_PRIMARY_KEYS


def test_created_tables_have_the_communitys_columns_and_types(pg_dsn):
    build_mimic4(pg_dsn, "t4q_ddl_hosp", "t4q_ddl_icu", {})
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT table_schema, table_name, column_name, data_type, is_nullable FROM "
                    "information_schema.columns WHERE table_schema IN ('t4q_ddl_hosp', 't4q_ddl_icu') "
                    "ORDER BY table_schema, table_name, ordinal_position")
        found = cur.fetchall()
    conn.close()
    pg_types = {"INTEGER": "integer", "SMALLINT": "smallint", "CHAR(1)": "character", "DATE": "date",
                "TEXT": "text", "FLOAT": "double precision", "DOUBLE PRECISION": "double precision",
                "TIMESTAMP": "timestamp without time zone", "TIMESTAMP(0)": "timestamp without time zone"}
    expected = []
    for name, columns in COMMUNITY_DDL.items():
        schema, table = name.split(".")
        for column in columns.split(", "):
            column_name, kind = column.split(" ", 1)
            nullable = "NO" if kind.endswith("NOT NULL") else "YES"
            kind = kind.removesuffix(" NOT NULL")
            pg = pg_types.get(kind) or ("character varying" if kind.startswith("VARCHAR") else kind)
            expected.append((schema.replace("mimiciv_", "t4q_ddl_"), table, column_name, pg, nullable))
    assert sorted(found) == sorted(expected)
