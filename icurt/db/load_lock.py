"""One writer per schema: `icurt db load-csv` and `icurt db synth` hold a PostgreSQL advisory lock on
the target schema for the whole load, on the loading connection, so a second load of the same schema
refuses at once, naming the one in progress. The lock is a session lock: commits and rollbacks keep
it, and PostgreSQL releases it when the connection ends, a killed load's included, so a stopped load
never blocks the next. Whoever holds it is read from pg_stat_activity (the load names itself in its
application_name, `load_application_name`). Advisory locks are per database, as schemas are.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from contextlib import contextmanager
from typing import Iterator

import psycopg2
from psycopg2 import sql

from icurt.errors import IcurtError

log = logging.getLogger("icurt")

LOCK_NAMESPACE = "icurt-load"     # the lock's first key: hashtext of this; its second: hashtext(schema)
STAGING_INFIX = "__loading"
STAGING_SUFFIX_BYTES = 3          # <schema>__loading_<6 hex digits>
MAX_NAME_BYTES = 63               # PostgreSQL silently truncates longer names
_HOLDER = """
    SELECT a.application_name, a.pid, a.backend_start
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND l.classid = hashtext(%s)::oid AND l.objid = hashtext(%s)::oid
     LIMIT 1"""


def load_application_name(command: str) -> str:
    """What pg_stat_activity shows for a load's connection, e.g. "icurt db load-csv (pid 4242)"."""
    return f"icurt {command} (pid {os.getpid()})"[:MAX_NAME_BYTES]


def staging_schema(schema: str) -> str:
    """A staging schema of this load's own, `<schema>__loading_<random>`; IcurtError when `schema` is
    too long to leave room for the suffix."""
    suffix = f"{STAGING_INFIX}_{secrets.token_hex(STAGING_SUFFIX_BYTES)}"
    if len((schema + suffix).encode()) > MAX_NAME_BYTES:
        raise IcurtError(f"schema name '{schema}' is too long to load into (at most "
                         f"{MAX_NAME_BYTES - len(suffix)} bytes); set a shorter [db].schema")
    return schema + suffix


@contextmanager
def schema_load_lock(conn, schema: str) -> Iterator[None]:
    """Hold `schema`'s load lock on `conn` for the block, after dropping the staging schemas that
    stopped loads of it left (no live load holds them: it would hold the lock).

    IcurtError, one line naming the load in progress, when another connection holds the lock (the
    connection's open transaction is then rolled back). Call it with autocommit off or on; it opens
    no transaction of its own beyond the caller's.
    """
    if not _try_lock(conn, schema):
        holder = _holder(conn, schema)
        if holder is not None or not _try_lock(conn, schema):   # not found: it just finished, try once more
            conn.rollback()
            raise IcurtError(f"schema {schema} is being loaded by another icurt load ({holder or 'holder unknown'}); "
                             "wait for it to finish, or load into another schema (--set db.schema=NAME)")
    try:
        _drop_stale_staging(conn, schema)
        yield
    finally:
        _unlock(conn, schema)


def _try_lock(conn, schema: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(hashtext(%s), hashtext(%s))", (LOCK_NAMESPACE, schema))
        return bool(cur.fetchone()[0])


def _holder(conn, schema: str) -> str | None:
    """ "icurt db synth (pid 4242), started 14:05" for the connection that holds the lock."""
    with conn.cursor() as cur:
        cur.execute(_HOLDER, (LOCK_NAMESPACE, schema))
        row = cur.fetchone()
    if row is None:
        return None
    name, backend_pid, started = row
    who = name if name and name.startswith("icurt ") else f"PostgreSQL connection pid {backend_pid}"
    return f"{who}, started {started.astimezone().strftime('%H:%M')}" if started else who


def _drop_stale_staging(conn, schema: str) -> None:
    prefix = schema + STAGING_INFIX
    stale = re.compile(re.escape(prefix) + r"(_[0-9a-f]+)?")
    with conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s", (len(prefix), prefix))
        for (name,) in cur.fetchall():
            if stale.fullmatch(name):
                log.warning("dropping staging schema %s that a stopped load of %s left", name, schema)
                cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def _unlock(conn, schema: str) -> None:
    """Release the lock; a connection that broke has lost it already."""
    if conn.closed:
        return
    try:
        if conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_INERROR:
            conn.rollback()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(hashtext(%s), hashtext(%s))", (LOCK_NAMESPACE, schema))
        if not conn.autocommit:
            conn.commit()
    except psycopg2.Error:
        pass
