"""A fresh Optuna database is created once, safely: tuning runs that open their studies on it at the
same moment all succeed (each thread has its own engine and connections, as two processes would)."""

from __future__ import annotations

import threading
import uuid

import optuna
import pytest

from icurt.db.connection import connect, sqlalchemy_url
from icurt.db.server import create_database_if_missing
from icurt.tuning.study import open_study
from icurt.tuning.trials import StudyPlan

RUNS = 3


def _plan(run_id: str) -> StudyPlan:
    return StudyPlan(stage="tune-model", run_id=run_id, metric="loss", mode="min", step_attr="epoch", max_step=3,
                     grace_period=1, reduction_factor=2, num_trials=4, startup_trials=2, seed=0,
                     max_concurrent_trials=0, resources={"cpu": 1})


def _at_once(work, count: int) -> list[BaseException]:
    """Run work(i) for i < count in threads released together; the exceptions they raised."""
    start, errors = threading.Barrier(count), []

    def run(i):
        start.wait()
        try:
            work(i)
        except BaseException as exc:   # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def _fresh_database(pg_dsn: str) -> str:
    """The DSN of a new, empty database on the session server."""
    name = "optuna_" + uuid.uuid4().hex[:10]
    conn = connect(pg_dsn)
    try:
        create_database_if_missing(conn, name)
    finally:
        conn.close()
    return pg_dsn.rsplit("/", 1)[0] + "/" + name


@pytest.mark.parametrize("attempt", range(3))
def test_studies_opened_at_once_on_a_fresh_database_all_succeed(pg_dsn, attempt):
    url = sqlalchemy_url(_fresh_database(pg_dsn))
    errors = _at_once(lambda i: open_study(_plan(f"run{i}"), url), RUNS)
    assert errors == []
    assert sorted(optuna.get_all_study_names(url)) == [f"icurt-tune-model-run{i}" for i in range(RUNS)]


def test_a_database_created_at_once_by_several_commands_is_no_error(pg_dsn):
    name = "created_" + uuid.uuid4().hex[:10]

    def create(_):
        conn = connect(pg_dsn)
        try:
            create_database_if_missing(conn, name)
        finally:
            conn.close()

    assert _at_once(create, RUNS) == []
    conn = connect(pg_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,))
            assert cur.fetchone()[0] == 1
    finally:
        conn.close()
