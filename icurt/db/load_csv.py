"""`icurt db load-csv DIR`: build the MIMIC-III schema, or MIMIC-IV's two, from PhysioNet's CSV files.

A folder holding `hosp/` and `icu/` is MIMIC-IV's release layout (lower-case `.csv.gz` files): its
seven tables icurt reads (icurt.db.schema_iv) go into [db].hosp_schema and [db].icu_schema, each
staged, locked and swapped in as below (both in one final transaction, stamped with one load id).
Any other folder is MIMIC-III's: its seven tables go into [db].schema.

Every file is found (NAME.csv or NAME.csv.gz, any letter case) and its header checked before the
database is touched. The load then takes the schema's load lock (icurt.db.load_lock: a second load
of the same schema at the same time refuses at once) and loads the tables into a staging schema of
its own, `<schema>__loading_<random>`, with COPY, streamed from the (gzipped) file, keyed, indexed and analysed; COPY's row count must equal the
number of CSV records counted while streaming, every table must hold rows, and the keys of the
community's build (icurt.db.schema: row_id and the natural unique keys) must hold, so a duplicated
row stops the load. Only then is the old schema dropped and the staging schema, stamped with this
load (icurt.db.stamp), renamed in its place, in one transaction: a failed load leaves the old schema
as it was.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
import time
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg2
from psycopg2 import sql

from icurt.config import Config
from icurt.db.connection import connection
from icurt.db import schema_iv
from icurt.db.datasets import MIMIC_III, MIMIC_IV, RELEASES
from icurt.db.load_lock import load_application_name, schema_load_lock, staging_schema
from icurt.db.schema import add_keys, column_names, create_index_sql, create_table_sql, recreate_schema
from icurt.db.stamp import write_load_stamp
from icurt.errors import IcurtError

log = logging.getLogger("icurt")

# Small tables first, so a broken download of a small file fails in seconds.
LOAD_ORDER = ("patients", "admissions", "icustays", "d_items", "d_labitems", "labevents", "chartevents")
MIMIC_IV_MODULES = ("hosp", "icu")
COPY_CHUNK_BYTES = 1 << 20
PROGRESS_EVERY_S = 30.0
_QUOTE, _NEWLINE = ord('"'), ord("\n")


@dataclass(frozen=True)
class TableLoad:
    table: str
    rows: int
    megabytes: float
    seconds: float


def load_csv(cfg: Config, folder: str | Path) -> dict[str, TableLoad]:
    """Load the seven MIMIC-III tables from `folder` into schema [db].schema, replacing it; or, when
    `folder` holds hosp/ and icu/, MIMIC-IV's seven into [db].hosp_schema and [db].icu_schema.

    IcurtError for a missing or damaged file, and (one line naming it) while another load of the same
    schema is in progress."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise IcurtError(f"{folder} is not a folder; pass the folder holding PhysioNet's MIMIC-III CSV files "
                         "(or MIMIC-IV's release folder, holding hosp/ and icu/)")
    dataset = dataset_of_folder(folder)
    if dataset == MIMIC_IV:
        files = {table: find_table_file(folder / schema_iv.module_of(table), table, dataset) for table in LOAD_ORDER}
        module_schema = {"hosp": cfg.db.hosp_schema, "icu": cfg.db.icu_schema}
        schemas = {table: module_schema[schema_iv.module_of(table)] for table in LOAD_ORDER}
        if cfg.db.dataset != MIMIC_IV:
            log.warning("loading MIMIC-IV; set [db].dataset = \"mimic-iv\" (or pass --set db.dataset=mimic-iv) "
                        "for the queries to read it")
    else:
        files = {table: find_table_file(folder, table) for table in LOAD_ORDER}
        schemas = {table: cfg.db.schema for table in LOAD_ORDER}
    for table, path in files.items():
        check_header(path, table, dataset)
    staging = {schema: staging_schema(schema) for schema in dict.fromkeys(schemas.values())}
    started = time.perf_counter()
    loads: dict[str, TableLoad] = {}
    with connection(cfg, application_name=load_application_name("db load-csv")) as conn, ExitStack() as locks:
        for schema in sorted(staging):   # always in one order: two loads never deadlock
            locks.enter_context(schema_load_lock(conn, schema))
        try:
            with conn.cursor() as cur:
                for name in staging.values():
                    recreate_schema(cur, name)
            conn.commit()
            for table in LOAD_ORDER:
                loads[table] = load_table(conn, staging[schemas[table]], table, files[table], dataset)
            _replace_schemas(conn, staging, source=f"icurt db load-csv {folder.resolve()}")
        except BaseException:
            for name in staging.values():
                _drop_quietly(conn, name)
            raise
    log.info("%s loaded from %s in %.0f s (%s)", ", ".join(staging), folder, time.perf_counter() - started,
             ", ".join(f"{t.table} {t.rows:,}" for t in loads.values()))
    return loads


def dataset_of_folder(folder: Path) -> str:
    """MIMIC_IV when `folder` holds hosp/ and icu/ (MIMIC-IV's release layout), else MIMIC_III."""
    return MIMIC_IV if all((folder / module).is_dir() for module in MIMIC_IV_MODULES) else MIMIC_III


def find_table_file(folder: Path, table: str, dataset: str = MIMIC_III) -> Path:
    """NAME.csv or NAME.csv.gz in `folder`, in any letter case (the plain file when both exist)."""
    found = {p.name.lower(): p for p in sorted(folder.iterdir()) if p.is_file()}
    for name in (f"{table}.csv", f"{table}.csv.gz"):
        if name in found:
            return found[name]
    if dataset == MIMIC_IV:
        raise IcurtError(f"{folder} has no {table}.csv.gz or {table}.csv; download "
                         f"{folder.name}/{table}.csv.gz of MIMIC-IV (v2.2 or later) from PhysioNet into that folder")
    raise IcurtError(f"{folder} has no {table.upper()}.csv or {table.upper()}.csv.gz; download "
                     f"{table.upper()}.csv.gz of MIMIC-III v1.4 from PhysioNet into that folder")


def check_header(path: Path, table: str, dataset: str = MIMIC_III) -> None:
    """The file's header must name the table's columns in order (letter case aside)."""
    try:
        with _open(path) as raw:
            first_line = raw.readline().decode("utf-8-sig", errors="replace")
    except (OSError, EOFError, zlib.error) as exc:
        raise IcurtError(f"{path} cannot be read ({type(exc).__name__}: {exc}); the file is damaged, "
                         "download it again") from None
    if not first_line.strip():
        raise IcurtError(f"{path} is empty or has no header line; download it again from PhysioNet")
    header = [name.strip().lower() for name in next(csv.reader([first_line]), [])]
    expected = column_names(table, dataset)
    if header == expected:
        return
    for position, (got, want) in enumerate(zip(header, expected), start=1):
        if got != want:
            problem = f"column {position} is '{got}' where '{want}' is expected"
            break
    else:
        problem = (f"column '{expected[len(header)]}' is missing" if len(header) < len(expected)
                   else f"has an extra column '{header[len(expected)]}'")
    name = table.upper() if dataset == MIMIC_III else table
    raise IcurtError(f"{path}: the header {problem}; this is not {RELEASES[dataset]}'s {name} "
                     "table, replace it with PhysioNet's file")


def load_table(conn, schema: str, table: str, path: Path, dataset: str = MIMIC_III) -> TableLoad:
    """Create `schema.table`, COPY the file into it, check the row count, key, index and analyse it.

    IcurtError (naming the file) for a file without data rows and for a duplicated key.
    """
    started = time.perf_counter()
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    columns = sql.SQL(", ").join(map(sql.Identifier, column_names(table, dataset)))
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true, NULL '')").format(target, columns)
    with conn.cursor() as cur, _open(path) as raw:
        cur.execute(create_table_sql(schema, table, dataset))
        reader = CountingReader(raw, table)
        try:
            cur.copy_expert(copy, reader, size=COPY_CHUNK_BYTES)
        except psycopg2.Error as exc:
            raise _copy_error(exc, reader, path) from None
        copied = cur.rowcount
        data_rows = reader.counter.records - 1
        if copied != data_rows:
            raise IcurtError(f"{path}: PostgreSQL loaded {copied:,} rows but the file holds {data_rows:,} "
                             "CSV records; the file may be truncated or damaged, replace it")
        if copied == 0:
            name = table.upper() if dataset == MIMIC_III else table
            raise IcurtError(f"{path} holds no data rows (only its header); icurt needs the {name} "
                             f"table of {RELEASES[dataset]} with its rows, download the file again from PhysioNet")
        try:
            add_keys(cur, schema, table, dataset)
        except IcurtError as duplicate:
            raise IcurtError(f"{path}: {duplicate}; remove the duplicate (or download the file again) "
                             "and rerun `icurt db load-csv`") from None
        for statement in create_index_sql(schema, table, dataset):
            cur.execute(statement)
        cur.execute(sql.SQL("ANALYZE {}").format(target))
    conn.commit()
    loaded = TableLoad(table, copied, round(reader.bytes_read / 1e6, 1), round(time.perf_counter() - started, 1))
    log.info("%-11s %12s rows  %9.1f MB  %7.1f s", table, f"{loaded.rows:,}", loaded.megabytes, loaded.seconds)
    return loaded


class CsvRecordCounter:
    """Counts CSV records in a byte stream fed in chunks: newlines outside quoted fields.

    A doubled quote ("") inside a quoted field toggles the quote state twice, so counting quote
    characters before each newline tells whether that newline ends a record.
    """

    def __init__(self):
        self.newlines = 0
        self.in_quotes = False
        self.last_byte = b""

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        data = np.frombuffer(chunk, dtype=np.uint8)
        newlines = np.flatnonzero(data == _NEWLINE)
        quotes = np.flatnonzero(data == _QUOTE)
        if len(quotes) == 0:
            self.newlines += 0 if self.in_quotes else len(newlines)
        else:
            quotes_before = np.searchsorted(quotes, newlines) + int(self.in_quotes)
            self.newlines += int(np.count_nonzero(quotes_before % 2 == 0))
            self.in_quotes = (int(self.in_quotes) + len(quotes)) % 2 == 1
        self.last_byte = chunk[-1:]

    @property
    def records(self) -> int:
        """Records seen so far, a last line without its newline included."""
        unterminated = self.last_byte not in (b"", b"\n")
        return self.newlines + int(unterminated)


class CountingReader:
    """A binary file wrapper for COPY FROM STDIN that counts records and bytes, logging progress."""

    def __init__(self, raw: io.BufferedIOBase, table: str):
        self.raw, self.table = raw, table
        self.counter = CsvRecordCounter()
        self.bytes_read = 0
        self.error: BaseException | None = None
        self.started = self.reported = time.perf_counter()

    def read(self, size: int = -1) -> bytes:
        try:
            chunk = self.raw.read(size)
        except BaseException as exc:   # psycopg2 reports it as a cancelled COPY; keep the cause
            self.error = exc
            raise
        self.counter.feed(chunk)
        self.bytes_read += len(chunk)
        now = time.perf_counter()
        if now - self.reported >= PROGRESS_EVERY_S:
            self.reported = now
            log.info("%s: %s rows so far (%.0f MB, %.0f s)", self.table, f"{self.counter.records - 1:,}",
                     self.bytes_read / 1e6, now - self.started)
        return chunk


def _copy_error(exc: psycopg2.Error, reader: CountingReader, path: Path) -> BaseException:
    """What went wrong in COPY, as the user can fix it; reading errors keep their own type."""
    if reader.error is not None:
        if isinstance(reader.error, (OSError, EOFError, zlib.error)):
            return IcurtError(f"{path} cannot be read ({type(reader.error).__name__}: {reader.error}); "
                              "the file is damaged or truncated, download it again")
        return reader.error
    if isinstance(exc, (psycopg2.DataError, psycopg2.IntegrityError)):
        context = (exc.diag.context or "").strip().splitlines()
        where = f" at {context[0]}" if context else ""
        return IcurtError(f"{path}: {exc.diag.message_primary}{where}; the file is damaged or not "
                          "PhysioNet's MIMIC-III v1.4 or MIMIC-IV file, replace it")
    return exc


def _open(path: Path) -> io.BufferedIOBase:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _replace_schemas(conn, staging: dict[str, str], source: str) -> None:
    """Swap every staging schema in for its target ({target: staging}), stamped with one load id,
    in one transaction."""
    load_id = None
    with conn.cursor() as cur:
        for schema, loaded in staging.items():
            load_id = write_load_stamp(cur, loaded, source, load_id=load_id)
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
            if cur.fetchone() is not None:
                log.warning("replacing schema %s with the tables just loaded", schema)
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            cur.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(loaded), sql.Identifier(schema)))
    conn.commit()


def _drop_quietly(conn, staging: str) -> None:
    """Roll back and drop the staging schema; a dead connection leaves it for the next load to drop."""
    try:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(staging)))
        conn.commit()
    except psycopg2.Error:
        pass
