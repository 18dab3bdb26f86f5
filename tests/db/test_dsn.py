"""DSN redaction and the DSN's scheme, checked when the config loads (no database needed)."""

import logging

import pytest

from icurt.cli import main
from icurt.config import load_config
from icurt.db.dsn import RedactingFilter, redact_dsn
from icurt.errors import IcurtError


@pytest.mark.parametrize("text, expected", [
    ("cannot connect to PostgreSQL at mysql://me:s3cret@127.0.0.1/x: refused",
     "cannot connect to PostgreSQL at mysql://me:***@127.0.0.1/x: refused"),
    ("postgresql+psycopg2://u:pw@h:5/optuna", "postgresql+psycopg2://u:***@h:5/optuna"),
    ("(redis://:pw@h)", "(redis://:***@h)"),
    ("host=h password=pw dbname=d", "host=h password=*** dbname=d"),
    ("ray://head:10001", "ray://head:10001"),
])
def test_a_password_in_any_url_scheme_is_masked(text, expected):
    assert redact_dsn(text) == expected


def test_the_log_filter_masks_any_scheme_too():
    record = logging.LogRecord("icurt", logging.INFO, "", 0, "dsn %s", ("mysql://me:s3cret@h/x",), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "dsn mysql://me:***@h/x"


@pytest.mark.parametrize("env, message", [
    ({"ICURT_DSN": "mysql://me:s3cret@127.0.0.1/x"},
     "config key 'db.dsn' must be a postgresql:// URL or libpq key=value string, got "
     "mysql://me:***@127.0.0.1/x; point ICURT_DSN or [db].dsn at PostgreSQL, or leave it empty"),
    ({"ICURT_OPTUNA_DSN": "sqlite:///optuna.db"},
     "config key 'db.optuna_dsn' must be a postgresql:// URL, got sqlite:///optuna.db; point "
     "ICURT_OPTUNA_DSN or [db].optuna_dsn at PostgreSQL, or leave it empty"),
    ({"ICURT_OPTUNA_DSN": "host=h password=pw"},
     "config key 'db.optuna_dsn' must be a postgresql:// URL, got host=h password=***; point "
     "ICURT_OPTUNA_DSN or [db].optuna_dsn at PostgreSQL, or leave it empty"),
])
def test_a_dsn_of_another_kind_is_refused_when_the_config_loads(env, message):
    with pytest.raises(IcurtError) as error:
        load_config(env=env)
    assert str(error.value) == message


@pytest.mark.parametrize("dsn", ["postgresql://u:pw@h/d", "postgres://u@h/d", "host=h dbname=d", ""])
def test_a_postgresql_dsn_loads(dsn):
    assert load_config(env={"ICURT_DSN": dsn}).db.dsn == dsn


@pytest.mark.parametrize("command", [["config", "show", "db.dsn"], ["db", "url"], ["query"]])
def test_no_command_prints_the_password_of_a_mysql_dsn(command, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ICURT_DSN", "mysql://me:s3cret@127.0.0.1/x")
    monkeypatch.setenv("ICURT_DATA", str(tmp_path))
    assert main(command) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("icurt: error: config key 'db.dsn' must be a postgresql:// URL or libpq key=value "
                            "string, got mysql://me:***@127.0.0.1/x; point ICURT_DSN or [db].dsn at "
                            "PostgreSQL, or leave it empty\n")


# ---- the Optuna storage ---------------------------------------------------------------------------

BAD_OPTUNA = {"ICURT_DSN": "postgresql://me@127.0.0.1:1/mimic", "ICURT_OPTUNA_DSN": "postgresql://me:pw@127.0.0.1:1/optuna"}
OPTUNA_FIX = ("check the Optuna DSN (ICURT_OPTUNA_DSN or [db].optuna_dsn) and that the server is up, or leave "
              "it empty to keep the studies on the server of [db].dsn (or the embedded one)")


def test_an_unreachable_optuna_dsn_names_its_own_setting():
    from icurt.db.connection import optuna_storage_url

    with pytest.raises(IcurtError) as error:
        optuna_storage_url(load_config(env=BAD_OPTUNA))
    message = str(error.value)
    assert message.startswith("cannot connect to PostgreSQL at postgresql://me:***@127.0.0.1:1/optuna: ")
    assert message.endswith("; " + OPTUNA_FIX) and "ICURT_DSN" not in message


def test_without_an_optuna_dsn_the_mimic_dsn_is_the_one_named():
    from icurt.db.connection import optuna_storage_url

    with pytest.raises(IcurtError) as error:
        optuna_storage_url(load_config(env={"ICURT_DSN": BAD_OPTUNA["ICURT_DSN"]}))
    assert str(error.value).endswith("; check the DSN (ICURT_DSN or [db].dsn) and that the server is up, or "
                                     "leave the DSN empty to use the embedded server")


@pytest.mark.parametrize("stage", ["tune-model", "tune-attack"])
def test_a_bad_optuna_dsn_stops_tuning_before_ray_starts(stage, tmp_path, monkeypatch):
    import icurt.ray_runtime
    from icurt.runs import RunStore
    from icurt.stages import run_stage, stage as stage_row

    def no_ray(cfg):
        raise AssertionError("Ray started before the Optuna storage was checked")

    monkeypatch.setattr(icurt.ray_runtime, "init_ray", no_ray)
    cfg = load_config(env=BAD_OPTUNA)
    store = RunStore(tmp_path)
    with store.create(stage_row(stage).input, cfg):   # an empty input run: the check comes before reading it
        pass
    with pytest.raises(IcurtError) as error:
        run_stage(stage, cfg, store=store)
    assert str(error.value).endswith("; " + OPTUNA_FIX)
