"""The `icurt` command as a user meets it: help, one-line errors with exit 2, config and runs."""

import os
import subprocess
import sys

from icurt.cli import build_parser, main


def run_cli(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "icurt.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120)


def test_help_lists_every_stage():
    text = build_parser().format_help()
    for command in ("config", "runs", "db", "query"):
        assert command in text


def test_every_subcommand_has_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in subparsers.choices.items():
        assert sub.format_help(), name


def test_bad_config_value_is_one_line_exit_2(tmp_path):
    result = run_cli("config", "show", "--set", "train.epochs=ten", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "icurt: error: config key 'train.epochs' must be an integer, got 'ten'"
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("config", "show", "--set", "train.epochs=ten", "--debug", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_config_show_key_and_section(capsys):
    assert main(["config", "show", "train.epochs", "--set", "train.epochs=9"]) == 0
    assert capsys.readouterr().out.strip() == "epochs = 9"
    assert main(["config", "show", "attack", "--config", "demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[attack]") and "max_num_samples = 1000" in out


def test_runs_on_an_empty_data_root(tmp_path):
    result = run_cli("runs", "--set", f"paths.data={tmp_path / 'data'}", cwd=tmp_path)
    assert result.returncode == 0 and "no completed runs" in result.stdout


def test_wrong_dsn_exits_2_with_redacted_message(tmp_path):
    result = run_cli("db", "status", env={"ICURT_DSN": "postgresql://me:pa55word@127.0.0.1:1/x"},
                     cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pa55word" not in lines[0] and "me:***@" in lines[0]


def test_db_lifecycle_through_the_cli(tmp_path):
    env = {"ICURT_DATA": str(tmp_path / "data"), "ICURT_DSN": ""}
    try:
        started = run_cli("db", "start", env=env, cwd=tmp_path)
        assert started.returncode == 0, started.stderr
        assert "embedded PostgreSQL running at postgresql://postgres@127.0.0.1:" in started.stdout
        status = run_cli("db", "status", env=env, cwd=tmp_path)
        assert status.returncode == 0 and "running" in status.stdout
        url = run_cli("db", "url", env=env, cwd=tmp_path)
        assert url.stdout.strip().startswith("postgresql://postgres@127.0.0.1:")
    finally:
        stopped = run_cli("db", "stop", env=env, cwd=tmp_path)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert run_cli("db", "status", env=env, cwd=tmp_path).returncode == 1
