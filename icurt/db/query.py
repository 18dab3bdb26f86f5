"""The four queries of the configured dataset (sql/mimic-iii/*.sql or sql/mimic-iv/*.sql, the same
columns and units) streamed into Parquet (icurt/stages/query.py is the stage).

Each query runs in its own read-only transaction through a server-side cursor, and its rows are
streamed into Parquet in batches of [query].fetch_size, so memory stays flat at MIMIC-III scale.
Every output file has an explicit Arrow schema, so an empty result is still a well-typed file.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psycopg2
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from psycopg2 import errors, sql

from icurt.config import Config
from icurt.db.datasets import FEATURE_ITEMS as DATASET_FEATURE_ITEMS
from icurt.db.datasets import MIMIC_III, SOURCE_TABLES, QuerySource, query_source
from icurt.errors import IcurtError
from icurt.shipped import shipped_path

log = logging.getLogger("icurt")

_ID, _TIME, _VALUE, _TEXT, _FLAG = pa.int64(), pa.timestamp("us"), pa.float64(), pa.string(), pa.bool_()


def _values(*names: str) -> list[tuple[str, pa.DataType]]:
    return [(name, _VALUE) for name in names]


OUTPUT_SCHEMAS: dict[str, pa.Schema] = {
    "icustay_detail": pa.schema([
        ("subject_id", _ID), ("hadm_id", _ID), ("icustay_id", _ID), ("gender", _TEXT), ("dod", _TIME),
        ("admittime", _TIME), ("dischtime", _TIME), ("los_hospital", _VALUE), ("admission_age", _VALUE),
        ("age_years", _VALUE), ("ethnicity", _TEXT), ("ethnicity_grouped", _TEXT),
        ("hospital_expire_flag", _ID), ("hospstay_seq", _ID), ("first_hosp_stay", _FLAG),
        ("intime", _TIME), ("outtime", _TIME), ("los_icu", _VALUE), ("icustay_seq", _ID),
        ("first_icu_stay", _FLAG),
    ]),
    "pivoted_vital": pa.schema([
        ("icustay_id", _ID), ("charttime", _TIME),
        *_values("heartrate", "sysbp", "diasbp", "meanbp", "resprate", "tempc", "spo2", "glucose"),
    ]),
    "pivoted_lab": pa.schema([
        ("icustay_id", _ID), ("hadm_id", _ID), ("subject_id", _ID), ("charttime", _TIME),
        *_values("aniongap", "albumin", "bands", "bicarbonate", "bilirubin", "creatinine", "chloride",
                 "glucose", "hematocrit", "hemoglobin", "lactate", "platelet", "potassium", "ptt", "inr",
                 "pt", "sodium", "bun", "wbc", "magnesium", "calcium"),
    ]),
    "pivoted_bg": pa.schema([
        ("icustay_id", _ID), ("hadm_id", _ID), ("charttime", _TIME), ("specimen", _TEXT),
        *_values("aado2", "baseexcess", "bicarbonate", "totalco2", "carboxyhemoglobin", "chloride",
                 "calcium", "glucose", "hematocrit", "hemoglobin", "intubated", "lactate",
                 "methemoglobin", "o2flow", "fio2", "so2", "pco2", "peep", "ph", "po2", "potassium",
                 "requiredo2", "sodium", "temperature", "tidalvolume", "ventilationrate", "ventilator"),
    ]),
}
QUERIES = tuple(OUTPUT_SCHEMAS)
FEATURE_ITEMS = DATASET_FEATURE_ITEMS[MIMIC_III]   # MIMIC-III's; QuerySource.feature_items per dataset


@dataclass(frozen=True)
class QueryStats:
    rows: int
    query_s: float
    write_s: float


def query_text(name: str, dataset: str = MIMIC_III) -> str:
    """The SQL of one of the four queries of `dataset`, as shipped in sql/<dataset>/<name>.sql."""
    return shipped_path("icurt.sql", f"{dataset}/{name}.sql").read_text()


def check_database(conn, source: QuerySource | str) -> None:
    """IcurtError naming what is missing, in seconds, before any long query starts: a schema; a
    table, column or privilege (found by planning every query); a table without rows; a feature
    none of whose item ids occurs (QuerySource.feature_items). A str is a MIMIC-III schema."""
    source = _as_source(source)
    _check_schema(conn, source)
    _check_queries_plan(conn, source)
    _check_rows(conn, source)


def _as_source(source: QuerySource | str) -> QuerySource:
    if isinstance(source, QuerySource):
        return source
    return QuerySource(MIMIC_III, {table: source for table in SOURCE_TABLES})


def export_query(conn, cfg: Config, name: str, folder: Path, csv: bool = False) -> QueryStats:
    """Stream one query into <folder>/<name>.parquet (and .csv); the files appear only when complete."""
    schema = OUTPUT_SCHEMAS[name]
    source = query_source(cfg.db)
    targets = [folder / f"{name}.parquet"] + ([folder / f"{name}.csv"] if csv else [])
    partials = [path.with_name(path.name + ".partial") for path in targets]
    timer = _Timer()
    rows = 0
    try:
        _begin(conn, source)
        with conn.cursor(name=f"icurt_{name}") as cur, _BatchWriters(schema, partials) as writers:
            cur.itersize = cfg.query.fetch_size
            with timer.lap("query"):
                cur.execute(query_text(name, source.dataset))
                fetched = cur.fetchmany(cfg.query.fetch_size)
            _check_columns(name, [column.name for column in cur.description], schema, source.dataset)
            while fetched:
                with timer.lap("write"):
                    writers.write(_record_batch(fetched, schema))
                rows += len(fetched)
                with timer.lap("query"):
                    fetched = cur.fetchmany(cfg.query.fetch_size)
        conn.commit()
    except BaseException as exc:
        _rollback_quietly(conn)
        _remove(partials)
        mapped = _user_error(exc, name, source) if isinstance(exc, psycopg2.Error) else None
        if mapped is None:
            raise
        raise mapped from None
    for partial, target in zip(partials, targets):
        os.replace(partial, target)
    return QueryStats(rows=rows, query_s=round(timer.total["query"], 3),
                      write_s=round(timer.total["write"], 3))


class _Timer:
    """Seconds spent per kind of work, summed over laps."""

    def __init__(self):
        self.total = {"query": 0.0, "write": 0.0}

    @contextmanager
    def lap(self, kind: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.total[kind] += time.perf_counter() - started


def _record_batch(rows: list[tuple], schema: pa.Schema) -> pa.RecordBatch:
    columns = list(zip(*rows))
    return pa.record_batch([pa.array(values, type=field.type) for values, field in zip(columns, schema)],
                           schema=schema)


class _BatchWriters:
    """A Parquet writer (and a CSV writer) fed the same batches; closed together."""

    def __init__(self, schema: pa.Schema, paths: list[Path]):
        self.schema, self.paths, self.open = schema, paths, []

    def __enter__(self):
        try:
            self.open.append(pq.ParquetWriter(self.paths[0], self.schema))
            if len(self.paths) > 1:
                self.open.append(pa_csv.CSVWriter(self.paths[1], self.schema))
        except BaseException:
            self.__exit__()
            raise
        return self

    def write(self, batch: pa.RecordBatch) -> None:
        for writer in self.open:
            writer.write_batch(batch)

    def __exit__(self, *exc_info) -> None:
        for writer in self.open:
            writer.close()


def _begin(conn, source: QuerySource) -> None:
    """Start a transaction that reads unqualified table names from the source's schemas."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, source.schemas))))
        # A cursor's plan is tuned for its first 10% of rows by default; all rows are read here.
        cur.execute("SET LOCAL cursor_tuple_fraction = 1.0")


def _check_queries_plan(conn, source: QuerySource) -> None:
    """Plan every query first, so a missing table, column or privilege fails in seconds, not hours."""
    for name in QUERIES:
        try:
            _begin(conn, source)
            with conn.cursor() as cur:
                cur.execute("EXPLAIN " + query_text(name, source.dataset))
            conn.commit()
        except psycopg2.Error as exc:
            _rollback_quietly(conn)
            mapped = _user_error(exc, name, source)
            if mapped is None:
                raise
            raise mapped from None


def _check_rows(conn, source: QuerySource) -> None:
    """Every source table holds rows and every feature has at least one row of one of its items."""
    try:
        _begin(conn, source)
        with conn.cursor() as cur:
            empty = [source.name_of(table) for table in SOURCE_TABLES if not _exists(cur, table)]
            if empty:
                raise IcurtError(f"table{'s' if len(empty) > 1 else ''} {', '.join(empty)} in {source.where()} "
                                 f"hold{'' if len(empty) > 1 else 's'} no rows; {source.fix()}")
            missing = [f"{feature} ({source.name_of(table)} itemid {', '.join(map(str, items))})"
                       for feature, (table, items) in source.feature_items.items()
                       if not _exists(cur, table, items)]
        conn.commit()
    except psycopg2.Error as exc:
        _rollback_quietly(conn)
        mapped = _user_error(exc, "check", source)
        if mapped is None:
            raise
        raise mapped from None
    if missing:
        raise IcurtError(f"no row in {source.where()} holds an item id of feature{'s' if len(missing) > 1 else ''} "
                         f"{'; '.join(missing)}: the table is incomplete or not {source.release}'s; {source.fix()}")


def _exists(cur, table: str, items: tuple[int, ...] | None = None) -> bool:
    where = sql.SQL(" WHERE itemid = ANY(%s)") if items else sql.SQL("")
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {}{})").format(sql.Identifier(table), where),
                (list(items),) if items else None)
    return bool(cur.fetchone()[0])


def _check_schema(conn, source: QuerySource) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (list(source.schemas),))
        found = {row[0] for row in cur.fetchall()}
    conn.commit()
    missing = [name for name in source.schemas if name not in found]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        raise IcurtError(f"schema{'s' if len(missing) > 1 else ''} {names} "
                         f"do{'' if len(missing) > 1 else 'es'} not exist in the database; {source.fix()}")


def _check_columns(name: str, got: list[str], schema: pa.Schema, dataset: str) -> None:
    if got != schema.names:
        raise RuntimeError(f"sql/{dataset}/{name}.sql returns columns {got}, expected {schema.names}")


def _user_error(exc, name: str, source: QuerySource) -> IcurtError | None:
    """A one-line IcurtError for what a user can fix (missing table/column/schema, no privilege)."""
    detail = (exc.diag.message_primary or str(exc)).strip().splitlines()[0]
    if isinstance(exc, errors.UndefinedTable):
        return IcurtError(f"query {name}: {detail} in {source.where()} ({source.release} table missing); "
                          f"{source.fix()}")
    if isinstance(exc, errors.UndefinedColumn):
        return IcurtError(f"query {name}: {detail} in {source.where()} (the tables do not have the "
                          f"{source.release} columns); {source.fix()}")
    if isinstance(exc, errors.InvalidSchemaName):
        return IcurtError(f"query {name}: {detail}; {source.fix()}")
    if isinstance(exc, errors.InsufficientPrivilege):
        return IcurtError(f"query {name}: {detail}; grant the database user SELECT on the tables of "
                          f"{source.where()} (USAGE on the schema{'s' if len(source.schemas) > 1 else ''} too)")
    return None


def _rollback_quietly(conn) -> None:
    try:
        conn.rollback()
    except psycopg2.Error:  # the connection is gone; the original error is the one to report
        pass


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
