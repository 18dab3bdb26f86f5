"""init_ray's local Ray: its workers resolve Ray APIs to their own cluster, whatever stale
cluster record /tmp/ray/ray_current_cluster may hold (Ray Train's cleaner depends on it); what a
killed driver's Ray leaves is ended by the next start; Ray's console noise goes to its log file."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, ray
from icurt.config import load_config, with_overrides
from icurt.ray_runtime import init_ray

init_ray(with_overrides(load_config(env={}), ["ray.num_cpus=1"]))

@ray.remote
def resolved():
    from ray._private.services import get_ray_address_from_environment
    return get_ray_address_from_environment(None, None)

@ray.remote
def state_api():
    from ray.dashboard.utils import get_address_for_submission_client
    return get_address_for_submission_client(None)   # what Ray Train's placement-group cleaner asks

print(json.dumps({"own": ray.get_runtime_context().gcs_address, "worker": ray.get(resolved.remote()),
                  "state_api": ray.get(state_api.remote())}))
ray.shutdown()
"""


def test_workers_of_a_local_ray_resolve_their_own_cluster(tmp_path):
    env_free_of_ray_address = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                          env=env_free_of_ray_address, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    addresses = json.loads(done.stdout.strip().splitlines()[-1])
    assert addresses["worker"] == addresses["own"]
    # not 8265 (nor the 50 ports after it): a Ray started later with a dashboard would answer there
    # that icurt's Train controller does not exist, and the cleaner would remove its folds' resources
    host, port = addresses["state_api"].removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1" and int(port) > 8265 + 50


DRIVER = """
import sys, time
from icurt.cli import configure_logging
from icurt.config import load_config, with_overrides
from icurt.ray_runtime import init_ray

configure_logging(debug=False, quiet=False)

init_ray(with_overrides(load_config(env={}), ["ray.num_cpus=1", f"paths.data={sys.argv[1]}"]))
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _recorded(data) -> dict:
    (path,) = (data / ".ray-drivers").glob("*.json")
    return json.loads(path.read_text())


def test_the_next_start_ends_what_a_killed_driver_left(tmp_path):
    """SIGKILL a driver with a local Ray: its agents outlive it; the next local start ends them."""
    import os
    import signal
    import time

    from icurt.processes import ProcessId, still_running

    data = tmp_path / "data"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    killed = subprocess.Popen([sys.executable, "-c", DRIVER, str(data), "600"], stdout=subprocess.PIPE,
                              text=True, env=env, cwd=tmp_path)
    try:
        assert killed.stdout.readline().strip() == "ready"
        deadline = time.time() + 60
        while len(_recorded(data)["processes"]) < 5 and time.time() < deadline:   # agents recorded
            time.sleep(1)
        recorded = [ProcessId(**entry) for entry in _recorded(data)["processes"]]
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
    time.sleep(5)
    left = [p for p in recorded if still_running(p)]
    assert left, "nothing outlived the driver: the test no longer shows what it is about"

    after = subprocess.run([sys.executable, "-c", DRIVER, str(data), "0"], capture_output=True, text=True,
                           timeout=300, env=env, cwd=tmp_path)
    assert after.returncode == 0, after.stderr[-2000:]
    assert not [p for p in recorded if still_running(p)]
    assert f"Ray process(es) left by an icurt command that died (pid {killed.pid})" in after.stderr
    assert not list((data / ".ray-drivers").glob("*.json"))    # the second driver exited normally


NOISY = """
import logging, sys, time
from icurt.cli import configure_logging
from icurt.config import load_config, with_overrides
from icurt.ray_runtime import init_ray

configure_logging(debug=sys.argv[1] == "debug", quiet=False)
ray = init_ray(with_overrides(load_config(env={}), ["ray.num_cpus=1", f"paths.data={sys.argv[2]}"]))
# what the raylet sends a driver (through the GCS, as its worker-count warning comes) ...
ray._private.utils.publish_error_to_driver("worker_pool_large", "WARNING: 8 PYTHON worker processes have "
                                           "been started", ray._private.worker.global_worker.gcs_client)
# ... and what Tune logs when its searcher is slow
logging.getLogger("ray.tune.utils.util").warning("The `search_alg.on_trial_result` operation took 0.59 s")
time.sleep(3)
logging.getLogger("icurt").info("icurt's own line")
print(ray._private.worker._global_node.get_logs_dir_path())
"""


def test_ray_console_noise_goes_to_its_log_file_and_debug_shows_it(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(mode):
        done = subprocess.run([sys.executable, "-c", NOISY, mode, str(tmp_path / "data")], capture_output=True,
                              text=True, timeout=300, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    quiet = run("quiet")
    console = quiet.stderr.splitlines() + quiet.stdout.splitlines()[:-1]
    assert [line[9:].split(":")[0] for line in console] == ["Ray", "icurt's own line"], console
    logged = (Path(quiet.stdout.splitlines()[-1]) / "icurt_ray_console.log").read_text()
    assert "(raylet) WARNING: 8 PYTHON worker processes" in logged
    assert "search_alg.on_trial_result" in logged

    debug = run("debug")
    shown = debug.stderr + debug.stdout
    assert "8 PYTHON worker processes" in shown and "search_alg.on_trial_result" in shown


TERMINATED = """
import os, signal
from icurt.config import load_config, with_overrides
from icurt.ray_runtime import init_ray
from icurt.termination import Terminated, handle_sigterm, raise_terminated

handle_sigterm()                     # as `icurt` does first
ray = init_ray(with_overrides(load_config(env={}), ["ray.num_cpus=1", f"paths.data={os.getcwd()}/data"]))
print("after ray.init:", signal.getsignal(signal.SIGTERM) is raise_terminated)
try:
    os.kill(os.getpid(), signal.SIGTERM)
    signal.pause()
except Terminated:
    print("raised Terminated")
ray.shutdown()
"""


def test_icurts_sigterm_handler_is_put_back_after_ray_init(tmp_path):
    """ray.init installs Ray's own SIGTERM handlers (its driver's sys.exit, its local node's
    teardown); init_ray puts icurt's back, so a SIGTERM raises Terminated in the driver."""
    done = subprocess.run([sys.executable, "-c", TERMINATED], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-2:] == ["after ray.init: True", "raised Terminated"]


def test_a_ray_that_does_not_start_in_time_is_one_line(tmp_path, monkeypatch):
    """What ray.init raises when the raylet does not register within its 30 s (ray/_private/node.py)."""
    import pytest
    import ray

    from icurt.config import load_config, with_overrides
    from icurt.errors import IcurtError
    from icurt.ray_runtime import init_ray

    def slow_start(**kwargs):
        raise Exception("The current node timed out during startup. This could happen because some of the "
                        "raylet failed to startup or the GCS has become overloaded.")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", slow_start)
    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path}", "ray.num_cpus=1"])
    with pytest.raises(IcurtError) as error:
        init_ray(cfg)
    assert str(error.value) == ("Ray did not start in time (The current node timed out during startup); the machine "
                                "is probably busy: retry when it is less loaded, give Ray fewer CPUs (--set "
                                "ray.num_cpus=N), or start Ray once with `ray start --head` and pass --set "
                                "ray.address=auto")
    monkeypatch.setattr(ray, "init", lambda **kwargs: (_ for _ in ()).throw(ValueError("another fault")))
    with pytest.raises(ValueError, match="another fault"):     # anything else is not said to be slowness
        init_ray(cfg)


def test_the_resources_line_is_counts_in_words():
    from icurt.ray_runtime import describe_resources

    assert describe_resources({"CPU": 2.0, "node:192.0.2.2": 1.0, "node:__internal_head__": 1.0,
                               "object_store_memory": 6456461721.0, "memory": 1.2e10}) == (
        "2 CPUs, 0 GPUs, 6.0 GiB object store, 1 node")   # 6456461721 / 2**30 = 6.01
    assert describe_resources({"CPU": 32.0, "GPU": 1.0, "node:a": 1.0, "node:b": 1.0,
                               "object_store_memory": 2**31}) == "32 CPUs, 1 GPU, 2.0 GiB object store, 2 nodes"
