"""MIMIC-IV (v2.2+) DDL for the tables icurt's queries read (shared by synth and load-csv): columns
and types as the community's mimic-iv/buildmimic/postgres/create.sql writes them, the primary keys
of its constraint.sql, and the indexes the four queries need.

MIMIC-IV splits its tables into modules, each a schema of its own: `hosp` ([db].hosp_schema,
mimiciv_hosp) and `icu` ([db].icu_schema, mimiciv_icu). Its CSV files (`hosp/*.csv.gz`,
`icu/*.csv.gz`) have lower-case names and headers, in the column order below. Unlike MIMIC-III no
table has a row_id; the foreign keys of constraint.sql are not added (the queries do not need them
and they would cost an index scan per row on the 300 M chartevents rows).
"""

from __future__ import annotations

# (module, [(column, type)]): column order is the order of PhysioNet's CSV files.
TABLES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "patients": ("hosp", [
        ("subject_id", "INTEGER NOT NULL"), ("gender", "CHAR(1) NOT NULL"), ("anchor_age", "SMALLINT"),
        ("anchor_year", "SMALLINT NOT NULL"), ("anchor_year_group", "VARCHAR(20) NOT NULL"), ("dod", "DATE"),
    ]),
    "admissions": ("hosp", [
        ("subject_id", "INTEGER NOT NULL"), ("hadm_id", "INTEGER NOT NULL"), ("admittime", "TIMESTAMP NOT NULL"),
        ("dischtime", "TIMESTAMP"), ("deathtime", "TIMESTAMP"), ("admission_type", "VARCHAR(40) NOT NULL"),
        ("admit_provider_id", "VARCHAR(10)"), ("admission_location", "VARCHAR(60)"),
        ("discharge_location", "VARCHAR(60)"), ("insurance", "VARCHAR(255)"), ("language", "VARCHAR(25)"),
        ("marital_status", "VARCHAR(30)"), ("race", "VARCHAR(80)"), ("edregtime", "TIMESTAMP"),
        ("edouttime", "TIMESTAMP"), ("hospital_expire_flag", "SMALLINT"),
    ]),
    "d_labitems": ("hosp", [
        ("itemid", "INTEGER NOT NULL"), ("label", "VARCHAR(50)"), ("fluid", "VARCHAR(50)"),
        ("category", "VARCHAR(50)"),
    ]),
    "labevents": ("hosp", [
        ("labevent_id", "INTEGER NOT NULL"), ("subject_id", "INTEGER NOT NULL"), ("hadm_id", "INTEGER"),
        ("specimen_id", "INTEGER NOT NULL"), ("itemid", "INTEGER NOT NULL"), ("order_provider_id", "VARCHAR(10)"),
        ("charttime", "TIMESTAMP(0)"), ("storetime", "TIMESTAMP(0)"), ("value", "VARCHAR(200)"),
        ("valuenum", "DOUBLE PRECISION"), ("valueuom", "VARCHAR(20)"), ("ref_range_lower", "DOUBLE PRECISION"),
        ("ref_range_upper", "DOUBLE PRECISION"), ("flag", "VARCHAR(10)"), ("priority", "VARCHAR(7)"),
        ("comments", "TEXT"),
    ]),
    "icustays": ("icu", [
        ("subject_id", "INTEGER NOT NULL"), ("hadm_id", "INTEGER NOT NULL"), ("stay_id", "INTEGER NOT NULL"),
        ("first_careunit", "VARCHAR(255)"), ("last_careunit", "VARCHAR(255)"), ("intime", "TIMESTAMP"),
        ("outtime", "TIMESTAMP"), ("los", "FLOAT"),
    ]),
    "d_items": ("icu", [
        ("itemid", "INTEGER NOT NULL"), ("label", "VARCHAR(100) NOT NULL"), ("abbreviation", "VARCHAR(50) NOT NULL"),
        ("linksto", "VARCHAR(30) NOT NULL"), ("category", "VARCHAR(50) NOT NULL"), ("unitname", "VARCHAR(50)"),
        ("param_type", "VARCHAR(20) NOT NULL"), ("lownormalvalue", "FLOAT"), ("highnormalvalue", "FLOAT"),
    ]),
    "chartevents": ("icu", [
        ("subject_id", "INTEGER NOT NULL"), ("hadm_id", "INTEGER NOT NULL"), ("stay_id", "INTEGER NOT NULL"),
        ("caregiver_id", "INTEGER"), ("charttime", "TIMESTAMP NOT NULL"), ("storetime", "TIMESTAMP"),
        ("itemid", "INTEGER NOT NULL"), ("value", "VARCHAR(200)"), ("valuenum", "FLOAT"),
        ("valueuom", "VARCHAR(20)"), ("warning", "SMALLINT"),
    ]),
}

# constraint.sql's primary keys (chartevents has none); a duplicated row cannot load.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "patients": ("subject_id",), "admissions": ("hadm_id",), "d_labitems": ("itemid",),
    "labevents": ("labevent_id",), "icustays": ("stay_id",), "d_items": ("itemid",), "chartevents": (),
}

INDEXES: dict[str, list[tuple[str, ...]]] = {
    "patients": [], "admissions": [("subject_id",)], "d_labitems": [],
    "labevents": [("itemid",), ("subject_id", "charttime"), ("hadm_id",)],
    "icustays": [("subject_id",), ("hadm_id",)], "d_items": [],
    "chartevents": [("itemid",), ("stay_id",)],
}

# What the stay key and the small tables' keys are called (the stamp's fingerprint reads them).
ID_COLUMNS = {"patients": "subject_id", "admissions": "hadm_id", "icustays": "stay_id"}


def module_of(table: str) -> str:
    """'hosp' or 'icu': the MIMIC-IV module (and so the schema and CSV folder) holding `table`."""
    return TABLES[table][0]
