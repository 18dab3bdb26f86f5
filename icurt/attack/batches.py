"""The full attack's samples: which dataset rows are attacked, their batches, and the per-batch
results gathered into the run's table and perturbation arrays as batches land."""

from __future__ import annotations

import logging
import time

import numpy as np

from icurt.attack.results import results_table, sparse_perturbations
from icurt.attack.samples import SampleResults
from icurt.dataset import Dataset

log = logging.getLogger("icurt")
PROGRESS_EVERY_S = 10.0


def select_samples(num_samples: int, max_num_samples: int, seed: int) -> np.ndarray:
    """Dataset rows to attack: all of them, or max_num_samples drawn with `seed`, in dataset order."""
    if num_samples <= max_num_samples:
        return np.arange(num_samples, dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(num_samples, size=max_num_samples, replace=False)
    return np.sort(chosen).astype(np.int64)


def cut_batches(sample_index: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [sample_index[i:i + batch_size] for i in range(0, len(sample_index), batch_size)]


class BatchCollector:
    """Collects batch results as table rows and COO arrays; logs samples done and successes."""

    def __init__(self, dataset: Dataset, batches: list[np.ndarray]):
        self.dataset, self.batches = dataset, batches
        self.total = int(sum(len(b) for b in batches))
        self.tables, self.perturbations = [], []
        self.done = self.successes = 0
        self.started = self.last_log = time.perf_counter()

    def __call__(self, batch: int, results: SampleResults) -> None:
        index = self.batches[batch]
        self.tables.append(results_table(index, self.dataset.stay_ids[index], self.dataset.labels[index], results))
        self.perturbations.append(sparse_perturbations(index, results))
        self.done += len(index)
        self.successes += int(results.success.sum())
        now = time.perf_counter()
        if now - self.last_log >= PROGRESS_EVERY_S or self.done == self.total:
            self.last_log = now
            log.info("attack: %d/%d samples done, %d successes so far (%.1f samples/s)", self.done,
                     self.total, self.successes, self.done / max(now - self.started, 1e-9))
