"""The README's job recipe as written, against a local Ray head with token authentication on: its
`ray job submit` command (with the test head's address and a short command for the entrypoint)
reaches the head with the token, hands the job the DSN and the absolute data root through the
runtime_env, and the job writes its run there. Without the token the submission fails clearly;
inside a job without them icurt refuses to guess (tests/test_ray_job.py)."""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from ray_head import ray_head

ROOT = Path(__file__).resolve().parents[2]
SECTION = "- **A Ray head on one machine**"


def readme_submit_command() -> str:
    """The `ray job submit ...` command of the README's local-head recipe, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(SECTION):]
    block = block[block.index("```bash") + len("```bash"):block.index("```", block.index("```bash") + 7)]
    lines = [line.strip() for line in block.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("ray job submit"))
    command = []
    for line in lines[start:]:
        command.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            break
    return " ".join(command)


def test_the_readme_command_is_found_and_passes_dsn_data_and_token():
    command = readme_submit_command()
    assert command.startswith("ray job submit --address http://127.0.0.1:8265 --working-dir . ")
    assert '\\"ICURT_DSN\\": \\"$ICURT_DSN\\"' in command and '\\"ICURT_DATA\\": \\"$ICURT_DATA\\"' in command
    assert command.endswith("-- python jobs/entrypoint.py run --config configs/default.toml")
    text = (ROOT / "README.md").read_text()
    assert "export RAY_AUTH_MODE=token" in text[text.index(SECTION):]


@pytest.mark.slow
def test_the_readme_job_command_works_against_a_head_with_token_auth(pg_dsn, tmp_path):
    from icurt.config import load_config, with_overrides
    from icurt.db.synth.cohort import run_synth
    from icurt.runs import RunStore

    schema = "jobtest"
    data = tmp_path / "data"
    cfg = with_overrides(load_config(ROOT / "tests/deploy/tiny.toml", env={}),
                         [f"db.dsn={pg_dsn}", f"db.schema={schema}", f"paths.data={data}"])
    run_synth(cfg, stays=cfg.synth.stays, seed=cfg.synth.seed)

    token = tmp_path / "auth_token"
    token.write_text(uuid.uuid4().hex + uuid.uuid4().hex)
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    with ray_head(env=auth) as (address, _):
        command = readme_submit_command().replace("http://127.0.0.1:8265", address).replace(
            "run --config configs/default.toml", f"query --config tests/deploy/tiny.toml --set db.schema={schema}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env |= {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
                "ICURT_DSN": pg_dsn, "ICURT_DATA": str(data)}
        without = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=120)
        assert without.returncode != 0
        assert "Authentication required" in without.stdout + without.stderr, without.stderr[-2000:]

        done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env | auth, capture_output=True, text=True,
                              timeout=300)
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs[-3000:]
    assert "embedded PostgreSQL" not in logs, logs[-3000:]
    run = RunStore(data).latest("query")   # read from the DSN, written to the data root the job was handed
    assert run.path.is_relative_to(data) and any(run.path.iterdir())
    assert re.search(rf"query run {run.run_id} completed", logs), logs[-3000:]
