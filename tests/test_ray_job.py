"""Inside a Ray job (Ray's job supervisor sets RAY_JOB_CONFIG_JSON_ENV_VAR for the entrypoint only)
icurt refuses a relative data root and an embedded PostgreSQL, naming the runtime_env's env_vars."""

import pytest

from icurt.errors import IcurtError
from icurt.ray_job import check_data_root_in_job, in_ray_job, refuse_embedded_server_in_job

JOB = {"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}


def test_only_a_job_entrypoint_counts_as_a_job():
    assert in_ray_job(JOB) and not in_ray_job({"RAY_ADDRESS": "auto"})


def test_a_relative_data_root_is_refused_in_a_job_only():
    with pytest.raises(IcurtError, match="relative.*ICURT_DATA.*env_vars"):
        check_data_root_in_job("data", JOB)
    check_data_root_in_job("/shared/icurt-data", JOB)
    check_data_root_in_job("data", {})


def test_no_dsn_in_a_job_is_refused_before_an_embedded_server_starts(make_config, monkeypatch):
    from icurt.db.connection import resolve_dsn

    with pytest.raises(IcurtError, match="no database DSN reached this Ray job.*ICURT_DSN.*env_vars"):
        refuse_embedded_server_in_job(JOB)
    refuse_embedded_server_in_job({})
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")
    cfg = make_config("db.dsn=")
    with pytest.raises(IcurtError, match="no database DSN"):
        resolve_dsn(cfg)
    assert resolve_dsn(make_config()) == make_config().db.dsn   # a DSN that reached it is used
