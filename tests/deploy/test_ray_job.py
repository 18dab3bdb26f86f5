"""The pipeline as a Ray job: a local head with its dashboard on 127.0.0.1 accepts
`jobs/entrypoint.py run` through JobSubmissionClient, the job succeeds, and its artifacts are there."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head_with_dashboard(tmp_path):
    """A separate Ray head (`ray start --head --block`) with its dashboard on 127.0.0.1 only.

    Every port is chosen free, so it never meets another Ray on the machine (the session's
    local Ray holds the default dashboard-agent port)."""
    dashboard, gcs_port = free_port(), free_port()
    ray_cli = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--num-cpus=2", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--port={gcs_port}",
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--ray-client-server-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 120
        while not dashboard_answers(address):
            assert head.poll() is None, "the Ray head exited before its dashboard came up"
            assert time.monotonic() < deadline, "the Ray dashboard did not come up"
            time.sleep(1)
        yield address
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=120)
        forget_stopped_head(gcs_port)


def forget_stopped_head(gcs_port: int) -> None:
    """`ray start` records its head as the machine's current cluster; `ray stop` would clear the
    record, a SIGTERM does not, and Ray APIs called later without an address would wait on it."""
    from ray._common.utils import get_ray_address_file

    record = Path(get_ray_address_file(None))
    if record.is_file() and record.read_text().strip().endswith(f":{gcs_port}"):
        record.unlink()


def dashboard_answers(address: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(address, timeout=2)
        return True
    except urllib.error.HTTPError:
        return True   # it answered (e.g. 401 before the token)
    except OSError:
        return False


def submit_when_agent_is_up(client, timeout_s: float = 120, **job) -> str:
    """submit_job, retried while the head's job agent is still starting (it answers 500 until then)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return client.submit_job(**job)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


@pytest.mark.slow
def test_pipeline_job_succeeds_with_artifacts(ray_head_with_dashboard, pg_dsn, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from icurt.config import load_config, with_overrides
    from icurt.db.synth.cohort import run_synth
    from icurt.runs import RunStore
    from icurt.stages import STAGE_NAMES

    schema = "jobtest"
    data = tmp_path / "data"
    cfg = with_overrides(load_config(ROOT / "tests/deploy/tiny.toml", env={}),
                         [f"db.dsn={pg_dsn}", f"db.schema={schema}", f"paths.data={data}"])
    run_synth(cfg, stays=cfg.synth.stays, seed=cfg.synth.seed)

    # Ray 2.60 guards the dashboard with a token that the head wrote to ~/.ray/auth_token
    token = (Path.home() / ".ray" / "auth_token").read_text().strip()
    client = JobSubmissionClient(ray_head_with_dashboard, headers={"Authorization": f"Bearer {token}"})
    job_id = submit_when_agent_is_up(
        client,
        entrypoint=f"{sys.executable} jobs/entrypoint.py run --config tests/deploy/tiny.toml "
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
    assert [r.stage for r in store.lineage(analyze)] == list(reversed(STAGE_NAMES))
    assert analyze.file("report.html").stat().st_size > 10_000
    assert store.ancestor(analyze, "preprocess").file("dataset.npz").exists()
    assert "report:" in logs
