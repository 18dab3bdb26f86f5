"""The full attack's Ray layer: a pool of AttackWorker actors, batches handed to idle ones, retries.

Each actor builds the model once from a Checkpoint taken from the object store (never from the
driver's disk) and reads the feature array from the object store. A batch
whose actor dies is queued again for a live actor up to `max_batch_retries` times, and the pool
starts a new actor in the dead one's place up to `max_restarts` times (the pool, not Ray, restarts
them: Ray logs an error line for a restartable actor whose constructor takes an object-store
reference); a batch result is accepted once, so every sample appears once.
The attack is deterministic (P starts at 0; no random draws), so a batch's result does not
depend on which actor ran it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from icurt.attack.attacker import AttackHparams
from icurt.attack.samples import SampleResults
from icurt.config import AttackMethod
from icurt.errors import IcurtError
from icurt.placement import Placement, WorkerSetup

log = logging.getLogger("icurt")
TASKS_PER_ACTOR = 2  # one running, one queued, so an actor never waits for the driver


class AttackWorker:
    """One actor of the pool (a plain class, made a Ray actor by AttackPool; also usable in-process)."""

    def __init__(self, checkpoint, hp: AttackHparams, method: AttackMethod, iterations: int,
                 worker: WorkerSetup = WorkerSetup(use_gpu=False, threads=1)):
        self.device = worker.torch_device()
        self.model = checkpoint.build(self.device)
        self.hp, self.method, self.iterations = hp, method, iterations

    def attack(self, batch_index: int, sample_index: np.ndarray, features: np.ndarray,
               labels: np.ndarray) -> tuple[int, dict]:
        """(batch_index, SampleResults fields) for the samples `sample_index` of the dataset."""
        from icurt.attack.samples import attack_samples

        results = attack_samples(self.model, features[sample_index], labels[sample_index], self.hp,
                                 self.method, self.iterations, device=self.device)
        return batch_index, {f.name: getattr(results, f.name) for f in fields(results)}


@dataclass(frozen=True)
class PoolSpec:
    num_actors: int
    placement: Placement    # Ray resources of one actor
    max_restarts: int
    max_batch_retries: int


Progress = Callable[[int, SampleResults], None]


class AttackPool:
    """num_actors AttackWorker actors holding one model; `run` attacks a list of sample batches."""

    def __init__(self, ray, spec: PoolSpec, checkpoint, hp: AttackHparams, method: AttackMethod,
                 iterations: int, worker_class=AttackWorker):
        self.ray, self.spec = ray, spec
        resources = spec.placement.resources
        remote_class = ray.remote(worker_class).options(
            num_cpus=resources["CPU"], num_gpus=resources.get("GPU", 0), max_restarts=0)
        checkpoint_ref = ray.put(checkpoint)  # held by the pool, so a replacement actor finds it
        # The driver picks the device: with GPUs unassigned, Ray may leave CUDA visible to an actor.
        self._new_actor = lambda: remote_class.remote(checkpoint_ref, hp, method, iterations,
                                                      spec.placement.worker())
        self.actors = [self._new_actor() for _ in range(spec.num_actors)]
        self._generation = [0] * spec.num_actors  # bumped when an actor is replaced

    def run(self, features: np.ndarray, labels: np.ndarray, batches: list[np.ndarray],
            on_batch: Progress | None = None, keep_results: bool = True,
            only: list[int] | None = None) -> dict[int, SampleResults]:
        """Every batch's SampleResults (by batch index); `on_batch(batch_index, results)` as each lands.

        With keep_results=False only on_batch sees them (the dense perturbations are not all held);
        `only` names the batches to attack (a resumed run's unfinished ones; default all).
        """
        from ray.exceptions import RayActorError

        features_ref, labels_ref = self.ray.put(features), self.ray.put(labels)
        queue = deque(range(len(batches)) if only is None else only)
        retries = {b: 0 for b in queue}
        deaths = {a: 0 for a in range(len(self.actors))}
        live = set(deaths)
        in_flight: dict = {}  # ObjectRef -> (batch index, actor index, its generation)
        self._last_failed_on: dict[int, int] = {}  # batch -> actor it died on
        self.failures: list[tuple[int, int]] = []  # (batch, actor) of every actor death
        done: dict[int, SampleResults | None] = {}
        while queue or in_flight:
            self._submit(queue, in_flight, live, batches, features_ref, labels_ref)
            ready, _ = self.ray.wait(list(in_flight), num_returns=1)
            batch, actor, generation = in_flight.pop(ready[0])
            try:
                _, values = self.ray.get(ready[0])
            except RayActorError as exc:
                self.failures.append((batch, actor))
                if generation == self._generation[actor]:  # not a task queued on an actor already replaced
                    deaths[actor] += 1
                    if deaths[actor] > self.spec.max_restarts:
                        live.discard(actor)
                    else:
                        self.actors[actor] = self._new_actor()
                        self._generation[actor] += 1
                retries[batch] += 1
                if retries[batch] > self.spec.max_batch_retries:
                    raise IcurtError(f"attack batch {batch} failed {retries[batch]} times (its actor died: "
                                     f"{type(exc).__name__}); raise [attack].max_batch_retries or check "
                                     "the workers' memory") from None
                log.warning("attack: actor %d died on batch %d; retrying it (retry %d of %d)", actor, batch,
                            retries[batch], self.spec.max_batch_retries)
                self._last_failed_on[batch] = actor
                queue.appendleft(batch)
                continue
            if batch not in done:
                results = SampleResults(**values)
                done[batch] = results if keep_results else None
                if on_batch is not None:
                    on_batch(batch, results)
        return done

    def _submit(self, queue, in_flight, live, batches, features_ref, labels_ref) -> None:
        if not live:
            raise IcurtError("every attack actor died more often than it may restart; "
                             "check the workers' logs (memory, GPU) and run `icurt attack` again")
        load = {a: 0 for a in live}
        for _, actor, generation in in_flight.values():
            if actor in load and generation == self._generation[actor]:
                load[actor] += 1
        while queue:
            # A retried batch goes to another actor when one has room: its own may be gone for good.
            avoid = self._last_failed_on.get(queue[0])
            actor = min(load, key=lambda a: (a == avoid and len(load) > 1, load[a], a))
            if load[actor] >= TASKS_PER_ACTOR:
                return
            batch = queue.popleft()
            ref = self.actors[actor].attack.remote(batch, batches[batch], features_ref, labels_ref)
            in_flight[ref] = (batch, actor, self._generation[actor])
            load[actor] += 1

    def shutdown(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
