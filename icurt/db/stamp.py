"""What the query stage read: a load stamp that every icurt load writes into its schema, and a cheap
fingerprint of a schema's contents that `icurt run` compares before it reuses a query run."""

from __future__ import annotations

import secrets
from datetime import timezone

from psycopg2 import sql

STAMP_TABLE = "icurt_load"
# Small tables whose row count and largest row_id change with any load of MIMIC-III; chartevents
# (330 M rows on full MIMIC-III) is never counted.
SMALL_TABLES = ("patients", "admissions", "icustays")


def write_load_stamp(cur, schema: str, source: str, load_id: str | None = None) -> str:
    """Create `schema`.icurt_load holding one row about this load (call it inside the load's
    transaction); returns the load id (new unless given: a load of several schemas stamps each
    with the same id)."""
    load_id = load_id or secrets.token_hex(8)
    table = sql.Identifier(schema, STAMP_TABLE)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    cur.execute(sql.SQL("CREATE TABLE {} (loaded_at TIMESTAMPTZ NOT NULL, load_id TEXT NOT NULL, "
                        "source TEXT NOT NULL)").format(table))
    cur.execute(sql.SQL("INSERT INTO {} VALUES (now(), %s, %s)").format(table), (load_id, source))
    return load_id


def source_fingerprint(conn, schema) -> dict | None:
    """A JSON-ready fingerprint of what the queries read from `schema` (a MIMIC-III schema name, or an
    icurt.db.datasets.QuerySource): its load stamp when icurt loaded it, else (a database icurt did
    not load) the row count and largest id (row_id; MIMIC-IV: subject_id, hadm_id, stay_id) of each
    of SMALL_TABLES. MIMIC-IV's two schemas count as loaded by icurt when both carry a stamp. None
    when the tables are missing (the query's own checks say what is wrong). psycopg2 errors other
    than a missing table propagate."""
    with conn.cursor() as cur:
        if isinstance(schema, str):
            found = _fingerprint(cur, conn, schema)
        else:
            found = _fingerprint_of_source(cur, conn, schema)
    conn.commit()
    return found


def describe_fingerprint(fingerprint: dict | None) -> str:
    """The fingerprint in words, e.g. "loaded 2025-01-02T03:04:05+00:00 by icurt db synth (…)"."""
    if fingerprint is None:
        return "its tables cannot be read"
    if "load_id" in fingerprint:
        return f"loaded {fingerprint['loaded_at']} by {fingerprint['source']}"
    key = "id" if "ids" in fingerprint else "row_id"
    return "not loaded by icurt; " + ", ".join(f"{table} {count:,} rows up to {key} {top}"
                                               for table, (count, top) in fingerprint["rows"].items())


def _fingerprint(cur, conn, schema: str) -> dict | None:
    stamp = _stamp(cur, conn, schema)
    if stamp is not None:
        return stamp
    return _rows(cur, conn, {table: (schema, "row_id") for table in SMALL_TABLES})


def _fingerprint_of_source(cur, conn, source) -> dict | None:
    if len(source.schemas) == 1:
        return _fingerprint(cur, conn, source.schemas[0])
    stamps = [_stamp(cur, conn, schema) for schema in source.schemas]
    if all(stamps):
        first = stamps[0]
        if all(stamp["load_id"] == first["load_id"] for stamp in stamps):
            return first
        return {"loaded_at": max(stamp["loaded_at"] for stamp in stamps),
                "load_id": "+".join(stamp["load_id"] for stamp in stamps),
                "source": "; ".join(dict.fromkeys(stamp["source"] for stamp in stamps))}
    found = _rows(cur, conn, {table: (source.schema_of(table), _ID_COLUMN[table]) for table in SMALL_TABLES})
    return found and {**found, "ids": _ID_COLUMN}


# MIMIC-IV has no row_id: its small tables are counted by their keys.
_ID_COLUMN = {"patients": "subject_id", "admissions": "hadm_id", "icustays": "stay_id"}


def _stamp(cur, conn, schema: str) -> dict | None:
    if not _exists(cur, conn, schema, STAMP_TABLE):
        return None
    cur.execute(sql.SQL("SELECT loaded_at, load_id, source FROM {} ORDER BY loaded_at DESC LIMIT 1").format(
        sql.Identifier(schema, STAMP_TABLE)))
    stamp = cur.fetchone()
    if stamp is None:
        return None
    loaded_at = stamp[0].astimezone(timezone.utc).isoformat(timespec="seconds")
    return {"loaded_at": loaded_at, "load_id": stamp[1], "source": stamp[2]}


def _rows(cur, conn, tables: dict[str, tuple[str, str]]) -> dict | None:
    """{"rows": {table: [count, largest id]}} of (schema, id column) per table; None if one is missing."""
    if not all(_exists(cur, conn, schema, table) for table, (schema, _) in tables.items()):
        return None
    rows = {}
    for table, (schema, key) in tables.items():
        cur.execute(sql.SQL("SELECT count(*), max({}) FROM {}").format(sql.Identifier(key),
                                                                       sql.Identifier(schema, table)))
        rows[table] = list(cur.fetchone())
    return {"rows": rows}


def _exists(cur, conn, schema: str, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, table).as_string(conn),))
    return cur.fetchone()[0] is not None
