"""What an icurt command run as a Ray job (`ray job submit ... -- python jobs/entrypoint.py ...`)
must be handed, checked before it does anything.

A job's entrypoint runs in the job's uploaded working dir, with the environment of the Ray node that
runs it plus the job's runtime_env env_vars, not the environment of the shell that submitted it. So
`ICURT_DSN=... ray job submit ...` does not reach the job, and without a DSN icurt would quietly
start its own embedded PostgreSQL; the default data root `data` would be a folder of the temporary
upload, which sees none of the user's runs and is deleted with it. Inside a job both are refused,
with the way to pass them: the runtime_env's env_vars.
"""

from __future__ import annotations

import os
from pathlib import Path

from icurt.errors import IcurtError

# Set by Ray's job supervisor in the environment of a job's entrypoint, and only there
# (ray/dashboard/modules/job/job_supervisor.py, _get_driver_env_vars).
JOB_ENV_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"
HOW_TO_PASS = ("pass it to the job in its runtime_env env_vars: ray job submit --runtime-env-json "
               "'{\"env_vars\": {\"ICURT_DSN\": \"postgresql://...\", \"ICURT_DATA\": \"/shared/icurt-data\"}}' "
               "(see the README's \"Ray: local, one GPU, a cluster\")")


def in_ray_job(env: dict[str, str] | None = None) -> bool:
    """Whether this process is the entrypoint of a Ray job."""
    return JOB_ENV_VAR in (os.environ if env is None else env)


def check_data_root_in_job(data_root: str, env: dict[str, str] | None = None) -> None:
    """Inside a Ray job, the data root must be an absolute path (shared storage every node mounts).

    Raises IcurtError for a relative one."""
    if in_ray_job(env) and not Path(data_root).is_absolute():
        raise IcurtError(f"this Ray job's data root '{data_root}' is relative, i.e. inside the job's "
                         f"temporary upload, where none of your runs are: set ICURT_DATA to an absolute "
                         f"path on shared storage and {HOW_TO_PASS}")


def refuse_embedded_server_in_job(env: dict[str, str] | None = None) -> None:
    """Inside a Ray job, no DSN means the user's DSN did not reach the job: raises IcurtError rather
    than starting an embedded PostgreSQL nobody asked for."""
    if in_ray_job(env):
        raise IcurtError(f"no database DSN reached this Ray job (ICURT_DSN in the submitting shell does "
                         f"not travel with `ray job submit`); {HOW_TO_PASS}")
