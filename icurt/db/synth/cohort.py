"""`icurt db synth`: a synthetic, MIMIC-III-shaped cohort with a planted mortality signal.

generate_cohort draws the seven tables (pure numpy/pandas); load_cohort replaces the schema with
them in one transaction, COPYing CSV that pyarrow writes in a background thread, and stores each
stay's latent severity, the oracle's probability (it knows the severity) and the achievable
ceiling's (what the first 48 h of measurements carry, ceiling.py) next to them, with both AUROCs
(icurt_synth_truth, icurt_synth_info).

Left whole at ~330 lines: drawing the cohort and storing it with its truth are the one job of
`icurt db synth`; a loader apart would import SynthCohort back from here for little gain.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from psycopg2 import sql

from icurt.db.synth import events, hospital, skeleton
from icurt.db.load_lock import load_application_name, schema_load_lock
from icurt.db.synth.ceiling import Evidence, ceiling_probability
from icurt.db.synth.frame_copy import copy_frame
from icurt.db.synth.mimic_iv import mimic4_ids, to_mimic4
from icurt.db import schema_iv
from icurt.db.datasets import MIMIC_III, MIMIC_IV
from icurt.db.schema import TABLES, add_keys, column_names, create_index_sql, create_table_sql, recreate_schema
from icurt.db.stamp import write_load_stamp
from icurt.db.synth.items import d_items_frame, d_labitems_frame
from icurt.errors import IcurtError

log = logging.getLogger("icurt")

TRUTH_TABLE = "icurt_synth_truth"
INFO_TABLE = "icurt_synth_info"
TRUTH_COLUMNS = ("icustay_id", "severity", "died", "oracle_probability", "ceiling_probability")


@dataclass(frozen=True)
class SynthCohort:
    tables: dict[str, pd.DataFrame]   # the seven MIMIC-III tables, columns as in icurt.db.schema
    truth: pd.DataFrame               # TRUTH_COLUMNS, every stay
    oracle_auroc: float               # of oracle_probability vs died on the qualifying stays
    ceiling_auroc: float              # of ceiling_probability vs died on the qualifying stays
    stays: int
    seed: int
    mortality_rate: float
    qualifying_stays: int
    qualifying_deaths: int
    evidence: Evidence | None = None  # the first 48 h of measurements as ceiling.py's sums (for diagnostics)
    dataset: str = MIMIC_III          # the schema the tables are in: MIMIC_III, or MIMIC_IV (in_mimic4)

    def info(self) -> dict[str, str]:
        """The key/value rows stored in <schema>.icurt_synth_info."""
        return {"stays": str(self.stays), "seed": str(self.seed),
                "mortality_rate": repr(self.mortality_rate), "oracle_auroc": repr(self.oracle_auroc),
                "ceiling_auroc": repr(self.ceiling_auroc),
                "qualifying_stays": str(self.qualifying_stays),
                "qualifying_deaths": str(self.qualifying_deaths), "dataset": self.dataset}


def in_mimic4(cohort: SynthCohort) -> SynthCohort:
    """The same cohort in MIMIC-IV's schema (icurt.db.synth.mimic_iv): its tables translated, the
    truth keyed by the stays' MIMIC-IV stay_id (still in the column icustay_id)."""
    if cohort.dataset == MIMIC_IV:
        return cohort
    truth = cohort.truth.assign(icustay_id=mimic4_ids(cohort.truth["icustay_id"], "icustay_id"))
    return replace(cohort, tables=to_mimic4(cohort.tables), truth=truth, dataset=MIMIC_IV)


def check_cohort_request(stays: int, seed: int) -> None:
    """IcurtError unless `stays` and `seed` lie within [synth].stays / [synth].seed's bounds."""
    from dataclasses import fields

    from icurt.config import SynthConfig

    bounds = {f.name: f.metadata for f in fields(SynthConfig)}
    low, high = bounds["stays"]["min"], bounds["stays"]["max"]
    if not low <= stays <= high:
        raise IcurtError(f"a synthetic cohort has {low:,} to {high:,} ICU stays, not {stays:,}; "
                         "pass --stays N in that range (or set [synth].stays)")
    if seed < bounds["seed"]["min"]:
        raise IcurtError(f"the synthetic cohort's seed must be >= {bounds['seed']['min']}, not {seed}; "
                         "pass --seed N (or set [synth].seed)")


def generate_cohort(stays: int, seed: int, mortality_rate: float = 0.10) -> SynthCohort:
    """Draw a cohort of exactly `stays` ICU stays; the same seed gives identical frames."""
    check_cohort_request(stays, seed)
    if not 0 < mortality_rate < 1:
        raise IcurtError(f"[synth].mortality_rate must be between 0 and 1 (got {mortality_rate})")
    skeleton_rng, tables_rng, physiology_rng, chart_rng, lab_rng = np.random.default_rng(seed).spawn(5)
    sk = skeleton.draw_skeleton(stays, skeleton_rng, mortality_rate)
    evidence = Evidence(len(sk.stays))
    phys = events.physiology(sk, physiology_rng, evidence)
    tables = {
        "patients": hospital.patients_frame(sk),
        "admissions": hospital.admissions_frame(sk, tables_rng),
        "icustays": hospital.icustays_frame(sk, tables_rng),
        "chartevents": events.chartevents_frame(sk, phys, chart_rng),
        "labevents": events.labevents_frame(sk, phys, lab_rng),
        "d_items": d_items_frame(),
        "d_labitems": d_labitems_frame(),
    }
    severity = sk.stays["severity"].to_numpy()
    truth = pd.DataFrame({
        "icustay_id": sk.stays["icustay_id"].to_numpy(np.int64), "severity": severity,
        "died": sk.admissions["died"].to_numpy()[sk.stays["admission"].to_numpy()].astype(np.int64),
        "oracle_probability": skeleton.sigmoid(sk.intercept + skeleton.MORTALITY_SLOPE * severity),
        "ceiling_probability": ceiling_probability(evidence, sk.intercept, skeleton.MORTALITY_SLOPE,
                                                   sk.patients["group"].to_numpy()[sk.stays["patient"].to_numpy()]
                                                   != skeleton.NEONATE),
    })
    qualifying = sk.stays["qualifying"].to_numpy()
    return SynthCohort(tables, truth, skeleton.oracle_auroc(truth, qualifying),
                       skeleton.oracle_auroc(truth, qualifying, "ceiling_probability"), stays, seed,
                       mortality_rate, int(qualifying.sum()), int(truth["died"].to_numpy()[qualifying].sum()),
                       evidence)


def load_cohort(conn, schema: str | dict[str, str], cohort: SynthCohort) -> dict[str, int]:
    """Replace `schema` with the cohort (tables, indexes, truth, info, load stamp) in one transaction,
    holding the schema's load lock (icurt.db.load_lock); rows per table. `schema` is a name (a
    MIMIC-III cohort) or {"hosp": name, "icu": name} (the cohort is written in MIMIC-IV's schema,
    in_mimic4; both schemas are replaced and locked, the truth and info go to the icu schema).

    Commits on success (with whatever the connection had pending) and rolls back on any failure.
    IcurtError (one line naming it) while another load of the same schema is in progress.
    """
    if isinstance(schema, dict):
        cohort, schemas = in_mimic4(cohort), {table: schema[schema_iv.module_of(table)] for table in schema_iv.TABLES}
    else:
        schemas = {table: schema for table in TABLES}
    autocommit = conn.autocommit
    if autocommit:  # one transaction, whatever mode the caller's connection is in
        conn.autocommit = False
    try:
        with ExitStack() as locks:
            for name in sorted(set(schemas.values())):  # always in one order: two loads never deadlock
                locks.enter_context(schema_load_lock(conn, name))
            try:
                counts = _load_tables(conn, schemas, cohort)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
    finally:
        if autocommit:
            conn.autocommit = True
    return counts


def _load_tables(conn, schemas: dict[str, str], cohort: SynthCohort) -> dict[str, int]:
    counts: dict[str, int] = {}
    dataset = cohort.dataset
    with conn.cursor() as cur:
        cur.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for name in dict.fromkeys(schemas.values()):
            recreate_schema(cur, name)
        for table, schema in schemas.items():
            frame = cohort.tables[table]
            if list(frame.columns) != column_names(table, dataset):
                raise IcurtError(f"synthetic table {table} has columns {list(frame.columns)}, "
                                 f"expected {column_names(table, dataset)}; regenerate the cohort")
            cur.execute(create_table_sql(schema, table, dataset))
            started = time.perf_counter()
            counts[table] = copy_frame(cur, schema, table, frame)
            log.info("synth: loaded %s.%s: %d rows in %.1f s", schema, table, counts[table],
                     time.perf_counter() - started)
        started = time.perf_counter()
        for table, schema in schemas.items():
            add_keys(cur, schema, table, dataset)
            for statement in create_index_sql(schema, table, dataset):
                cur.execute(statement)
        log.info("synth: keys and indexes built in %.1f s", time.perf_counter() - started)
        truth_schema = schemas["icustays"]
        _store_truth(cur, truth_schema, cohort)
        load_id = None
        for name in dict.fromkeys(schemas.values()):
            load_id = write_load_stamp(cur, name, f"icurt db synth ({cohort.stays} stays, seed {cohort.seed}"
                                       + (", MIMIC-IV schema)" if dataset == MIMIC_IV else ")"), load_id=load_id)
        started = time.perf_counter()
        for table, schema in schemas.items():
            cur.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
        log.info("synth: truth stored and tables analysed in %.1f s", time.perf_counter() - started)
    return counts


def read_synth_truth(conn, schema: str) -> tuple[pd.DataFrame, float]:
    """(truth per stay, oracle AUROC) stored by synth in `schema`; IcurtError when there is none.
    A schema synth built before the ceiling existed has no ceiling_probability column."""
    with conn.cursor() as cur:
        for table in (TRUTH_TABLE, INFO_TABLE):
            cur.execute("SELECT to_regclass(%s)", (sql.Identifier(schema, table).as_string(conn),))
            if cur.fetchone()[0] is None:
                raise IcurtError(f"schema {schema!r} holds no synthetic-cohort truth ({table} is missing); "
                                 "it was not built by `icurt db synth`, so there is no oracle to compare "
                                 "with")
        cur.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = %s "
                    "AND table_name = %s", (schema, TRUTH_TABLE))
        present = {row[0] for row in cur.fetchall()}
        columns = [c for c in TRUTH_COLUMNS if c in present]
        cur.execute(sql.SQL("SELECT {} FROM {}.{} ORDER BY icustay_id").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(schema),
            sql.Identifier(TRUTH_TABLE)))
        rows = cur.fetchall()
        cur.execute(sql.SQL("SELECT value FROM {}.{} WHERE key = 'oracle_auroc'").format(
            sql.Identifier(schema), sql.Identifier(INFO_TABLE)))
        auroc = cur.fetchone()
    types = {"icustay_id": np.int64, "severity": np.float64, "died": np.int64, "oracle_probability": np.float64,
             "ceiling_probability": np.float64}
    truth = pd.DataFrame(rows, columns=columns).astype({c: types[c] for c in columns})
    return truth, float(auroc[0]) if auroc else math.nan


def run_synth(cfg, stays: int, seed: int) -> dict[str, int]:
    """Generate the cohort and load it into the configured database's schema (or, when [db].dataset
    is "mimic-iv", its hosp and icu schemas, in MIMIC-IV's schema); print a summary."""
    from icurt.db.connection import connection
    from icurt.db.datasets import load_schemas

    check_cohort_request(stays, seed)
    started = time.perf_counter()
    log.info("synth: generating %d ICU stays (seed %d, mortality rate %.3f)", stays, seed,
             cfg.synth.mortality_rate)
    cohort = generate_cohort(stays, seed, cfg.synth.mortality_rate)
    generated = time.perf_counter()
    log.info("synth: generated %d rows in %.1f s", sum(map(len, cohort.tables.values())),
             generated - started)
    schemas = load_schemas(cfg.db)
    where = ", ".join(schemas.values())
    with connection(cfg, application_name=load_application_name("db synth")) as conn:
        counts = load_cohort(conn, schemas[""] if "" in schemas else schemas, cohort)
    finished = time.perf_counter()
    log.info("synth: loaded %s in %.1f s", where, finished - generated)
    release = "MIMIC-IV" if cfg.db.dataset == MIMIC_IV else "MIMIC-III"
    print(f"synthetic cohort in {release}'s schema, in {where}: {stays} ICU stays, seed {seed}")
    print(f"  qualifying stays (adult, ICU >= 48 h, with chartevents): {cohort.qualifying_stays}, "
          f"died in hospital: {cohort.qualifying_deaths} "
          f"({cohort.qualifying_deaths / max(cohort.qualifying_stays, 1):.1%})")
    for table, rows in counts.items():
        print(f"  {table:<12} {rows:>12,} rows")
    print(f"  oracle AUROC (knows each stay's severity): {cohort.oracle_auroc:.4f}")
    print(f"  achievable ceiling AUROC (what the first 48 h of measurements carry): {cohort.ceiling_auroc:.4f}")
    print(f"  generated in {generated - started:.1f} s, loaded in {finished - generated:.1f} s")
    return counts


def _store_truth(cur, schema: str, cohort: SynthCohort) -> None:
    cur.execute(sql.SQL("CREATE TABLE {}.{} (icustay_id INT PRIMARY KEY, severity DOUBLE PRECISION NOT NULL, "
                        "died SMALLINT NOT NULL, oracle_probability DOUBLE PRECISION NOT NULL, "
                        "ceiling_probability DOUBLE PRECISION NOT NULL)").format(
        sql.Identifier(schema), sql.Identifier(TRUTH_TABLE)))
    copy_frame(cur, schema, TRUTH_TABLE, cohort.truth[list(TRUTH_COLUMNS)])
    cur.execute(sql.SQL("CREATE TABLE {}.{} (key TEXT PRIMARY KEY, value TEXT NOT NULL)").format(
        sql.Identifier(schema), sql.Identifier(INFO_TABLE)))
    cur.executemany(sql.SQL("INSERT INTO {}.{} (key, value) VALUES (%s, %s)").format(
        sql.Identifier(schema), sql.Identifier(INFO_TABLE)), list(cohort.info().items()))
