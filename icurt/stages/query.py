"""Stage 1, `icurt query`: the four queries of the configured dataset ([db].dataset: MIMIC-III,
sql/mimic-iii/*.sql, or MIMIC-IV, sql/mimic-iv/*.sql) run read-only into the Parquet files of a
query run (icurt/db/query.py streams each one). The connection, schemas, tables, columns and
feature items are checked before the run folder is made; run.json's `dataset` says what was read."""

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
    from icurt.db.datasets import query_source
    from icurt.db.query import QUERIES, check_database, export_query
    from icurt.db.stamp import source_fingerprint as fingerprint_of
    from icurt.files import write_json

    csv = csv or cfg.query.csv
    reads = query_source(cfg.db)
    with connection(cfg, readonly=True) as conn:
        check_database(conn, reads)  # a wrong DSN, schema or table leaves no run folder
        # Taken before the queries: a load while they run leaves the older stamp, so the run is not reused.
        source = fingerprint_of(conn, reads)
        dataset = {"dataset": reads.dataset, "release": reads.release, "schemas": list(reads.schemas)}
        with store.create(STAGE, cfg, extra_meta={"source": source, "dataset": dataset}) as writer:
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
    from icurt.db.datasets import query_source
    from icurt.db.stamp import source_fingerprint as fingerprint_of

    try:
        with connection(cfg, readonly=True) as conn:
            return fingerprint_of(conn, query_source(cfg.db))
    except psycopg2.Error:
        return None


def describe_source(fingerprint: dict | None) -> str:
    from icurt.db.stamp import describe_fingerprint

    return describe_fingerprint(fingerprint)


def show(run: Run, cfg: Config) -> str:
    from icurt.files import read_json

    stats = read_json(run.file(STATS_FILE))
    lines = [f"query run {run.run_id}", f"dataset: {describe_dataset(run.meta)}",
             f"{'query':<16}{'rows':>12}{'query s':>10}{'write s':>10}"]
    lines += [f"{name:<16}{s['rows']:>12,}{s['query_s']:>10.1f}{s['write_s']:>10.1f}" for name, s in stats.items()]
    return "\n".join(lines)


def describe_dataset(meta: dict) -> str:
    """The dataset a query run read, in words, from its run.json (or a preprocess run's, which copies
    it): "MIMIC-IV v2.2+ (schemas mimiciv_hosp, mimiciv_icu)"; runs made before this was recorded
    read MIMIC-III."""
    dataset = meta.get("dataset") or {"release": "MIMIC-III v1.4 (recorded before [db].dataset existed)",
                                      "schemas": []}
    schemas = dataset.get("schemas") or []
    where = f" (schema{'s' if len(schemas) > 1 else ''} {', '.join(schemas)})" if schemas else ""
    return f"{dataset['release']}{where}"
