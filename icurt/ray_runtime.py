"""Starting or joining Ray from config, in one place."""

from __future__ import annotations

import logging
import os

from icurt.config import Config
from icurt.errors import IcurtError

log = logging.getLogger("icurt")

# A Ray started by ray.init() is not recorded in /tmp/ray/ray_current_cluster (only `ray start`
# writes it), so Ray's state API, called without an address (as Ray Train's placement-group
# cleaner does in its actors), finds a cluster that file names, possibly long gone, and waits on
# it: each fold then ends ~12 s late. Every worker of a local Ray is pointed at its own cluster
# (not the driver: its RAY_ADDRESS would outlive ray.shutdown()).
LOCAL_RUNTIME_ENV = {"worker_process_setup_hook": "icurt.ray_runtime.point_ray_apis_at_this_cluster"}


def point_ray_apis_at_this_cluster() -> None:
    """Set RAY_ADDRESS in this (worker) process to the cluster it is connected to."""
    import ray

    os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address


def init_ray(cfg: Config):
    """ray.init() for this config, unless Ray is already initialised; returns the ray module."""
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
    if cfg.ray.address:
        kwargs["address"] = cfg.ray.address
    elif not os.environ.get("RAY_ADDRESS"):  # inside `ray job submit` Ray joins its own cluster
        # A bare ray.init() joins any Ray already running on this machine; "" means a fresh one.
        kwargs.update(address="local", runtime_env=LOCAL_RUNTIME_ENV)
        if cfg.ray.num_cpus:
            kwargs["num_cpus"] = cfg.ray.num_cpus
        if cfg.ray.num_gpus >= 0:
            kwargs["num_gpus"] = cfg.ray.num_gpus
    try:
        ray.init(**kwargs)
    except ConnectionError as exc:
        raise IcurtError(f"cannot reach the Ray cluster at '{cfg.ray.address}': {exc}; "
                         "check [ray].address (\"\" starts a local Ray)") from None
    log.info("Ray resources: %s", ray.cluster_resources())
    return ray
