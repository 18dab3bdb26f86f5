"""One place that hands out psycopg2 connections: to the DSN in config, or to the embedded server."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator

from icurt.config import Config
from icurt.dsn import libpq_dsn, redact_dsn
from icurt.db.server import create_database_if_missing, embedded_server
from icurt.errors import IcurtError
from icurt.ray_job import refuse_embedded_server_in_job

log = logging.getLogger("icurt")


def resolve_dsn(cfg: Config) -> str:
    """The configured DSN, or the embedded server's URL (starting the server if it is down, and
    saying so: it keeps running for later commands unless the command fails). Inside a Ray job an
    empty DSN is an IcurtError (icurt/ray_job.py)."""
    if cfg.db.dsn:
        return cfg.db.dsn
    refuse_embedded_server_in_job()
    server = embedded_server(cfg.paths.data, cfg.db.embedded_port)
    was_running = server.status().running
    url = server.start()
    if not was_running:
        log.info("no DSN configured: started the embedded PostgreSQL at %s (data in %s); it keeps "
                 "running for later commands (`icurt db stop` stops it)", url, server.pgdata)
    return url


DSN_FIX = ("check the DSN (ICURT_DSN or [db].dsn) and that the server is up, or leave the DSN empty to "
           "use the embedded server")
OPTUNA_DSN_FIX = ("check the Optuna DSN (ICURT_OPTUNA_DSN or [db].optuna_dsn) and that the server is up, "
                  "or leave it empty to keep the studies on the server of [db].dsn (or the embedded one)")


def connect(dsn: str, *, readonly: bool = False, timeout_s: int = 5, fix: str = DSN_FIX,
            application_name: str = "icurt"):
    """A psycopg2 connection; an unreachable or malformed DSN is an IcurtError (password redacted)
    ending in `fix`, which names the setting the DSN came from. `application_name` is what
    pg_stat_activity shows for it (a load names itself there, icurt.db.load_lock)."""
    import psycopg2

    try:
        conn = psycopg2.connect(libpq_dsn(dsn), connect_timeout=timeout_s, application_name=application_name)
    except psycopg2.Error as exc:
        reason = redact_dsn(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        raise IcurtError(f"cannot connect to PostgreSQL at {redact_dsn(dsn)}: {reason}; {fix}") from None
    if readonly:
        conn.set_session(readonly=True)
    return conn


@contextmanager
def connection(cfg: Config, *, readonly: bool = False, application_name: str = "icurt") -> Iterator:
    """A connection for the configured database, committed on success and always closed."""
    conn = connect(resolve_dsn(cfg), readonly=readonly, timeout_s=cfg.db.connect_timeout_s,
                   application_name=application_name)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


OPTUNA_DATABASE = "optuna"


def optuna_storage_url(cfg: Config) -> str:
    """SQLAlchemy URL of the PostgreSQL database that keeps Optuna studies.

    [db].optuna_dsn if set; else [db].dsn; else an "optuna" database on the embedded server,
    so a read-only MIMIC-III copy never receives Optuna's tables unless asked.
    """
    dsn = cfg.db.optuna_dsn or cfg.db.dsn
    if not dsn:
        server_url = resolve_dsn(cfg)
        _ensure_database(server_url, OPTUNA_DATABASE)
        dsn = embedded_optuna_dsn(server_url)
    url = sqlalchemy_url(dsn)
    connect(dsn, timeout_s=cfg.db.connect_timeout_s, fix=OPTUNA_DSN_FIX if cfg.db.optuna_dsn else DSN_FIX).close()
    return url


def embedded_optuna_dsn(server_url: str) -> str:
    """The Optuna database on the embedded server at `server_url`."""
    return server_url.rsplit("/", 1)[0] + "/" + OPTUNA_DATABASE


def sqlalchemy_url(dsn: str) -> str:
    """The SQLAlchemy URL (what Optuna and optuna-dashboard take) of a postgresql:// DSN."""
    if "://" not in dsn:
        raise IcurtError("the Optuna storage needs a URL-style DSN (postgresql://user:pass@host/db); "
                         "set [db].optuna_dsn")
    return "postgresql+psycopg2://" + libpq_dsn(dsn).split("://", 1)[1]


def _ensure_database(server_url: str, name: str) -> None:
    conn = connect(server_url)
    try:
        create_database_if_missing(conn, name)
    finally:
        conn.close()
