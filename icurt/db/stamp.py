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


def write_load_stamp(cur, schema: str, source: str) -> str:
    """Create `schema`.icurt_load holding one row about this load (call it inside the load's
    transaction); returns the new load id."""
    load_id = secrets.token_hex(8)
    table = sql.Identifier(schema, STAMP_TABLE)
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    cur.execute(sql.SQL("CREATE TABLE {} (loaded_at TIMESTAMPTZ NOT NULL, load_id TEXT NOT NULL, "
                        "source TEXT NOT NULL)").format(table))
    cur.execute(sql.SQL("INSERT INTO {} VALUES (now(), %s, %s)").format(table), (load_id, source))
    return load_id


def source_fingerprint(conn, schema: str) -> dict | None:
    """A JSON-ready fingerprint of what the queries read from `schema`: its load stamp when icurt
    loaded it, else (a database icurt did not load) the row count and largest row_id of each of
    SMALL_TABLES. None when the schema lacks those tables (the query's own checks say what is wrong).
    psycopg2 errors other than a missing table propagate."""
    with conn.cursor() as cur:
        found = _fingerprint(cur, conn, schema)
    conn.commit()
    return found


def describe_fingerprint(fingerprint: dict | None) -> str:
    """The fingerprint in words, e.g. "loaded 2025-01-02T03:04:05+00:00 by icurt db synth (…)"."""
    if fingerprint is None:
        return "its tables cannot be read"
    if "load_id" in fingerprint:
        return f"loaded {fingerprint['loaded_at']} by {fingerprint['source']}"
    return "not loaded by icurt; " + ", ".join(f"{table} {count:,} rows up to row_id {top}"
                                               for table, (count, top) in fingerprint["rows"].items())


def _fingerprint(cur, conn, schema: str) -> dict | None:
    if _exists(cur, conn, schema, STAMP_TABLE):
        cur.execute(sql.SQL("SELECT loaded_at, load_id, source FROM {} ORDER BY loaded_at DESC LIMIT 1").format(
            sql.Identifier(schema, STAMP_TABLE)))
        stamp = cur.fetchone()
        if stamp is not None:
            loaded_at = stamp[0].astimezone(timezone.utc).isoformat(timespec="seconds")
            return {"loaded_at": loaded_at, "load_id": stamp[1], "source": stamp[2]}
    if not all(_exists(cur, conn, schema, table) for table in SMALL_TABLES):
        return None
    rows = {}
    for table in SMALL_TABLES:
        cur.execute(sql.SQL("SELECT count(*), max(row_id) FROM {}").format(sql.Identifier(schema, table)))
        rows[table] = list(cur.fetchone())
    return {"rows": rows}


def _exists(cur, conn, schema: str, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, table).as_string(conn),))
    return cur.fetchone()[0] is not None
