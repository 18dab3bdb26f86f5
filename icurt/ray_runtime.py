"""Starting or joining Ray from config, in one place: what Ray prints goes to its log files (the
console shows icurt's own lines; `--debug` or [ray].worker_logs shows Ray's too), and a local Ray
that a killed command left behind is ended by the next command that starts one.

A local Ray is a family of processes the driver starts (GCS, raylet, dashboard and runtime-env
agents, workers). When the driver is killed (SIGKILL, a crash), most of them follow it, but the
agents live on. So while a local Ray runs, the driver keeps a record of their pids and start times
under <data>/.ray-drivers/; the next command that starts a local Ray ends the processes of every
record whose driver is gone.

A local Ray never leans on another Ray's dashboard. Ray Train's placement-group cleaner (a detached
actor, ray/train/v2/_internal/execution/controller/placement_group_cleaner.py) asks Ray's state API
every second whether the Train controller is alive, at the URL its cluster's GCS records for the
dashboard. Without a dashboard Ray still records one, at the default 127.0.0.1:8265, where nothing
of that Ray listens: a second Ray started later on the machine (`ray start --head`) binds 8265,
answers "no such actor", and the cleaner removes the placement group of a running fold. So a local
Ray without a dashboard records a free port of the kernel's ephemeral range (never one of the ports a
Ray dashboard takes by default, 8265 and up), where no Ray answers. Workers are also pointed at
their own cluster (below), for the APIs that resolve a cluster rather than a dashboard.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.handlers
import os
import tempfile
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path

from icurt.config import Config
from icurt.errors import IcurtError
from icurt.termination import keeping_sigterm_handler

log = logging.getLogger("icurt")

# A Ray started by ray.init() is not recorded in /tmp/ray/ray_current_cluster (only `ray start`
# writes it), so Ray's state API, called without an address (as Ray Train's placement-group
# cleaner does in its actors), finds a cluster that file names, possibly long gone, and waits on
# it: each fold then ends ~12 s late. Every worker of a local Ray is pointed at its own cluster
# (not the driver: its RAY_ADDRESS would outlive ray.shutdown()).
LOCAL_RUNTIME_ENV = {"worker_process_setup_hook": "icurt.ray_runtime.point_ray_apis_at_this_cluster"}
RECORDS = ".ray-drivers"
RECORD_EVERY_S = 5.0
RAY_LOG_FILE = "icurt_ray_console.log"


def point_ray_apis_at_this_cluster() -> None:
    """Set RAY_ADDRESS in this (worker) process to the cluster it is connected to."""
    import ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def unanswered_dashboard_port() -> int:
    """A free TCP port from the kernel's ephemeral range, above the ports Ray dashboards try by
    default (8265 + 50 retries): the dashboard address a local Ray without a dashboard records."""
    import socket

    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port > DASHBOARD_PORTS_OF_OTHER_RAYS:
            return port


DASHBOARD_PORTS_OF_OTHER_RAYS = 8265 + 50


def init_ray(cfg: Config):
    """ray.init() for this config, unless Ray is already initialised; returns the ray module. icurt's
    SIGTERM handler, which ray.init replaces, is put back (icurt/termination.py)."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's new console output ignores verbose=0
    import ray

    if ray.is_initialized():
        return ray
    worker_logs = cfg.ray.worker_logs or log.isEnabledFor(logging.DEBUG)
    kwargs: dict = {"include_dashboard": cfg.ray.include_dashboard, "log_to_driver": worker_logs,
                    "configure_logging": False}
    if cfg.ray.include_dashboard:
        kwargs.update(dashboard_host=cfg.ray.dashboard_host, dashboard_port=cfg.ray.dashboard_port)
    local = not cfg.ray.address and not os.environ.get("RAY_ADDRESS")  # in `ray job submit`: its cluster
    if cfg.ray.address:
        kwargs["address"] = cfg.ray.address
    elif local:
        # A bare ray.init() joins any Ray already running on this machine; "local" means a fresh one.
        kwargs.update(address="local", runtime_env=LOCAL_RUNTIME_ENV)
        if not cfg.ray.include_dashboard:
            kwargs["dashboard_port"] = unanswered_dashboard_port()
        if cfg.ray.num_cpus:
            kwargs["num_cpus"] = cfg.ray.num_cpus
        if cfg.ray.num_gpus >= 0:
            kwargs["num_gpus"] = cfg.ray.num_gpus
        end_what_dead_drivers_left(cfg.paths.data)
    console = None if worker_logs else RayConsoleToFile()
    try:
        with console.catching() if console else nullcontext(), keeping_sigterm_handler():
            ray.init(**kwargs)
    except ConnectionError as exc:
        raise IcurtError(f"cannot reach the Ray cluster at '{cfg.ray.address}': {exc}; "
                         "check [ray].address (\"\" starts a local Ray)") from None
    except Exception as exc:
        if not started_too_slowly(exc):
            raise
        raise IcurtError(f"Ray did not start in time ({_first_sentence(exc)}); the machine is probably busy: "
                         "retry when it is less loaded, give Ray fewer CPUs (--set ray.num_cpus=N), or start "
                         "Ray once with `ray start --head` and pass --set ray.address=auto") from None
    finally:
        if console is not None:
            console.open_file(_session_logs(ray))
    if local:
        DriverRecord(Path(cfg.paths.data) / RECORDS).start()
    log.info("Ray: %s", describe_resources(ray.cluster_resources()))
    return ray


def describe_resources(resources: dict) -> str:
    """A cluster's resources in words: "2 CPUs, 1 GPU, 6.0 GiB object store, 1 node" (from
    ray.cluster_resources(): counts, memory in bytes, one "node:<ip>" key per node)."""
    nodes = sum(1 for key in resources if key.startswith("node:") and key != "node:__internal_head__")
    count = lambda key, noun: f"{resources.get(key, 0):g} {noun}{'' if resources.get(key, 0) == 1 else 's'}"  # noqa: E731
    return (f"{count('CPU', 'CPU')}, {count('GPU', 'GPU')}, "
            f"{resources.get('object_store_memory', 0) / 2**30:.1f} GiB object store, "
            f"{nodes} node{'' if nodes == 1 else 's'}")


def started_too_slowly(exc: BaseException) -> bool:
    """Whether ray.init failed because Ray's processes did not come up in time: Ray 2.x raises a
    bare Exception ("The current node timed out during startup", ray/_private/node.py: the raylet
    did not register with the GCS within 30 s) or a TimeoutError (services.wait_for_node)."""
    return isinstance(exc, TimeoutError) or "timed out during startup" in str(exc)


def _first_sentence(exc: BaseException) -> str:
    return " ".join(str(exc).split()).split(". ")[0].rstrip(".") or type(exc).__name__


def _session_logs(ray) -> Path:
    node = getattr(ray._private.worker, "_global_node", None)
    if node is not None:
        return Path(node.get_logs_dir_path())
    return Path(tempfile.gettempdir())


class RayConsoleToFile:
    """Ray's console output, moved into <session>/logs/icurt_ray_console.log: the log records of the
    `ray` loggers (the token-auth notice, Tune's slow-operation warnings) and the messages the
    raylet sends the driver (e.g. its worker-count warning). Records made before the session
    folder exists are held in memory and written once it does."""

    def __init__(self):
        import ray._private.worker as ray_worker

        self.buffer = _Buffer(capacity=10_000, flushLevel=logging.CRITICAL + 1)
        self.buffer.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        original = ray_worker.print_to_stdstream
        if getattr(original, "icurt_quiet", False):
            return

        def print_to_stdstream(data, ignore_prefix: bool):
            if data.get("pid") == "raylet":  # error messages from the raylet, not task output
                for line in data.get("lines", []):
                    logging.getLogger("ray").warning("(raylet) %s", line)
                return
            original(data, ignore_prefix)

        print_to_stdstream.icurt_quiet = True
        ray_worker.print_to_stdstream = print_to_stdstream

    @contextmanager
    def catching(self):
        """While ray.init runs: it clears the `ray` logger's handlers (configure_logging=False), so
        its records would reach logging's last-resort handler, the console; they come here instead."""
        saved, logging.lastResort = logging.lastResort, self.buffer
        try:
            yield
        finally:
            logging.lastResort = saved

    def open_file(self, folder: Path) -> None:
        """Write what was held, and every later record of Ray's loggers, to the file in `folder`."""
        for logger in _ray_loggers():
            logger.handlers = [h for h in logger.handlers if not _is_console(h)] + [self.buffer]
        try:
            target = logging.FileHandler(folder / RAY_LOG_FILE)
        except OSError:
            return  # the records stay in memory rather than on the console
        target.setFormatter(self.buffer.formatter)
        self.buffer.setTarget(target)
        self.buffer.flush()
        self.buffer.capacity = 1  # from now on straight to the file


class _Buffer(logging.handlers.MemoryHandler):
    """The handler RayConsoleToFile puts on Ray's loggers (one per process: a later one replaces it)."""


def _ray_loggers() -> list[logging.Logger]:
    loggers = [logging.getLogger("ray")]
    for name, logger in logging.root.manager.loggerDict.items():
        if name.startswith("ray.") and isinstance(logger, logging.Logger) and logger.handlers:
            loggers.append(logger)
    return loggers


def _is_console(handler: logging.Handler) -> bool:
    return isinstance(handler, _Buffer) or (isinstance(handler, logging.StreamHandler)
                                            and not isinstance(handler, logging.FileHandler))


class DriverRecord:
    """<records>/<driver pid>.json: this driver and the processes of its local Ray, refreshed every
    RECORD_EVERY_S while Ray runs and removed when it stops (or the driver exits normally)."""

    def __init__(self, folder: Path):
        from icurt.processes import ProcessId

        self.folder = folder
        self.driver = ProcessId.this()
        self.path = folder / f"{self.driver.pid}.json"

    def start(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.write()
        except OSError as exc:
            log.debug("cannot record the local Ray's processes: %s", exc)
            return
        atexit.register(self.remove)
        threading.Thread(target=self._refresh, name="icurt-ray-record", daemon=True).start()

    def write(self) -> None:
        from icurt.files import write_json
        from icurt.processes import ProcessId, descendants

        children = [ProcessId.of(p).as_dict() for p in descendants(self.driver.pid) if _running(p)]
        write_json(self.path, {"driver": self.driver.as_dict(), "processes": children})

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _refresh(self) -> None:
        import ray

        stopped = threading.Event()
        while not stopped.wait(RECORD_EVERY_S):
            if not ray.is_initialized():
                self.remove()
                return
            try:
                self.write()
            except OSError:
                return


def _running(process) -> bool:
    import psutil

    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def end_what_dead_drivers_left(data_root: str | Path) -> int:
    """End the processes recorded by drivers under `data_root` that are gone; returns how many."""
    from icurt.processes import ProcessId, end_processes, still_running

    folder = Path(data_root) / RECORDS
    ended = 0
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            driver = ProcessId(**record["driver"])
            recorded = [ProcessId(**entry) for entry in record["processes"]]
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if still_running(driver) is not None:
            continue  # another icurt command, still at work
        left = [p for p in (still_running(entry) for entry in recorded) if p is not None]
        if left:
            count = end_processes(left, grace_s=1.0)
            ended += count
            log.info("ended %d Ray process(es) left by an icurt command that died (pid %d): %s", count,
                     driver.pid, ", ".join(str(p.pid) for p in left))
        path.unlink(missing_ok=True)
    return ended
