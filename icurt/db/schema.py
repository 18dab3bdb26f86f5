"""MIMIC-III v1.4 DDL for the tables icurt's queries read (shared by synth and load-csv): columns,
the keys of the community's build, and indexes. The functions take `dataset`: "mimic-iii" (this
module's tables) or "mimic-iv" (icurt.db.schema_iv's)."""

from __future__ import annotations

import re

from psycopg2 import errors, sql

from icurt.db import schema_iv
from icurt.errors import IcurtError

MIMIC_III = "mimic-iii"

# Column order is the order of PhysioNet's CSV files.
TABLES: dict[str, list[tuple[str, str]]] = {
    "patients": [
        ("row_id", "INT NOT NULL"), ("subject_id", "INT NOT NULL"), ("gender", "VARCHAR(5) NOT NULL"),
        ("dob", "TIMESTAMP(0) NOT NULL"), ("dod", "TIMESTAMP(0)"), ("dod_hosp", "TIMESTAMP(0)"),
        ("dod_ssn", "TIMESTAMP(0)"), ("expire_flag", "INT NOT NULL"),
    ],
    "admissions": [
        ("row_id", "INT NOT NULL"), ("subject_id", "INT NOT NULL"), ("hadm_id", "INT NOT NULL"),
        ("admittime", "TIMESTAMP(0) NOT NULL"), ("dischtime", "TIMESTAMP(0) NOT NULL"),
        ("deathtime", "TIMESTAMP(0)"), ("admission_type", "VARCHAR(50) NOT NULL"),
        ("admission_location", "VARCHAR(50) NOT NULL"), ("discharge_location", "VARCHAR(50) NOT NULL"),
        ("insurance", "VARCHAR(255) NOT NULL"), ("language", "VARCHAR(10)"), ("religion", "VARCHAR(50)"),
        ("marital_status", "VARCHAR(50)"), ("ethnicity", "VARCHAR(200) NOT NULL"),
        ("edregtime", "TIMESTAMP(0)"), ("edouttime", "TIMESTAMP(0)"), ("diagnosis", "VARCHAR(255)"),
        ("hospital_expire_flag", "SMALLINT"), ("has_chartevents_data", "SMALLINT NOT NULL"),
    ],
    "icustays": [
        ("row_id", "INT NOT NULL"), ("subject_id", "INT NOT NULL"), ("hadm_id", "INT NOT NULL"),
        ("icustay_id", "INT NOT NULL"), ("dbsource", "VARCHAR(20) NOT NULL"),
        ("first_careunit", "VARCHAR(20) NOT NULL"), ("last_careunit", "VARCHAR(20) NOT NULL"),
        ("first_wardid", "SMALLINT NOT NULL"), ("last_wardid", "SMALLINT NOT NULL"),
        ("intime", "TIMESTAMP(0) NOT NULL"), ("outtime", "TIMESTAMP(0)"), ("los", "DOUBLE PRECISION"),
    ],
    "chartevents": [
        ("row_id", "INT NOT NULL"), ("subject_id", "INT NOT NULL"), ("hadm_id", "INT"),
        ("icustay_id", "INT"), ("itemid", "INT"), ("charttime", "TIMESTAMP(0)"),
        ("storetime", "TIMESTAMP(0)"), ("cgid", "INT"), ("value", "VARCHAR(255)"),
        ("valuenum", "DOUBLE PRECISION"), ("valueuom", "VARCHAR(50)"), ("warning", "INT"),
        ("error", "INT"), ("resultstatus", "VARCHAR(50)"), ("stopped", "VARCHAR(50)"),
    ],
    "labevents": [
        ("row_id", "INT NOT NULL"), ("subject_id", "INT NOT NULL"), ("hadm_id", "INT"),
        ("itemid", "INT NOT NULL"), ("charttime", "TIMESTAMP(0)"), ("value", "VARCHAR(200)"),
        ("valuenum", "DOUBLE PRECISION"), ("valueuom", "VARCHAR(20)"), ("flag", "VARCHAR(20)"),
    ],
    "d_items": [
        ("row_id", "INT NOT NULL"), ("itemid", "INT NOT NULL"), ("label", "VARCHAR(200)"),
        ("abbreviation", "VARCHAR(100)"), ("dbsource", "VARCHAR(20)"), ("linksto", "VARCHAR(50)"),
        ("category", "VARCHAR(100)"), ("unitname", "VARCHAR(100)"), ("param_type", "VARCHAR(30)"),
        ("conceptid", "INT"),
    ],
    "d_labitems": [
        ("row_id", "INT NOT NULL"), ("itemid", "INT NOT NULL"), ("label", "VARCHAR(100) NOT NULL"),
        ("fluid", "VARCHAR(100) NOT NULL"), ("category", "VARCHAR(100) NOT NULL"),
        ("loinc_code", "VARCHAR(100)"),
    ],
}

# The keys of the community's build (mimic-code's buildmimic/postgres/postgres_create_tables.sql):
# a primary key on row_id in every table, and the natural unique keys. A duplicated row cannot load.
PRIMARY_KEY = ("row_id",)
UNIQUE_KEYS: dict[str, list[tuple[str, ...]]] = {
    "patients": [("subject_id",)],
    "admissions": [("hadm_id",)],
    "icustays": [("icustay_id",)],
    "chartevents": [],
    "labevents": [],
    "d_items": [("itemid",)],
    "d_labitems": [("itemid",)],
}

# The further indexes the four queries need (the unique keys above are indexes too; mimic-code's
# postgres_add_indexes.sql has more).
INDEXES: dict[str, list[tuple[str, ...]]] = {
    "patients": [],
    "admissions": [("subject_id",)],
    "icustays": [("subject_id",), ("hadm_id",)],
    "chartevents": [("itemid",), ("icustay_id",)],
    "labevents": [("itemid",), ("subject_id", "charttime"), ("hadm_id",)],
    "d_items": [],
    "d_labitems": [],
}
_DUPLICATE = re.compile(r"Key \((?P<columns>.*)\)=\((?P<value>.*)\) is duplicated")


def table_columns(table: str, dataset: str = MIMIC_III) -> list[tuple[str, str]]:
    """(column, type) of `table` in the dataset's DDL, in the order of its CSV files."""
    return TABLES[table] if dataset == MIMIC_III else schema_iv.TABLES[table][1]


def create_table_sql(schema: str, table: str, dataset: str = MIMIC_III) -> sql.Composed:
    cols = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in table_columns(table, dataset))
    return sql.SQL("CREATE TABLE {}.{} ({})").format(sql.Identifier(schema), sql.Identifier(table), cols)


def create_index_sql(schema: str, table: str, dataset: str = MIMIC_III) -> list[sql.Composed]:
    indexes = INDEXES[table] if dataset == MIMIC_III else schema_iv.INDEXES[table]
    return [
        sql.SQL("CREATE INDEX {} ON {}.{} ({})").format(
            sql.Identifier(f"{table}_{'_'.join(cols)}_idx"), sql.Identifier(schema), sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, cols)))
        for cols in indexes
    ]


def add_keys(cur, schema: str, table: str, dataset: str = MIMIC_III) -> None:
    """Add the table's primary key and unique keys (after its rows are in: one index build each).

    A duplicate is an IcurtError naming the table, the key and one duplicated value, e.g.
    "table labevents holds two rows with primary key row_id = 17".
    """
    if dataset == MIMIC_III:
        keys = [("primary key", PRIMARY_KEY, "PRIMARY KEY")] + [("unique key", k, "UNIQUE") for k in UNIQUE_KEYS[table]]
    else:
        primary = schema_iv.PRIMARY_KEYS[table]
        keys = [("primary key", primary, "PRIMARY KEY")] if primary else []
    for kind, columns, constraint in keys:
        statement = sql.SQL("ALTER TABLE {}.{} ADD {} ({})").format(
            sql.Identifier(schema), sql.Identifier(table), sql.SQL(constraint),
            sql.SQL(", ").join(map(sql.Identifier, columns)))
        try:
            cur.execute(statement)
        except errors.UniqueViolation as exc:
            found = _DUPLICATE.search(exc.diag.message_detail or "")
            value = found.group("value") if found else "(a value)"
            raise IcurtError(f"table {table} holds two rows with {kind} {', '.join(columns)} = {value}: "
                             "a row is duplicated") from None


def recreate_schema(cur, schema: str) -> None:
    """Drop `schema` (if it exists) and create it empty."""
    cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))


def column_names(table: str, dataset: str = MIMIC_III) -> list[str]:
    return [name for name, _ in table_columns(table, dataset)]
