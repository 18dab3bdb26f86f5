"""init_ray's local Ray: its workers resolve Ray APIs to their own cluster, whatever stale
cluster record /tmp/ray/ray_current_cluster may hold (Ray Train's cleaner depends on it)."""

import json
import subprocess
import sys

SCRIPT = """
import json, ray
from icurt.config import load_config, with_overrides
from icurt.ray_runtime import init_ray

init_ray(with_overrides(load_config(env={}), ["ray.num_cpus=1"]))

@ray.remote
def resolved():
    from ray._private.services import get_ray_address_from_environment
    return get_ray_address_from_environment(None, None)

print(json.dumps({"own": ray.get_runtime_context().gcs_address, "worker": ray.get(resolved.remote())}))
ray.shutdown()
"""


def test_workers_of_a_local_ray_resolve_their_own_cluster(tmp_path):
    env_free_of_ray_address = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          env=env_free_of_ray_address, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    addresses = json.loads(done.stdout.strip().splitlines()[-1])
    assert addresses["worker"] == addresses["own"]
