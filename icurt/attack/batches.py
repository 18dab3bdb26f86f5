"""The full attack's samples: which dataset rows are attacked, their batches, and the per-batch
results written to the run as batches land (a BatchStore in <run>/batches/), so that an
interrupted attack resumes with the batches it has not finished, and the run's table and
perturbation arrays are gathered from those files alike whether it was interrupted or not."""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from icurt.attack.results import BatchStore, merge_perturbations, results_table, sparse_perturbations
from icurt.attack.samples import SampleResults
from icurt.dataset import Dataset
from icurt.errors import IcurtError

BATCHES_FOLDER = "batches"   # the finished batches of a running attack (BatchStore)

log = logging.getLogger("icurt")
PROGRESS_EVERY_S = 10.0


def select_samples(num_samples: int, max_num_samples: int, seed: int) -> np.ndarray:
    """Dataset rows to attack: all of them, or max_num_samples drawn with `seed`, in dataset order."""
    if num_samples <= max_num_samples:
        return np.arange(num_samples, dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(num_samples, size=max_num_samples, replace=False)
    return np.sort(chosen).astype(np.int64)


def select_deaths_first(labels: np.ndarray, max_num_samples: int, seed: int) -> np.ndarray:
    """Rows of `labels` (N,) to keep, in row order: every death (label 1) while they fit, then the
    rest of max_num_samples drawn among the survivors with `seed` (select_samples). Deaths are the
    rarer class and the direction a fragility headline is about, so none makes room for a survivor."""
    deaths, survivors = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    kept_deaths = deaths[select_samples(len(deaths), max_num_samples, seed)]
    room = max_num_samples - len(kept_deaths)
    kept_survivors = survivors[select_samples(len(survivors), room, seed)] if room else survivors[:0]
    return np.sort(np.concatenate([kept_deaths, kept_survivors])).astype(np.int64)


def cut_batches(sample_index: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [sample_index[i:i + batch_size] for i in range(0, len(sample_index), batch_size)]


def samples_digest(batches: list[np.ndarray]) -> str:
    """A digest of the batches' sample indexes (which samples, in which batches)."""
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(np.asarray(batch, np.int64).tobytes() + b"|")
    return digest.hexdigest()


class BatchCollector:
    """Writes each batch's table rows and COO arrays to the run's batch store as it lands; logs
    samples done and successes. `plan` (the attack's settings) must match a resumed run's."""

    def __init__(self, run_folder: Path, dataset: Dataset, batches: list[np.ndarray], plan: dict):
        self.dataset, self.batches = dataset, batches
        self.store = BatchStore(Path(run_folder) / BATCHES_FOLDER, {
            **plan, "num_batches": len(batches), "samples": samples_digest(batches)})
        self.total = int(sum(len(b) for b in batches))
        finished = [b for b in range(len(batches)) if _key(b) in self.store.done()]
        self.done = self.resumed_samples = int(sum(len(batches[b]) for b in finished))
        self.successes = int(sum(self.store.read(_key(b))[0]["success"].sum() for b in finished))
        self.resumed_batches = len(finished)
        self.started = self.last_log = time.perf_counter()

    def missing(self) -> list[int]:
        """Indexes of the batches no finished file holds yet."""
        done = self.store.done()
        return [b for b in range(len(self.batches)) if _key(b) not in done]

    def __call__(self, batch: int, results: SampleResults) -> None:
        index = self.batches[batch]
        table = results_table(index, self.dataset.stay_ids[index], self.dataset.labels[index], results)
        self.store.write(_key(batch), table, sparse_perturbations(index, results))
        self.done += len(index)
        self.successes += int(results.success.sum())
        now = time.perf_counter()
        if now - self.last_log >= PROGRESS_EVERY_S or self.done == self.total:
            self.last_log = now
            log.info("attack: %d/%d samples done, %d successes so far (%.1f samples/s)", self.done, self.total,
                     self.successes, (self.done - self.resumed_samples) / max(now - self.started, 1e-9))

    def results(self) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        """The table (batch order) and merged COO arrays of every batch, read from their files."""
        if self.missing():
            raise IcurtError(f"the attack returned no results for {len(self.missing())} batch(es); run "
                             "`icurt attack --resume` with this run's id to attack only those")
        parts = [self.store.read(_key(b)) for b in range(len(self.batches))]
        table = pd.concat([rows for rows, _ in parts], ignore_index=True) if parts else None
        return table, merge_perturbations([arrays for _, arrays in parts])


def _key(batch: int) -> str:
    return f"{batch:06d}"
