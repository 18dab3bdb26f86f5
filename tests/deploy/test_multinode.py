"""A simulated two-node cluster (one fake GPU per node) runs tuning trials and attack actors on
both nodes. The scenario runs in its own process so it never meets the session's local Ray."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("multinode_scenario.py")


@pytest.mark.slow
def test_trials_and_attack_actors_use_both_nodes(tmp_path, pg_dsn):
    result = subprocess.run([sys.executable, str(SCENARIO), str(tmp_path / "data"), pg_dsn],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("RESULT "))
    found = json.loads(line[len("RESULT "):])
    assert len(found["cluster_nodes"]) == 2
    assert set(found["trial_nodes"]) == set(found["cluster_nodes"]), found
    assert set(found["actor_nodes"]) == set(found["cluster_nodes"]), found
    assert found["attacked_rows"] == 128
