"""A separate Ray head for deploy tests: `ray start --head --block` on free ports (or the given
dashboard port), in its own temp dir, stopped by ending its own `--block` process (never `ray stop`,
which ends every Ray on the machine)."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dashboard_answers(address: str) -> bool:
    try:
        urllib.request.urlopen(address, timeout=2)
        return True
    except urllib.error.HTTPError:
        return True   # it answered (e.g. 401 without the token)
    except OSError:
        return False


@contextmanager
def ray_head(dashboard_port: int | None = None, env: dict | None = None, timeout_s: float = 120):
    """Yield (dashboard URL, the head's --block process) once its dashboard answers on 127.0.0.1."""
    dashboard = dashboard_port or free_port()
    ray_cli = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}
    env.pop("RAY_ADDRESS", None)
    # a short temp dir: Ray's Unix sockets live under it (108-byte limit); its ray_current_cluster too
    temp_dir = tempfile.mkdtemp(prefix="rh-", dir="/tmp")
    log = open(Path(temp_dir) / "head.log", "w")  # noqa: SIM115 (closed with the head)
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--num-cpus=2", "--include-dashboard=true",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--port={free_port()}",
         f"--temp-dir={temp_dir}",
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--ray-client-server-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=temp_dir)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + timeout_s
        while not dashboard_answers(address):
            assert head.poll() is None, f"the Ray head exited before its dashboard came up: {(Path(temp_dir) / 'head.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "the Ray dashboard did not come up"
            time.sleep(0.5)
        yield address, head
    finally:
        head.send_signal(signal.SIGTERM)   # `--block`: ends this head's processes, no other Ray's
        head.wait(timeout=120)
        log.close()
