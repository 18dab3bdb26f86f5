"""The pipeline as a Ray job: a local head with its dashboard on 127.0.0.1 accepts
`jobs/pipeline.py` through JobSubmissionClient, the job succeeds, and its artifacts are there."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAD_SCRIPT = """
import sys, ray
ctx = ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
               dashboard_port=int(sys.argv[1]))
print("DASHBOARD", ctx.dashboard_url, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head_with_dashboard(tmp_path):
    """A separate local Ray cluster whose dashboard listens on 127.0.0.1 only."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    head = subprocess.Popen([sys.executable, "-c", HEAD_SCRIPT, str(free_port())], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        for line in head.stdout:
            if line.startswith("DASHBOARD"):
                address = line.split()[1]
                break
        else:
            pytest.fail("the Ray head exited before its dashboard came up")
        assert address.startswith("127.0.0.1:")
        yield f"http://{address}"
    finally:
        head.stdin.close()
        head.wait(timeout=120)


@pytest.mark.slow
def test_pipeline_job_succeeds_with_artifacts(ray_head_with_dashboard, pg_dsn, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from icurt.config import load_config, with_overrides
    from icurt.db.synth import run_synth
    from icurt.runs import STAGES, RunStore

    schema = "jobtest"
    data = tmp_path / "data"
    cfg = with_overrides(load_config(ROOT / "tests/deploy/tiny.toml", env={}),
                         [f"db.dsn={pg_dsn}", f"db.schema={schema}", f"paths.data={data}"])
    run_synth(cfg, stays=cfg.synth.stays, seed=cfg.synth.seed)

    # Ray 2.60 guards the dashboard with a token that the head wrote to ~/.ray/auth_token
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    client = JobSubmissionClient(ray_head_with_dashboard, headers={"Authorization": f"Bearer {token}"})
    job_id = client.submit_job(
        entrypoint=f"{sys.executable} jobs/pipeline.py --config tests/deploy/tiny.toml "
                   f"--set db.schema={schema}",
        runtime_env={"working_dir": str(ROOT), "excludes": ["data", ".venv", ".git", "bench/out"],
                     "env_vars": {"ICURT_DSN": pg_dsn, "ICURT_DATA": str(data)}},
    )
    deadline = time.monotonic() + 1500
    while client.get_job_status(job_id) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, "the pipeline job did not finish in time"
        time.sleep(2)
    logs = client.get_job_logs(job_id)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, logs[-3000:]

    store = RunStore(data)
    analyze = store.latest("analyze")
    assert [r.stage for r in store.lineage(analyze)] == list(reversed(STAGES))
    assert analyze.file("report.html").stat().st_size > 10_000
    assert store.ancestor(analyze, "preprocess").file("dataset.npz").exists()
    assert "report:" in logs
