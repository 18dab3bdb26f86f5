"""Stage 1, `icurt query`: the four MIMIC-III queries (sql/*.sql) run read-only into the Parquet
files of a query run (icurt/db/query.py streams each one). The connection, schema, tables, columns
and feature items are checked before the run folder is made."""

from __future__ import annotations

import logging

from icurt.config import Config
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")
STAGE = "query"
STATS_FILE = "query_stats.json"


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, csv: bool = False) -> Run:
    """Run the four queries into a new query run (`csv`, or [query].csv: CSV files too)."""
    from dataclasses import asdict

    from icurt.db.connection import connection
    from icurt.db.query import QUERIES, check_database, export_query
    from icurt.db.stamp import source_fingerprint as fingerprint_of
    from icurt.files import write_json

    csv = csv or cfg.query.csv
    with connection(cfg, readonly=True) as conn:
        check_database(conn, cfg.db.schema)  # a wrong DSN, schema or table leaves no run folder
        # Taken before the queries: a load while they run leaves the older stamp, so the run is not reused.
        source = fingerprint_of(conn, cfg.db.schema)
        with store.create(STAGE, cfg, extra_meta={"source": source}) as writer:
            stats = {}
            for number, name in enumerate(QUERIES, start=1):
                stats[name] = export_query(conn, cfg, name, writer.path, csv=csv)
                log.info("query [%d/%d] %s: %s rows, query %.1f s, write %.1f s", number, len(QUERIES), name,
                         f"{stats[name].rows:,}", stats[name].query_s, stats[name].write_s)
            write_json(writer.path / STATS_FILE, {name: asdict(s) for name, s in stats.items()})
    return writer.run


def source_fingerprint(cfg: Config) -> dict | None:
    """The fingerprint of the schema the queries read (icurt.db.stamp); None when it cannot be read
    (then the query itself says why). IcurtError when the database cannot be reached."""
    import psycopg2

    from icurt.db.connection import connection
    from icurt.db.stamp import source_fingerprint as fingerprint_of

    try:
        with connection(cfg, readonly=True) as conn:
            return fingerprint_of(conn, cfg.db.schema)
    except psycopg2.Error:
        return None


def describe_source(fingerprint: dict | None) -> str:
    from icurt.db.stamp import describe_fingerprint

    return describe_fingerprint(fingerprint)


def show(run: Run, cfg: Config) -> str:
    from icurt.files import read_json

    stats = read_json(run.file(STATS_FILE))
    lines = [f"query run {run.run_id}", f"{'query':<16}{'rows':>12}{'query s':>10}{'write s':>10}"]
    lines += [f"{name:<16}{s['rows']:>12,}{s['query_s']:>10.1f}{s['write_s']:>10.1f}" for name, s in stats.items()]
    return "\n".join(lines)
