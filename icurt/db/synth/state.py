"""Whether the configured schema already holds the synthetic cohort asked for."""

from __future__ import annotations

import logging

from psycopg2 import sql

from icurt.config import Config
from icurt.db.connection import connection

log = logging.getLogger("icurt")


def synthetic_cohort_info(cfg: Config) -> dict[str, str]:
    """The key/value rows synth stored next to the cohort ({} when the schema holds none)."""
    with connection(cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f'"{cfg.db.schema}".icurt_synth_info',))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute(sql.SQL("SELECT key, value FROM {}.icurt_synth_info").format(
            sql.Identifier(cfg.db.schema)))
        return dict(cur.fetchall())


def ensure_synthetic_cohort(cfg: Config, stays: int, seed: int, fresh: bool = False) -> bool:
    """Build the cohort unless the schema already holds this one; True when it was (re)built."""
    from icurt.db.synth.cohort import check_cohort_request, run_synth

    check_cohort_request(stays, seed)  # before the database is touched
    info = synthetic_cohort_info(cfg)
    if not fresh and info.get("stays") == str(stays) and info.get("seed") == str(seed):
        log.info("synthetic cohort of %d stays (seed %d) already in schema %s", stays, seed,
                 cfg.db.schema)
        return False
    run_synth(cfg, stays=stays, seed=seed)
    return True
