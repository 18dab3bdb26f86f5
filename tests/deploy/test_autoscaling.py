"""On the cluster cluster.yaml describes (a CPU head, GPU workers that autoscale from zero), GPU
work asks for GPUs so the autoscaler adds GPU workers: tune-model's trials and the attack's actors
land there. Simulated with Ray's fake multi-node autoscaler in its own process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("autoscaling_scenario.py")


@pytest.mark.slow
def test_gpu_work_lands_on_autoscaled_gpu_workers(tmp_path, pg_dsn):
    result = subprocess.run([sys.executable, str(SCENARIO), str(tmp_path / "data"), pg_dsn],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    found = json.loads(next(ln for ln in result.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    # no GPU at the start, but the autoscaler can add two single-GPU workers
    assert found["gpus_at_start"] == 0 and found["max_gpus_at_start"] == 2
    assert found["nodes_at_start"]["gpu_workers"] == [] and len(found["nodes_at_start"]["head"]) == 1
    gpu_workers = set(found["nodes"]["gpu_workers"])
    assert gpu_workers, "the autoscaler added no GPU worker"
    assert found["trial_nodes"] and set(found["trial_nodes"]) <= gpu_workers, found
    assert found["actor_nodes"] and set(found["actor_nodes"]) <= gpu_workers, found
    assert found["actor_resources"] == {"CPU": 1.0, "GPU": 1.0}
