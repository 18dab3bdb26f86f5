"""The embedded PostgreSQL server and the connection helper, for real."""

import logging

import pytest

from icurt.db.connection import connect, connection, optuna_storage_url, resolve_dsn
from icurt.db.dsn import RedactingFilter, redact_dsn
from icurt.db.server import embedded_server
from icurt.errors import IcurtError
from icurt.runs import RunStore


def test_start_connect_query_reuse_stop(tmp_path):
    server = embedded_server(tmp_path)
    assert not server.status().running
    url = server.start()
    try:
        status = server.status()
        assert status.running and url == status.url and url.startswith("postgresql://postgres@127.0.0.1:")
        conn = connect(url)
        with conn.cursor() as cur:
            cur.execute("SELECT 6 * 7")
            assert cur.fetchone() == (42,)
        conn.close()
        pid = status.pid
        assert server.start() == url              # reused, not restarted
        assert server.status().pid == pid
    finally:
        assert server.stop() is True
    assert not server.status().running
    assert server.stop() is False
    assert server.start() == url                  # the port is kept across restarts
    server.stop()


def test_resolve_dsn_starts_the_embedded_server_when_no_dsn(tmp_path, make_config):
    cfg = make_config("db.dsn=", data=tmp_path)
    url = resolve_dsn(cfg)
    try:
        assert str(tmp_path) in str(embedded_server(tmp_path).pgdata)
        with connection(cfg) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_database()")
            assert cur.fetchone() == ("mimic",)
    finally:
        embedded_server(tmp_path).stop()
    assert url.endswith("/mimic")


def test_configured_dsn_is_used(make_config, pg_dsn):
    cfg = make_config()
    assert resolve_dsn(cfg) == pg_dsn
    with connection(cfg, readonly=True) as conn, conn.cursor() as cur:
        cur.execute("SHOW transaction_read_only")
        assert cur.fetchone() == ("on",)


@pytest.mark.parametrize("dsn", [
    "postgresql://alice:TopSecret@127.0.0.1:1/mimic",   # nothing listens on port 1
    "host=127.0.0.1 port=1 user=alice password=TopSecret dbname=mimic",
    "postgresql://alice:TopSecret@127.0.0.1:notaport/mimic",
])
def test_wrong_dsn_is_one_line_error_without_password(dsn):
    with pytest.raises(IcurtError) as err:
        connect(dsn, timeout_s=2)
    message = str(err.value)
    assert "TopSecret" not in message and "\n" not in message
    assert "cannot connect to PostgreSQL" in message and "***" in message


def test_password_never_reaches_snapshot_or_log(tmp_path, make_config):
    cfg = make_config("db.dsn=postgresql://alice:TopSecret@127.0.0.1:1/mimic")
    store = RunStore(tmp_path)
    with pytest.raises(IcurtError):
        with store.create("query", cfg):
            logging.getLogger("icurt").info("connecting to %s", cfg.db.dsn)
            connect(cfg.db.dsn, timeout_s=2)
    failed = tmp_path / "query" / f".failed-{store.failed('query')[0]}"
    for name in ("config.toml", "run.log", "run.json"):
        text = (failed / name).read_text()
        assert "TopSecret" not in text, name
    assert "alice:***@" in (failed / "run.log").read_text()


def test_redaction_forms():
    assert redact_dsn("postgresql://u:p%40ss@h:5/d") == "postgresql://u:***@h:5/d"
    assert redact_dsn("postgres://u@h/d") == "postgres://u@h/d"
    assert redact_dsn("host=h password='a b' user=u") == "host=h password=*** user=u"
    record = logging.LogRecord("icurt", logging.INFO, "", 0, "dsn %s", ("postgresql://u:pw@h/d",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "dsn postgresql://u:***@h/d"


def test_optuna_storage_gets_its_own_database(tmp_path, make_config):
    cfg = make_config("db.dsn=", data=tmp_path)
    try:
        url = optuna_storage_url(cfg)
        assert url.startswith("postgresql+psycopg2://postgres@127.0.0.1:") and url.endswith("/optuna")
    finally:
        embedded_server(tmp_path).stop()
