"""One writer per schema: a second load of a schema while one is in progress refuses at once with one
line naming it, the schema afterwards is wholly the first load's, and a killed load blocks nothing.

The first load is held at a known point (before its labevents table, staging schema half built) by
a patched load_table that waits for the test, so the two loads overlap on every run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from psycopg2 import sql

import icurt.db.load_csv as load_csv_module
from icurt.cli import main
from icurt.db.connection import connect
from icurt.db.load_csv import load_csv
from icurt.db.load_lock import load_application_name, staging_schema
from icurt.db.schema import TABLES
from icurt.db.stamp import source_fingerprint
from icurt.db.synth.cohort import generate_cohort, load_cohort
from icurt.errors import IcurtError
from physionet_csv import write_physionet_csv

BUSY = re.compile(r"icurt: error: schema (\S+) is being loaded by another icurt load \(icurt db load-csv "
                  r"\(pid (\d+)\), started \d\d:\d\d\); wait for it to finish, or load into another schema "
                  r"\(--set db.schema=NAME\)\n")


@pytest.fixture(scope="module")
def two_cohorts(tmp_path_factory):
    """Two cohorts of different sizes (every table's row count differs), each as a CSV folder."""
    found = {}
    for stays, seed in ((60, 3), (90, 4)):
        cohort = generate_cohort(stays, seed=seed)
        folder = tmp_path_factory.mktemp(f"csv{stays}")
        for table, frame in cohort.tables.items():
            write_physionet_csv(frame, folder, table)
        found[stays] = cohort, folder
    return found


def _query(dsn: str, statement, args=()) -> list[tuple]:
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()
    finally:
        conn.close()


def _row_counts(dsn: str, schema: str) -> dict[str, int]:
    return {table: _query(dsn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table)))[0][0]
            for table in TABLES}


def _staging(dsn: str, schema: str) -> list[str]:
    return [row[0] for row in _query(dsn, "SELECT nspname FROM pg_namespace WHERE left(nspname, %s) = %s",
                                     (len(schema) + 9, schema + "__loading"))]


def _source(dsn: str, schema: str) -> str:
    conn = connect(dsn)
    try:
        return source_fingerprint(conn, schema)["source"]
    finally:
        conn.close()


def _wait_for(condition, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_second_load_refuses_while_the_first_runs_and_the_schema_is_the_first_ones(
        pg_dsn, make_config, two_cohorts, monkeypatch, capsys):
    schema = "lock_threads"
    (small, first), (large, second) = two_cohorts[60], two_cohorts[90]
    cfg = make_config(f"db.schema={schema}")
    halfway, go = threading.Event(), threading.Event()
    real_load_table = load_csv_module.load_table

    def held_before_labevents(conn, staging, table, path, *dataset):
        if table == "labevents":
            halfway.set()
            go.wait(60)
        return real_load_table(conn, staging, table, path, *dataset)

    monkeypatch.setattr(load_csv_module, "load_table", held_before_labevents)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(loads=load_csv(cfg, first)))
    thread.start()
    try:
        assert halfway.wait(120)
        capsys.readouterr()
        common = ["--set", f"db.dsn={pg_dsn}", "--set", f"paths.data={cfg.paths.data}", "--set", f"db.schema={schema}"]
        assert main(["db", "load-csv", str(second), *common]) == 2
        err = capsys.readouterr().err
        match = BUSY.fullmatch(err)
        assert match and match.groups() == (schema, str(os.getpid())), err
        with pytest.raises(IcurtError) as synth_refused:     # synth takes the same lock
            conn = connect(pg_dsn)
            try:
                load_cohort(conn, schema, large)
            finally:
                conn.close()
        assert str(synth_refused.value).startswith(f"schema {schema} is being loaded by another icurt load (")
    finally:
        go.set()
        thread.join(120)
    assert {t: load.rows for t, load in outcome["loads"].items()} == {t: len(f) for t, f in small.tables.items()}
    assert _row_counts(pg_dsn, schema) == {t: len(f) for t, f in small.tables.items()}
    assert _source(pg_dsn, schema) == f"icurt db load-csv {first.resolve()}"
    assert _staging(pg_dsn, schema) == []


HELD_LOAD = textwrap.dedent("""
    import pathlib, sys, time
    import icurt.db.load_csv as m
    from icurt.cli import main
    real, go = m.load_table, pathlib.Path(sys.argv[1])
    def held(conn, staging, table, path, *dataset):
        if table == "labevents":
            while not go.exists():
                time.sleep(0.05)
        return real(conn, staging, table, path, *dataset)
    m.load_table = held
    sys.exit(main(["db", "load-csv", *sys.argv[2:]]))
""")


def _start_held_load(folder, schema: str, go, env):
    """`icurt db load-csv FOLDER` in a process of its own that holds before labevents until `go` exists."""
    return subprocess.Popen([sys.executable, "-c", HELD_LOAD, str(go), str(folder), "--set", f"db.schema={schema}"],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _holds_lock(dsn: str, pid: int) -> bool:
    name = f"icurt db load-csv (pid {pid})"
    return bool(_query(dsn, "SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                            "WHERE l.locktype = 'advisory' AND a.application_name = %s", (name,)))


def test_two_load_csv_processes_at_once_one_wins_wholly_and_a_killed_load_blocks_nothing(
        pg_dsn, two_cohorts, tmp_path):
    schema = "lock_processes"
    (small, first), (large, second) = two_cohorts[60], two_cohorts[90]
    env = {**os.environ, "ICURT_DSN": pg_dsn, "ICURT_DATA": str(tmp_path / "data")}
    go = tmp_path / "go"
    command = [sys.executable, "-m", "icurt.cli", "db", "load-csv", "--set", f"db.schema={schema}"]

    winner = _start_held_load(first, schema, go, env)
    winner_pid = winner.pid
    try:
        _wait_for(lambda: len(_staging(pg_dsn, schema)) == 1 and _holds_lock(pg_dsn, winner_pid),
                  "the first load to hold the lock with its staging schema half built")
    except AssertionError:
        winner.kill()
        raise
    loser = subprocess.run([*command, str(second)], env=env, capture_output=True, text=True, timeout=300)
    go.write_text("go")
    out, err = winner.communicate(timeout=300)
    assert loser.returncode == 2 and BUSY.fullmatch(loser.stderr).groups() == (schema, str(winner_pid)), loser.stderr
    assert winner.returncode == 0, err
    assert _row_counts(pg_dsn, schema) == {t: len(f) for t, f in small.tables.items()}
    assert _source(pg_dsn, schema) == f"icurt db load-csv {first.resolve()}"
    assert _staging(pg_dsn, schema) == []

    go.unlink()
    killed = _start_held_load(second, schema, go, env)
    _wait_for(lambda: len(_staging(pg_dsn, schema)) == 1 and _holds_lock(pg_dsn, killed.pid),
              "the load to be killed to hold the lock")
    left_behind = _staging(pg_dsn, schema)
    killed.send_signal(signal.SIGKILL)
    killed.wait(60)
    _wait_for(lambda: not _holds_lock(pg_dsn, killed.pid), "PostgreSQL to notice the killed load")
    assert _staging(pg_dsn, schema) == left_behind        # what a killed load leaves ...
    done = subprocess.run([*command, str(second)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"dropping staging schema {left_behind[0]} that a stopped load of {schema} left" in done.stderr
    assert _staging(pg_dsn, schema) == []                 # ... the next load drops
    assert _row_counts(pg_dsn, schema) == {t: len(f) for t, f in large.tables.items()}


def test_each_load_stages_under_a_name_of_its_own():
    names = {staging_schema("mimiciii") for _ in range(20)}
    assert len(names) == 20 and all(re.fullmatch(r"mimiciii__loading_[0-9a-f]{6}", n) for n in names)
    with pytest.raises(IcurtError, match="at most 47 bytes"):
        staging_schema("s" * 48)
    assert load_application_name("db synth") == f"icurt db synth (pid {os.getpid()})"
