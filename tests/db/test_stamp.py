"""Load stamps and the database fingerprint: a query run is reused by `icurt run` only while the
database holds what it read."""

from __future__ import annotations

import logging

import pytest
from psycopg2 import sql

from icurt.db.connection import connect
from icurt.db.schema import create_table_sql, recreate_schema
from icurt.db.stamp import STAMP_TABLE, describe_fingerprint, source_fingerprint, write_load_stamp
from icurt.db.synth.cohort import generate_cohort, load_cohort
from icurt.pipeline import reuse_plan, run_pipeline
from icurt.runs import RunStore
from icurt.stages import STAGES

# (row_id, subject_id / hadm_id / icustay_id) rows of a schema icurt did not load
HAND_ROWS = {"patients": [(4, 1), (9, 2)], "admissions": [(2, 10), (7, 11), (3, 12)], "icustays": [(5, 100)]}


def _insert(cur, schema: str, table: str, rows: list[tuple]) -> None:
    key = {"patients": "subject_id", "admissions": "hadm_id", "icustays": "icustay_id"}[table]
    for row_id, value in rows:
        cur.execute(sql.SQL("INSERT INTO {} (row_id, {}) VALUES (%s, %s)").format(
            sql.Identifier(schema, table), sql.Identifier(key)), (row_id, value))


@pytest.fixture
def hand_schema(pg_dsn):
    """Schema tst_hand with HAND_ROWS and no stamp table; the NOT NULL constraints are dropped so
    only the columns the fingerprint reads need values."""
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        recreate_schema(cur, "tst_hand")
        for table, rows in HAND_ROWS.items():
            cur.execute(create_table_sql("tst_hand", table))
            cur.execute(sql.SQL("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                "'tst_hand' AND table_name = %s AND column_name NOT IN ('row_id')"), (table,))
            for (column,) in cur.fetchall():
                cur.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL").format(
                    sql.Identifier("tst_hand", table), sql.Identifier(column)))
            _insert(cur, "tst_hand", table, rows)
    yield conn
    conn.close()


def test_fingerprint_of_a_schema_icurt_did_not_load(hand_schema):
    expected = {table: [len(rows), max(row_id for row_id, _ in rows)] for table, rows in HAND_ROWS.items()}
    assert expected == {"patients": [2, 9], "admissions": [3, 7], "icustays": [1, 5]}
    assert source_fingerprint(hand_schema, "tst_hand") == {"rows": expected}
    assert describe_fingerprint({"rows": expected}).startswith("not loaded by icurt; patients 2 rows up to row_id 9")
    with hand_schema, hand_schema.cursor() as cur:
        _insert(cur, "tst_hand", "admissions", [(1, 13)])   # a new row below the largest row_id
    assert source_fingerprint(hand_schema, "tst_hand")["rows"]["admissions"] == [4, 7]


def test_fingerprint_is_the_stamp_when_there_is_one_and_none_without_tables(hand_schema):
    with hand_schema, hand_schema.cursor() as cur:
        load_id = write_load_stamp(cur, "tst_hand", "by hand")
    found = source_fingerprint(hand_schema, "tst_hand")
    assert {key: found[key] for key in ("load_id", "source")} == {"load_id": load_id, "source": "by hand"}
    assert found["loaded_at"].endswith("+00:00")
    assert describe_fingerprint(found) == f"loaded {found['loaded_at']} by by hand"
    with hand_schema, hand_schema.cursor() as cur:
        cur.execute(sql.SQL("DROP TABLE {}, {}").format(sql.Identifier("tst_hand", STAMP_TABLE),
                                                        sql.Identifier("tst_hand", "icustays")))
    assert source_fingerprint(hand_schema, "tst_hand") is None
    assert source_fingerprint(hand_schema, "tst_no_such_schema") is None


def test_every_synth_load_writes_a_new_stamp(pg_dsn):
    cohort = generate_cohort(40, seed=3)
    conn = connect(pg_dsn)
    stamps = []
    for _ in range(2):
        load_cohort(conn, "tst_synth", cohort)
        stamps.append(source_fingerprint(conn, "tst_synth"))
    conn.close()
    assert [s["source"] for s in stamps] == ["icurt db synth (40 stays, seed 3)"] * 2
    assert stamps[0]["load_id"] != stamps[1]["load_id"]


@pytest.fixture
def icurt_log(caplog, monkeypatch):
    """caplog with icurt's INFO lines (the CLI stops the icurt logger propagating to the root)."""
    monkeypatch.setattr(logging.getLogger("icurt"), "propagate", True)
    caplog.set_level(logging.INFO, logger="icurt")
    return caplog


def _synth(pg_dsn: str, schema: str, seed: int) -> None:
    conn = connect(pg_dsn)
    load_cohort(conn, schema, generate_cohort(60, seed=seed))
    conn.close()


def test_a_reloaded_database_reruns_query_and_all_after_it(pg_dsn, make_config, icurt_log):
    cfg = make_config("db.schema=tst_reload")
    store = RunStore(cfg.paths.data)
    _synth(pg_dsn, "tst_reload", seed=1)
    first = run_pipeline(cfg, store, stages=STAGES[:1])["query"]
    with store.create("preprocess", cfg, inputs=[first]) as writer:   # stands in for a preprocess run
        pass
    plan = reuse_plan(cfg, store)
    assert plan["query"].run_id == first.run_id and plan["preprocess"].run_id == writer.run.run_id
    assert run_pipeline(cfg, store, stages=STAGES[:1])["query"].run_id == first.run_id

    _synth(pg_dsn, "tst_reload", seed=2)   # what `icurt demo` does after another load
    icurt_log.clear()
    assert [name for name, run in reuse_plan(cfg, store).items() if run is not None] == []
    assert f"query: the database changed since run {first.run_id} (now loaded " in icurt_log.text
    assert "by icurt db synth (60 stays, seed 2)); running query again" in icurt_log.text
    second = run_pipeline(cfg, store, stages=STAGES[:1])["query"]
    assert second.run_id != first.run_id
    conn = connect(pg_dsn)
    assert second.meta["source"] == source_fingerprint(conn, "tst_reload")
    conn.close()
    assert reuse_plan(cfg, store)["query"].run_id == second.run_id


def test_a_query_run_without_a_fingerprint_is_not_reused(pg_dsn, make_config, icurt_log):
    cfg = make_config("db.schema=tst_old_run")
    store = RunStore(cfg.paths.data)
    _synth(pg_dsn, "tst_old_run", seed=1)
    with store.create("query", cfg) as old:   # what an older icurt left: no "source" in run.json
        pass
    assert reuse_plan(cfg, store)["query"] is None
    assert f"query: run {old.run.run_id} recorded no fingerprint of the database" in icurt_log.text
