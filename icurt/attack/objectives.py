"""Quality scores of adversarial perturbations (the objectives of attack tuning), pure numpy.

Per sample, with P its best perturbation (T × F elements):
  sparsity              = 1 − (non-zero elements of P) / (T · F)
  max_num_nonzero_perts = 1 if non-zero elements < n_critical else 0
  sparse_small          = sparsity / ‖P‖₁
  sparse_small_max      = sparsity / max |P|
A trial scores the sum over the samples that have an adversarial example (higher is better).
The reference's max_num_nonzero_perts counts n_nonzero ≤ its `max_perts` m, i.e. n_critical = m + 1
here; icurt's [attack_method].max_perts is another thing, a cap inside the attack.
An all-zero P (never adversarial for a correctly classified sample) scores 0 on the ratios.
"""

from __future__ import annotations

import math

import numpy as np

from icurt.choices import OBJECTIVES
from icurt.errors import IcurtError


def perturbation_sizes(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(non-zero element count, L1, max |P|) per sample of p (n, T, F)."""
    p = np.asarray(p, dtype=np.float64)
    flat = np.abs(p).reshape(len(p), int(np.prod(p.shape[1:])))
    if flat.shape[1] == 0 or len(flat) == 0:
        zeros = np.zeros(len(p))
        return zeros.astype(np.int64), zeros, zeros
    return (flat != 0).sum(axis=1), flat.sum(axis=1), flat.max(axis=1)


def per_sample_scores(name: str, p: np.ndarray, n_critical: int) -> np.ndarray:
    """The objective `name` of each sample's perturbation p (n, T, F)."""
    if name not in OBJECTIVES:
        raise IcurtError(f"unknown attack objective '{name}'; choose from {', '.join(OBJECTIVES)}")
    p = np.asarray(p)
    if p.ndim != 3:
        raise ValueError(f"perturbations must be (n, T, F), got shape {p.shape}")
    n_nonzero, l1, maxabs = perturbation_sizes(p)
    if name == "max_num_nonzero_perts":
        return (n_nonzero < n_critical).astype(np.float64)
    sparsity = 1.0 - n_nonzero / max(p.shape[1] * p.shape[2], 1)
    if name == "sparsity":
        return sparsity
    size = l1 if name == "sparse_small" else maxabs
    return np.divide(sparsity, size, out=np.zeros_like(sparsity), where=size > 0)


def objective_score(name: str, best_p: np.ndarray, n_critical: int) -> float:
    """Sum over the successful samples' best perturbations (n, T, F) of the per-sample score."""
    return float(per_sample_scores(name, best_p, n_critical).sum())


def attack_score(objective: str, results, n_critical: int) -> float:
    """A tuning trial's score: the objective summed over the samples with an adversarial example
    (their best ones); -inf when no sample has one."""
    score = objective_score(objective, results.best_p[results.success], n_critical)
    return score if not math.isnan(score) else -math.inf
