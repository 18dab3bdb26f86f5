"""cluster.yaml is a valid Ray cluster-launcher config; the Dockerfile installs what the jobs run."""

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def load_cluster_config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def validate(config: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_validates_against_rays_schema():
    validate(load_cluster_config())


def test_schema_check_is_real():
    broken = load_cluster_config()
    broken["available_node_types"]["gpu_worker"]["resources"] = "one GPU please"
    with pytest.raises(Exception):
        validate(broken)
    broken = load_cluster_config()
    broken["head_node_type"] = "nope"
    with pytest.raises(ValueError):
        validate(broken)


def test_cluster_shape_cpu_head_autoscaling_gpu_workers_shared_data():
    config = load_cluster_config()
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    gpu_workers = [n for n in nodes.values() if n["resources"].get("GPU", 0) >= 1]
    assert gpu_workers and gpu_workers[0]["max_workers"] > gpu_workers[0]["min_workers"]
    assert "-e ICURT_DATA=/mnt/icurt/data" in config["docker"]["run_options"]
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])


def test_dockerfile_installs_icurt_and_everything_a_job_reads():
    text = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in text and 'pip install --no-cache-dir ".[bench]"' in text
    for folder in ("icurt", "configs", "sql", "jobs"):
        assert f"COPY --chown=ray:users {folder} ./{folder}" in text


def test_the_job_entrypoint_runs_the_cli_from_a_bare_working_dir(tmp_path):
    """`python jobs/entrypoint.py <command>` as `ray job submit --working-dir .` runs it: no install,
    the commands are the CLI's (one per stage of the table)."""
    import subprocess
    import sys

    from icurt.stages import STAGE_NAMES

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ""}   # the interpreter only, icurt not installed
    site = subprocess.run([sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True).stdout.strip()
    result = subprocess.run([sys.executable, "-S", str(ROOT / "jobs" / "entrypoint.py"), "--help"],
                            capture_output=True, text=True, cwd=tmp_path,
                            env={**env, "PYTHONPATH": site})
    assert result.returncode == 0, result.stderr
    for stage in STAGE_NAMES:
        assert f"    {stage}" in result.stdout
    assert "jobs/entrypoint.py" in (ROOT / "cluster.yaml").read_text()
