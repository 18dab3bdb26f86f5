"""Whether the configured schema already holds the synthetic cohort asked for."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from psycopg2 import sql

from icurt.config import Config
from icurt.db.connection import connection
from icurt.db.datasets import synth_schema

log = logging.getLogger("icurt")


def synthetic_cohort_info(cfg: Config) -> dict[str, str]:
    """The key/value rows synth stored next to the cohort ({} when the schema holds none): in
    [db].schema, or for MIMIC-IV in [db].icu_schema."""
    schema = synth_schema(cfg.db)
    with connection(cfg) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, "icurt_synth_info").as_string(conn),))
        if cur.fetchone()[0] is None:
            return {}
        cur.execute(sql.SQL("SELECT key, value FROM {}.icurt_synth_info").format(sql.Identifier(schema)))
        return dict(cur.fetchall())


def ensure_synthetic_cohort(cfg: Config, stays: int, seed: int, fresh: bool = False) -> bool:
    """Build the cohort unless the schema already holds this one; True when it was (re)built."""
    from icurt.db.synth.cohort import check_cohort_request, run_synth

    check_cohort_request(stays, seed)  # before the database is touched
    info = synthetic_cohort_info(cfg)
    if not fresh and info.get("stays") == str(stays) and info.get("seed") == str(seed):
        log.info("synthetic cohort of %d stays (seed %d) already in schema %s", stays, seed,
                 synth_schema(cfg.db))
        return False
    run_synth(cfg, stays=stays, seed=seed)
    return True


def truth_of_stays(cfg: Config, stay_ids: np.ndarray, labels: np.ndarray) -> pd.DataFrame | None:
    """oracle_probability (and ceiling_probability where synth stored it) of each stay, indexed by
    icustay_id, when the configured schema holds synth's truth for exactly these stays: every stay
    present and every label equal to the stored death (else the schema was rebuilt since, and the
    truth belongs to another cohort). None otherwise; never starts the embedded server."""
    from icurt.db.server import embedded_server
    from icurt.db.synth.cohort import read_synth_truth

    if not cfg.db.dsn and not embedded_server(cfg.paths.data, cfg.db.embedded_port).status().running:
        return None
    if not synthetic_cohort_info(cfg):
        return None
    with connection(cfg, readonly=True) as conn:
        truth, _ = read_synth_truth(conn, synth_schema(cfg.db))
    truth = truth.set_index("icustay_id")
    stays = pd.Index(np.asarray(stay_ids))
    if not stays.isin(truth.index).all():
        log.info("synthetic truth in schema %s lacks some stays of this dataset; no oracle comparison",
                 synth_schema(cfg.db))
        return None
    matched = truth.loc[stays]
    if not np.array_equal(matched["died"].to_numpy(), np.asarray(labels)):
        log.info("synthetic truth in schema %s disagrees with this dataset's labels (rebuilt since?); "
                 "no oracle comparison", synth_schema(cfg.db))
        return None
    columns = [c for c in ("oracle_probability", "ceiling_probability") if c in matched]
    return matched[columns]
