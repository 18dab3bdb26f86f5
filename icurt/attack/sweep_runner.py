"""The fragility sweep's Ray layer: one Ray task per (curve, batch), each with the model and the
data from the object store, retried by Ray when its worker dies (`max_retries`), its result written
to the run as it lands so an interrupted sweep resumes with the tasks it finished.

A task runs one curve's budgets in order on one batch (icurt/attack/sweep.py): the budgets of a
curve depend on each other (a sample flipped under a smaller budget is not attacked again), the
batches and curves do not. The attack is deterministic, so a task's result does not depend on
where it ran or how often it was retried. Each task asks for the placement the stage gives it (a
share of a GPU, [fragility].gpus_per_task), so several tasks keep one GPU busy at once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from icurt.attack.sweep import Cell, sweep_curve
from icurt.errors import IcurtError
from icurt.placement import Placement, WorkerSetup

log = logging.getLogger("icurt")
PROGRESS_EVERY_S = 10.0


@dataclass(frozen=True)
class SweepTask:
    name: str                  # icurt/attack/fragility_run.py task_name()
    curve: list[Cell]
    sample_index: np.ndarray   # rows of the dataset


def sweep_task(checkpoint, features, labels, measured, warm_p, task: SweepTask, hp, method, steps: np.ndarray,
               iterations: int, worker: WorkerSetup) -> dict[str, np.ndarray]:
    """Run one task (in a Ray worker or in-process): per cell of the curve and sample of the batch
    success, found_at, attacked, unverified, adv_logits, and the examples as COO (p_cell, p_sample,
    p_t, p_f, p_value; p_sample a position of the swept samples)."""
    rows = task.sample_index
    device = worker.torch_device()
    result = sweep_curve(checkpoint.build(device), np.asarray(features)[rows], np.asarray(labels)[rows], hp,
                         method, task.curve, steps, None if measured is None else np.asarray(measured)[rows],
                         None if warm_p is None else np.asarray(warm_p)[rows], iterations, device=device)
    cell, sample, t, f = np.nonzero(result.p)
    return {"success": result.success, "found_at": result.found_at, "attacked": result.attacked,
            "unverified": result.unverified, "adv_logits": result.adv_logits, "p_cell": cell.astype(np.int16),
            "p_sample": rows[sample], "p_t": t.astype(np.int16), "p_f": f.astype(np.int16),
            "p_value": result.p[cell, sample, t, f]}


def run_sweep(ray, placement: Placement, max_retries: int, tasks: list[SweepTask], on_task: Callable,
              checkpoint, features, labels, measured, warm_p, hp, method, steps, iterations: int,
              task_function: Callable = sweep_task) -> None:
    """Every task on the cluster; `on_task(task, arrays)` as each lands (in the order they finish)."""
    shared = [ray.put(v) for v in (checkpoint, features, labels, measured, warm_p)]
    resources = placement.resources
    remote = ray.remote(task_function).options(num_cpus=resources["CPU"], num_gpus=resources.get("GPU", 0),
                                            max_retries=max_retries)
    pending = {remote.remote(*shared, task, hp, method, steps, iterations, placement.worker()): task
               for task in tasks}
    started = last = time.perf_counter()
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        task = pending.pop(ready[0])
        try:
            arrays = ray.get(ready[0])
        except ray.exceptions.RayError as exc:
            for ref in pending:
                ray.cancel(ref)
            raise IcurtError(f"fragility task {task.name} failed after {max_retries} retries "
                             f"({type(exc).__name__}); finished tasks are kept: rerun with --resume") from None
        on_task(task, arrays)
        done += 1
        if time.perf_counter() - last >= PROGRESS_EVERY_S or not pending:
            last = time.perf_counter()
            log.info("fragility: %d/%d tasks done (%.1f s)", done, len(tasks), last - started)
