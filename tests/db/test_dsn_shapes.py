"""No password gets out, whatever the DSN's shape: masked in the DSN itself, in libpq's own error
message for it (a real connect to a closed port), and through a whole icurt command."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import psycopg2
import pytest
from psycopg2.extensions import parse_dsn

import icurt.dsn as dsn_module
from icurt.db.connection import connect
from icurt.dsn import libpq_dsn, redact_dsn, remember_passwords
from icurt.errors import IcurtError


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PORT = _closed_port()
# (DSN, its password as libpq should read it); fragments like xq7/vz9/kw2 occur in no other text
SHAPES = [
    (f"postgresql://me:xq7vz9kw2@127.0.0.1:{PORT}/mimic", "xq7vz9kw2"),
    (f"postgresql://me:xq7@vz9@127.0.0.1:{PORT}/mimic", "xq7@vz9"),
    (f"postgresql://me:xq7:kw2/vz9@127.0.0.1:{PORT}/mimic", "xq7:kw2/vz9"),
    (f"postgresql://me:xq7%40vz9@127.0.0.1:{PORT}/mimic", "xq7@vz9"),
    (f"postgres://me:xq7vz9@127.0.0.1:{PORT}/mimic?sslmode=disable", "xq7vz9"),
    (f"postgresql://127.0.0.1:{PORT}/mimic?user=me&password=xq7vz9", "xq7vz9"),
    (f"me:xq7vz9@127.0.0.1:{PORT}/mimic", "xq7vz9"),
    (f"me:xq7@vz9@127.0.0.1:{PORT}/mimic", "xq7@vz9"),
    (f"host=127.0.0.1 port={PORT} user=me password=xq7vz9", "xq7vz9"),
    (f"host=127.0.0.1 port={PORT} user=me password='xq7 vz9'", "xq7 vz9"),
    (f"host=127.0.0.1 port={PORT} user=me password = 'xq7@vz9'", "xq7@vz9"),
]
IDS = ["url", "url-at", "url-colon-slash", "url-percent", "postgres-query", "query-password", "bare", "bare-at",
       "kv", "kv-quoted", "kv-spaced-at"]


def leaks(text: str, password: str) -> list[str]:
    """The forms of `password` (whole, percent-encoded, or any piece of 3+ characters between its
    punctuation) that occur in `text`."""
    pieces = {password, quote(password, safe=""), quote(password)}
    pieces |= {piece for piece in re.split(r"[@:/ %]", password) if len(piece) >= 3}
    return sorted(piece for piece in pieces if piece in text)


@pytest.fixture
def nothing_remembered(monkeypatch):
    """Only the patterns mask: no configured password is known."""
    monkeypatch.setattr(dsn_module, "_PASSWORDS", set())


@pytest.mark.parametrize("dsn, password", SHAPES, ids=IDS)
def test_the_dsn_itself_is_masked(dsn, password, nothing_remembered):
    masked = redact_dsn(f"cannot connect to PostgreSQL at {dsn}: refused")
    assert leaks(masked, password) == []
    assert "127.0.0.1" in masked and "***" in masked


@pytest.mark.parametrize("dsn, password", SHAPES, ids=IDS)
def test_libpq_own_message_is_masked(dsn, password, nothing_remembered):
    with pytest.raises(psycopg2.Error) as raw:
        psycopg2.connect(dsn, connect_timeout=5)
    assert leaks(redact_dsn(str(raw.value)), password) == []
    with pytest.raises(IcurtError) as error:
        connect(dsn)
    assert leaks(str(error.value), password) == []


@pytest.mark.parametrize("dsn, password", [s for s in SHAPES if "://" in s[0]],
                         ids=[i for i, s in zip(IDS, SHAPES) if "://" in s[0]])
def test_libpq_reads_a_url_password_whole(dsn, password):
    read = parse_dsn(libpq_dsn(dsn))
    assert (read["password"], read["host"], read["port"], read["dbname"]) == (password, "127.0.0.1", str(PORT),
                                                                               "mimic")


def test_a_remembered_password_is_masked_anywhere(nothing_remembered):
    remember_passwords(f"postgresql://me:xq7%40vz9@127.0.0.1:{PORT}/mimic", "host=h password='kw2 zz8'", "",
                       "postgresql://me:pw@h/d")
    assert redact_dsn("echo xq7@vz9, xq7%40vz9 and kw2 zz8") == "echo ***, *** and ***"
    assert redact_dsn("pw stays: too short to mask everywhere") == "pw stays: too short to mask everywhere"


def test_a_url_without_its_scheme_is_refused_when_the_config_loads():
    from icurt.config import load_config

    with pytest.raises(IcurtError) as error:
        load_config(env={"ICURT_DSN": "me:xq7@vz9@db.example:5432/mimic"})
    assert str(error.value) == ("config key 'db.dsn' looks like a URL without its scheme "
                                "(me:***@db.example:5432/mimic); write it as postgresql://me:***@db.example:5432/mimic "
                                "in ICURT_DSN or [db].dsn")


def _icurt(*command: str, dsn: str, data: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ICURT_DSN": dsn, "ICURT_DATA": str(data)}
    return subprocess.run([sys.executable, "-m", "icurt.cli", *command], env=env, capture_output=True, text=True,
                          timeout=300)


def _files_leaking(root: Path, password: str) -> dict[str, list[str]]:
    return {str(path): leaks(path.read_bytes().decode(errors="replace"), password)
            for path in root.rglob("*") if path.is_file() and leaks(path.read_bytes().decode(errors="replace"),
                                                                     password)}


@pytest.mark.parametrize("dsn, password", [SHAPES[1], SHAPES[2], SHAPES[7], SHAPES[9]],
                         ids=["url-at", "url-colon-slash", "bare-at", "kv-quoted"])
@pytest.mark.parametrize("command", [["query"], ["db", "status"]])
def test_an_unreachable_server_error_line_holds_no_password(dsn, password, command, tmp_path):
    done = _icurt(*command, dsn=dsn, data=tmp_path / "data")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("icurt: error: ") and "***" in done.stderr
    assert leaks(done.stdout + done.stderr, password) == []
    assert _files_leaking(tmp_path, password) == {}


@pytest.mark.parametrize("shape", ["postgresql://postgres:xq7@vz9@127.0.0.1:{port}/mimic",
                                   "postgresql://postgres:xq7:kw2/vz9@127.0.0.1:{port}/mimic",
                                   "host=127.0.0.1 port={port} user=postgres password='xq7 vz9' dbname=mimic"],
                         ids=["url-at", "url-colon-slash", "kv-quoted"])
def test_a_loaded_schema_and_a_query_run_hold_no_password(shape, pg_dsn, tmp_path):
    """The embedded server trusts every local login, so a DSN with any password reaches it: synth and
    query run to the end, and neither their output nor any file they write (config snapshot, run.log,
    run.json) holds the password."""
    dsn = shape.format(port=parse_dsn(pg_dsn)["port"])
    password = parse_dsn(libpq_dsn(dsn))["password"]
    data = tmp_path / "data"
    outputs = ""
    for command in (["db", "synth", "--stays", "100"], ["query"]):
        done = _icurt(*command, "--set", "db.schema=dsn_shapes", dsn=dsn, data=data)
        assert done.returncode == 0, done.stderr
        outputs += done.stdout + done.stderr
    assert leaks(outputs, password) == []
    (config,) = data.glob("query/*/config.toml")
    assert "***" in config.read_text()
    assert _files_leaking(tmp_path, password) == {}
