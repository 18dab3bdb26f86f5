"""The `icurt` command as a user meets it: help, one-line errors with exit 2, config and runs."""

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime

import pytest

from icurt.cli import build_parser, main
from icurt.errors import IcurtError

from signals import STOP_SIGNALS, STOPPED, assert_one_clean_line, kept_line, sigint_as_a_terminal_gives_it


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


def _command(*names):
    parser = build_parser()
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def test_config_help_names_every_shipped_profile():
    from icurt.config import default_config_path

    shipped = sorted(p.stem for p in default_config_path().parent.glob("*.toml") if p.stem != "default")
    assert shipped == ["demo", "reference"]
    config = next(a for a in _command("run")._actions if a.dest == "config")
    assert config.help == ("a TOML file layered over configs/default.toml (`demo` and `reference` name the "
                           "shipped configs/demo.toml and configs/reference.toml)")


def test_run_and_demo_say_what_they_do():
    assert _command("run").description == (
        "run every stage on the configured database, reusing completed stages whose input and settings are "
        "unchanged: query → preprocess → tune-model → train → tune-attack → attack → fragility → analyze")
    assert _command("demo").description == (
        "the whole study on this machine: embedded PostgreSQL, a synthetic MIMIC-III cohort, every stage, an "
        "HTML report (config: configs/demo.toml unless --config names another)")


@pytest.mark.parametrize("command, section", [("tune-model", "tune_model"), ("tune-attack", "tune_attack")])
def test_extend_names_the_section_of_its_command(command, section):
    extend = next(a for a in _command(command)._actions if a.dest == "extend")
    assert extend.help == ("continue the study of the completed run RUN in a new run, until it has "
                           f"[{section}].num_trials finished trials in all (RUN stays as it was)")


def test_bad_config_value_is_one_line_exit_2(tmp_path):
    result = run_cli("config", "show", "--set", "train.epochs=ten", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "icurt: error: config key 'train.epochs' must be an integer, got 'ten'"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv, line", [
    (["demo", "--stays", "abc"], "icurt demo: error: argument --stays: invalid int value: 'abc' "
     "(see icurt demo --help)"),
    (["show", "train", "--trial", "2"], "icurt show train: error: unrecognized arguments: --trial "
     "(see icurt show train --help)"),
    (["db", "url", "postgresql://me:pa55word@h/d"], "icurt db url: error: unrecognized arguments: "
     "postgresql://me:***@h/d (see icurt db url --help)"),
    ([], "icurt: error: the following arguments are required: COMMAND (see icurt --help)"),
])
def test_a_usage_mistake_is_one_line_naming_the_command_exit_2(argv, line, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


def test_an_unknown_stage_to_show_is_one_line(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["show", "bogus"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("icurt show: error: argument STAGE: invalid choice: 'bogus' (choose from ")
    assert err.endswith("'analyze') (see icurt show --help)\n")


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("config", "show", "--set", "train.epochs=ten", "--debug", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_config_show_key_and_section(capsys):
    assert main(["config", "show", "train.epochs", "--set", "train.epochs=9"]) == 0
    assert capsys.readouterr().out.strip() == "epochs = 9"
    assert main(["config", "show", "attack", "--config", "demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[attack]") and "max_num_samples = 1000" in out


def test_a_config_that_is_a_folder_is_one_line(tmp_path):
    (tmp_path / "settings").mkdir()
    for given in ("settings", str(tmp_path / "settings"), "./settings"):
        result = run_cli("config", "show", "--config", given, cwd=tmp_path)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip() == f"icurt: error: config file {os.path.normpath(given)} is a folder; pass a TOML file to --config"


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    """`icurt runs | head -1`: the reader has gone before icurt writes (its end of the pipe is closed
    before icurt starts), so every write meets EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "icurt.cli", "runs", "--set", f"paths.data={tmp_path}"],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)
    finally:
        os.close(write_end)
    assert result.stderr == "" and result.returncode == 1


def test_runs_on_an_empty_data_root(tmp_path):
    result = run_cli("runs", "--set", f"paths.data={tmp_path / 'data'}", cwd=tmp_path)
    assert result.returncode == 0 and "no completed runs" in result.stdout


def test_wrong_dsn_exits_2_with_redacted_message(tmp_path):
    result = run_cli("db", "status", env={"ICURT_DSN": "postgresql://me:pa55word@127.0.0.1:1/x"},
                     cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pa55word" not in lines[0] and "me:***@" in lines[0]


@pytest.mark.parametrize("env, argv, printed", [
    ({"ICURT_DSN": "postgresql://me:pw@h/mimic"}, [], "postgresql://me:***@h/mimic"),
    ({"ICURT_DSN": "postgresql://me:pw@h/mimic"}, ["--show-password"], "postgresql://me:pw@h/mimic"),
    ({"ICURT_DSN": "postgresql://me:pw@h/mimic"}, ["--optuna"], "postgresql+psycopg2://me:***@h/mimic"),
    ({"ICURT_DSN": "postgresql://me:pw@h/mimic", "ICURT_OPTUNA_DSN": "postgresql://o:pw2@h2/optuna"},
     ["--optuna", "--show-password"], "postgresql+psycopg2://o:pw2@h2/optuna"),
])
def test_db_url_prints_the_optuna_storage_and_the_password_when_asked(env, argv, printed, monkeypatch, capsys,
                                                                       tmp_path):
    for name, value in {"ICURT_DATA": str(tmp_path), "ICURT_OPTUNA_DSN": "", **env}.items():
        monkeypatch.setenv(name, value)
    assert main(["db", "url", *argv]) == 0
    assert capsys.readouterr().out == printed + "\n"


def test_db_url_of_the_embedded_optuna_database(pg_server, monkeypatch, capsys):
    server, url = pg_server
    monkeypatch.setenv("ICURT_DATA", str(server.root.parent))
    monkeypatch.setenv("ICURT_DSN", "")
    monkeypatch.setenv("ICURT_OPTUNA_DSN", "")
    assert main(["db", "url", "--optuna"]) == 0
    assert capsys.readouterr().out == "postgresql+psycopg2://" + url.split("://")[1].rsplit("/", 1)[0] + "/optuna\n"


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


# ---- the data root ---------------------------------------------------------------------------

COMMANDS = [["query"], ["runs"], ["runs", "--failed"], ["runs", "prune"], ["db", "status"], ["db", "stop"],
            ["db", "synth", "--stays", "10"], ["preprocess"], ["show", "train"], ["config", "show"], ["run"],
            ["attack", "--resume", "x"]]


@pytest.mark.parametrize("data, why", [
    ("/etc/passwd", "the data root /etc/passwd is a file, not a folder"),
    ("/etc/passwd/icurt", "the data root /etc/passwd/icurt cannot be created (Not a directory: /etc/passwd/icurt)"),
])
def test_a_data_root_that_is_a_file_or_cannot_be_made_is_one_line_in_every_command(data, why, monkeypatch,
                                                                                  capsys):
    monkeypatch.setenv("ICURT_DATA", data)
    monkeypatch.setenv("ICURT_DSN", "postgresql://u@127.0.0.1:1/x")
    for command in COMMANDS:
        assert main(command) == 2, command
        captured = capsys.readouterr()
        assert captured.err.strip().splitlines() == [
            f"icurt: error: {why}; point ICURT_DATA (or --set paths.data=...) at a folder you can write"], command
        assert captured.out == "", command                    # `icurt runs` says no "no completed runs"


def test_a_data_root_through_a_subprocess_is_one_line_too(tmp_path):
    result = run_cli("query", env={"ICURT_DATA": "/etc/passwd"}, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


# ---- runs: failed, killed, prune ---------------------------------------------------------------

def test_runs_failed_and_prune(tmp_path, capsys):
    from icurt.config import load_config
    from icurt.runs import RunStore

    cfg = load_config(env={})
    store = RunStore(tmp_path)
    with store.create("query", cfg) as done:
        pass
    with pytest.raises(RuntimeError):
        with store.create("tune-model", cfg, inputs=[done.run]) as failed:
            raise RuntimeError("the trial ran out of memory")
    root = ["--set", f"paths.data={tmp_path}"]
    assert main(["runs", "--failed", *root]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"tune-model   {failed.run_id}  failed   RuntimeError: the trial ran out of memory  "
                     f"(`icurt tune-model --resume {failed.run_id}` continues it)"]
    # an error that already says how to resume is not followed by the same advice again
    with pytest.raises(IcurtError):
        with store.create("tune-model", cfg, inputs=[done.run]) as stopped:
            raise IcurtError(f"tuning stopped with 1 of 4 trials finished; continue it with "
                             f"`icurt tune-model --resume {stopped.run_id}`")
    assert main(["runs", "--failed", "tune-model", *root]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if stopped.run_id in line]
    assert len(said) == 1 and said[0].count("--resume") == 1
    shutil.rmtree(store.interrupted_folder("tune-model", stopped.run_id))
    assert main(["runs", "query", *root]) == 0 and done.run_id in capsys.readouterr().out
    assert main(["runs", "attack", *root]) == 0
    assert capsys.readouterr().out.strip() == f"no completed runs under {tmp_path} for attack"
    assert main(["runs", "prune", "query", *root]) == 0
    assert capsys.readouterr().out.strip() == f"nothing to prune under {tmp_path} for query"
    assert main(["runs", "prune", *root]) == 0
    assert capsys.readouterr().out.splitlines() == [f"deleted tune-model run {failed.run_id} (failed)",
                                                     f"1 failed or killed run(s) deleted under {tmp_path}"]
    assert store.failed("tune-model") == [] and [r.run_id for r in store.list()] == [done.run_id]
    assert main(["runs", "bogus", *root]) == 2
    assert "unknown stage 'bogus'" in capsys.readouterr().err


# ---- an error after a run started, Ctrl-C -------------------------------------------------------

def _query_run(store, cfg):
    """A query run whose one ICU stay is 60 years old (the other files empty, well typed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from icurt.db.query import OUTPUT_SCHEMAS

    stay = {"subject_id": 1, "hadm_id": 11, "icustay_id": 111, "gender": "F", "admittime": datetime(2150, 1, 1),
            "dischtime": datetime(2150, 1, 9), "los_hospital": 8.0, "admission_age": 60.0, "age_years": 60.0,
            "hospital_expire_flag": 0, "intime": datetime(2150, 1, 1, 2), "outtime": datetime(2150, 1, 5),
            "los_icu": 3.9, "hospstay_seq": 1, "first_hosp_stay": True, "icustay_seq": 1, "first_icu_stay": True}
    with store.create("query", cfg) as writer:
        for name, schema in OUTPUT_SCHEMAS.items():
            rows = [{c: stay.get(c) for c in schema.names}] if name == "icustay_detail" else []
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), writer.path / f"{name}.parquet")
    return writer.run


def test_an_error_after_the_run_started_is_printed_once(tmp_path):
    from icurt.config import load_config
    from icurt.runs import RunStore

    store = RunStore(tmp_path)
    _query_run(store, load_config(env={}))
    result = run_cli("preprocess", "--engine", "pandas", "--set", "preprocess.min_age=100",
                     env={"ICURT_DATA": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "min_age" in line]
    assert errors == [result.stderr.strip().splitlines()[-1]]
    assert errors[0].startswith("icurt: error: no ICU stay is left after the min_age filter")
    (failed,) = store.failed("preprocess")
    assert "failed: no ICU stay is left" in (tmp_path / "preprocess" / f".failed-{failed}" / "run.log").read_text()


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: s.name)
def test_a_stop_signal_names_the_run_it_kept_and_why(tmp_path, pg_dsn, signum):
    """SIGINT (Ctrl-C) or SIGTERM (`kill`, a scheduler) to `icurt preprocess` (Modin on Ray) once its
    run is at work on a real query run: one line, exit 130 or 143, the run kept with its reason."""
    from icurt.config import load_config, with_overrides
    from icurt.db.connection import connect
    from icurt.db.synth.cohort import generate_cohort, load_cohort
    from icurt.runs import RunStore
    from icurt.stages import run_stage

    schema = f"tcli_{signum.name.lower()}"
    conn = connect(pg_dsn)
    load_cohort(conn, schema, generate_cohort(1000, seed=3))
    conn.close()
    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path}", f"db.dsn={pg_dsn}", f"db.schema={schema}"])
    run_stage("query", cfg)
    process = subprocess.Popen([sys.executable, "-m", "icurt.cli", "preprocess", "--engine", "modin",
                                "--set", "ray.num_cpus=1"], env={**os.environ, "ICURT_DATA": str(tmp_path)},
                               cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=sigint_as_a_terminal_gives_it)
    seen = []
    for line in process.stderr:             # Ray is up inside the run: the steps take seconds from here
        seen.append(line)
        if " Ray: " in line:
            break
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    code, _, reason = STOPPED[signum]
    assert process.returncode == code, "".join(seen) + err[-2000:]
    (failed,) = RunStore(tmp_path).failed("preprocess")
    folder = tmp_path / "preprocess" / f".failed-{failed}"
    assert_one_clean_line(err, signum)
    assert err.strip().splitlines()[-1] == kept_line(signum, "preprocess", failed, folder, resumable=False)
    assert json.loads((folder / "run.json").read_text())["error"] == reason


# ---- the embedded server a command starts ------------------------------------------------------

def test_query_on_a_fresh_data_root_says_it_started_the_server_and_stops_it_on_failure(tmp_path):
    from icurt.db.server import embedded_server

    env = {"ICURT_DATA": str(tmp_path / "data"), "ICURT_DSN": ""}
    try:
        result = run_cli("query", env=env, cwd=tmp_path)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert "no DSN configured: started the embedded PostgreSQL at postgresql://postgres@127.0.0.1:" in lines[0]
        assert lines[-1].startswith("icurt: error: schema 'mimiciii' does not exist")
        assert "stopped the embedded PostgreSQL this command had started" in result.stderr
        assert not embedded_server(tmp_path / "data").status().running
        assert not (tmp_path / "data" / "query").exists()       # no run folder, failed or not
    finally:
        embedded_server(tmp_path / "data").stop()


def test_db_stop_without_a_server_has_nothing_to_stop(tmp_path):
    result = run_cli("db", "stop", env={"ICURT_DATA": str(tmp_path / "never"), "ICURT_DSN": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"no embedded PostgreSQL is running under {tmp_path / 'never' / 'pg'}; nothing to stop"
    assert not (tmp_path / "never").exists()


def test_a_masked_dsn_keeps_its_separator(tmp_path):
    result = run_cli("db", "status", env={"ICURT_DSN": "postgresql://me@127.0.0.1:1/mimic?password=pa55word"},
                     cwd=tmp_path)
    assert result.returncode == 2 and "pa55word" not in result.stderr
    assert "cannot connect to PostgreSQL at postgresql://me@127.0.0.1:1/mimic?password=***: connection to server" \
        in result.stderr


# ---- what a run was made with -------------------------------------------------------------------

def test_show_config_prints_what_the_run_used_not_todays_config(tmp_path, capsys):
    from icurt.config import load_config, with_overrides
    from icurt.runs import RunStore

    store = RunStore(tmp_path)
    with store.create("train", with_overrides(load_config(env={}), ["train.epochs=7"])) as writer:
        pass
    assert main(["show", "train", writer.run_id, "--settings", "--set", f"paths.data={tmp_path}",
                 "--set", "train.epochs=50"]) == 0
    out = capsys.readouterr().out
    assert "epochs = 7" in out and "epochs = 50" not in out


def test_show_takes_config_as_a_file_like_every_command_and_settings_as_the_switch(tmp_path, capsys):
    """`icurt show train --config FILE` reads FILE (here: its data root), never a run id."""
    from icurt.config import load_config, with_overrides
    from icurt.runs import RunStore

    store = RunStore(tmp_path)
    with store.create("train", with_overrides(load_config(env={}), ["train.epochs=9"])) as writer:
        pass
    config = tmp_path / "mine.toml"
    config.write_text(f'[paths]\ndata = "{tmp_path}"\n')
    assert main(["show", "train", "--config", str(config), "--settings"]) == 0
    assert "epochs = 9" in capsys.readouterr().out


@pytest.mark.parametrize("action", ["start", "status", "stop", "url", "synth", "load-csv"])
def test_every_db_action_says_what_it_does_in_its_help(action, capsys):
    with pytest.raises(SystemExit):
        main(["db", action, "--help"])
    usage, description = capsys.readouterr().out.split("\n\n")[:2]
    assert usage.startswith("usage:") and not description.lstrip().startswith(("positional", "options"))
    assert len(description.split()) >= 4


def test_the_demo_time_is_stated_once():
    """Measured once (README's Measured table); the demo section and demo.toml point there."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    demo_toml = (root / "configs" / "demo.toml").read_text()
    minutes = re.compile(r"\d+\s*(?:–\s*\d+\s*)?(?:min|minutes|s)\b")
    rows = [line for line in readme.splitlines() if line.startswith("| `icurt demo` end to end")]
    assert len(rows) == 1 and minutes.search(rows[0].split("|")[3])
    section = readme.split("## What `icurt demo` does", 1)[1].split("\n## ", 1)[0]
    assert not minutes.search(section) and "[Measured](#measured)" in section
    assert not minutes.search(demo_toml.split("\n[", 1)[0]) and "Measured" in demo_toml.split("\n[", 1)[0]


def test_a_failing_command_leaves_a_server_it_did_not_start(tmp_path, capsys):
    from icurt.db.server import embedded_server

    server = embedded_server(tmp_path / "data")
    server.start()
    try:
        assert main(["query", "--set", f"paths.data={tmp_path / 'data'}", "--set", "db.dsn="]) == 2
        err = capsys.readouterr().err
        assert "schema 'mimiciii' does not exist" in err and "started" not in err and "stopped" not in err
        assert server.status().running
    finally:
        server.stop()


def test_the_outcome_explains_the_tune_attack_score(tmp_path, capsys):
    from icurt.cli import _print_outcome
    from icurt.config import load_config
    from icurt.runs import RunStore

    cfg = load_config(env={})
    with RunStore(tmp_path).create("tune-attack", cfg) as writer:
        (writer.path / "best_attack_hparams.json").write_text(json.dumps({
            "kappa": 0.1, "lambda_1": 0.02, "learning_rate": 0.05, "batch_size": 8, "optimizer": "adam",
            "method": dataclasses.asdict(cfg.attack_method),
            "objective": 3.772, "objective_name": "sparse_small", "trial": 2, "fold": 0}))
    _print_outcome({"tune-attack": writer.run}, cfg)
    assert capsys.readouterr().out.strip() == (
        f"tune-attack run {writer.run_id}: best trial 2, score 3.772 = the sum, over the tuning samples the "
        "attack flipped, of objective 'sparse_small' of each one's best example: the share of (hour, feature) "
        "cells it leaves unchanged divided by its L1 size (sum of |change|, scaled units); higher is sparser "
        "and smaller")


@pytest.mark.parametrize("verbose", [False, True])
def test_epoch_lines_reach_the_console_only_with_verbose(verbose, capsys):
    import logging

    from icurt.cli import configure_logging
    from icurt.run_log import VERBOSE

    configure_logging(debug=False, quiet=False, verbose=verbose)
    try:
        logging.getLogger("icurt").info("fold 0 epoch 10: train loss 0.5", extra=VERBOSE)
        logging.getLogger("icurt").info("fold 0 finished")
        err = capsys.readouterr().err
    finally:
        configure_logging(debug=False, quiet=False)
    assert "fold 0 finished" in err
    assert ("fold 0 epoch 10" in err) == verbose
