"""The one placement policy: which Ray resources a unit of work asks for (a tuning trial, a Ray
Train worker, an attack actor) and which torch device it then uses. The only reader of
[ray].device and of the cluster's resources.

A cluster is judged by what it can grow to, not by what it holds now: cluster.yaml's GPU workers
autoscale from zero, so at the start the cluster has no GPU, and work that asks for GPUs is what
makes the autoscaler add them. The most a cluster can hold is taken from Ray's own report of its
cluster config when Ray has one, else from the autoscaling config of this cluster's autoscaler
(the `--autoscaling-config` file its monitor runs with, on the head node where jobs run), else it
is what the cluster holds now (a local Ray, a fixed cluster).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from icurt.errors import IcurtError

log = logging.getLogger("icurt")


@dataclass(frozen=True)
class Capacity:
    """CPUs and GPUs the Ray cluster holds now and the most it can hold (autoscaling included)."""

    cpus: float
    gpus: float
    max_cpus: float
    max_gpus: float

    @classmethod
    def fixed(cls, cpus: float, gpus: float) -> "Capacity":
        return cls(cpus, gpus, cpus, gpus)


@dataclass(frozen=True)
class Placement:
    """Ray resources of one unit of work; `use_gpu` when they include a GPU share."""

    resources: dict[str, float]

    @property
    def use_gpu(self) -> bool:
        return self.resources.get("GPU", 0.0) > 0

    @property
    def device(self) -> str:
        return "cuda" if self.use_gpu else "cpu"

    def worker(self) -> "WorkerSetup":
        return WorkerSetup(self.use_gpu, max(1, int(self.resources["CPU"])))


@dataclass(frozen=True)
class WorkerSetup:
    """How a trial, Ray Train worker or actor uses what it was given: a GPU share, or CPU threads."""

    use_gpu: bool
    threads: int

    def torch_device(self) -> str:
        """Inside the Ray worker: set torch's CPU threads; 'cuda' when given a GPU share and CUDA is
        usable, else 'cpu'."""
        import torch

        torch.set_num_threads(self.threads)
        return torch_device(self.use_gpu)


def place(device: str, capacity: Capacity, section: str, cpus: float, gpus: float,
          unit: str = "trial") -> Placement:
    """Resources for one `unit` (trial, worker, actor) that takes `cpus` and, where GPUs are used,
    `gpus`: the settings [section].cpus_per_<unit> and gpus_per_<unit>; `device` is [ray].device.

    IcurtError for a request the cluster can never meet: Ray would wait for it forever.
    """
    cpus_key, gpus_key = f"{section}.cpus_per_{unit}", f"{section}.gpus_per_{unit}"
    if cpus > capacity.max_cpus:
        raise IcurtError(f"{cpus_key} is {cpus:g} but the Ray cluster has {capacity.max_cpus:g} CPUs; "
                         "lower it")
    if device == "cpu":
        return Placement({"CPU": cpus})
    if capacity.max_gpus <= 0:
        if device == "cuda":
            raise IcurtError("[ray].device is 'cuda' but the Ray cluster has no GPU (and its autoscaler "
                             "cannot add one); set --set ray.device=auto or cpu, or join a cluster with GPUs")
        return Placement({"CPU": cpus})
    if gpus <= 0:
        if device == "cuda":
            raise IcurtError(f"[ray].device is 'cuda' but {gpus_key} is 0; give each {unit} a GPU share "
                             "(e.g. 0.25)")
        return Placement({"CPU": cpus})
    if gpus > capacity.max_gpus:
        raise IcurtError(f"{gpus_key} is {gpus:g} but the Ray cluster has {capacity.max_gpus:g} GPUs; "
                         "lower it")
    if gpus > 1 and not float(gpus).is_integer():
        raise IcurtError(f"{gpus_key} is {gpus:g}; above 1 Ray needs a whole number of GPUs")
    return Placement({"CPU": cpus, "GPU": gpus})


def units_that_fit(placement: Placement, capacity: Capacity, per_group: int = 1) -> int:
    """How many groups of `per_group` units fit on the cluster at its largest (at least 0)."""
    totals = {"CPU": capacity.max_cpus, "GPU": capacity.max_gpus}
    # Ray counts resources in units of 1e-4, so 5 shares of 0.2 GPU fill one GPU, though 1 // 0.2 is 4.0
    fits = [int(round(totals[name] * 10_000) // round(amount * per_group * 10_000))
            for name, amount in placement.resources.items() if amount > 0]
    return min(fits) if fits else 0


def torch_device(use_gpu: bool) -> str:
    """Inside a Ray worker: 'cuda' when it was given a GPU share and CUDA is usable, else 'cpu'."""
    import torch

    if use_gpu and not torch.cuda.is_available():
        # a GPU resource without a usable CUDA device (e.g. a custom resource label): use the CPU
        log.warning("this worker was given a GPU but sees no CUDA device; running on the CPU")
    return "cuda" if use_gpu and torch.cuda.is_available() else "cpu"


def cluster_capacity(ray) -> Capacity:
    """The connected cluster's CPUs and GPUs now and at most (see the module docstring)."""
    now = ray.cluster_resources()
    cpus, gpus = float(now.get("CPU", 0.0)), float(now.get("GPU", 0.0))
    most = _reported_maximum() or _autoscaler_maximum(ray) or {}
    return Capacity(cpus, gpus, max(cpus, float(most.get("CPU", 0.0))),
                    max(gpus, float(most.get("GPU", 0.0))))


def _reported_maximum() -> dict | None:
    try:
        from ray._private.state import state

        return state.get_max_resources_from_cluster_config()
    except Exception:  # a private API: its absence only means "no report"
        return None


def _autoscaler_maximum(ray) -> dict | None:
    """Head + max_workers × resources of every node type in the autoscaling config that this
    cluster's autoscaler (its monitor process on this node) was started with."""
    path = _autoscaling_config_path(ray.get_runtime_context().gcs_address)
    if path is None:
        return None
    import yaml

    try:
        config = yaml.safe_load(Path(path).expanduser().read_text())
        totals: dict[str, float] = {}
        for name, node_type in (config.get("available_node_types") or {}).items():
            count = 1 if name == config.get("head_node_type") else int(node_type.get("max_workers", 0))
            for resource, amount in (node_type.get("resources") or {}).items():
                if isinstance(amount, (int, float)):
                    totals[resource] = totals.get(resource, 0.0) + count * float(amount)
        return totals
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return None


def _autoscaling_config_path(gcs_address: str) -> str | None:
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        args = process.info.get("cmdline") or []
        if not any(arg.endswith("autoscaler/_private/monitor.py") for arg in args):
            continue
        options = dict(arg[2:].split("=", 1) for arg in args if arg.startswith("--") and "=" in arg)
        if options.get("gcs-address") == gcs_address and options.get("autoscaling-config"):
            return options["autoscaling-config"]
    return None
