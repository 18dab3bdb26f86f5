"""Attack budgets: how large an adversarial change may be, in the units a clinician reads.

A budget bounds a perturbation P (N, T, F) of scaled features in three ways, any of them optional:
- L0: at most `max_nonzero` hour × feature cells changed (the attack keeps the largest |P|);
- L∞ per feature: |P_tj| ≤ linf_scale × clinical_step_j, the step given in clinical units and
  turned into scaled units with the preprocess run's scaling range: scaled = (v − p_low) /
  (p_high − p_low), so a change of c clinical units is c / (p_high − p_low) scaled units;
- measured-only: only cells that hold a measurement (the dataset's `measured` mask) may change,
  never an interpolated, held or imputed value.
Budgets of one curve nest (a larger k or scale admits every example a smaller one admits), so an
example found under a smaller budget also satisfies every larger one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from icurt.dataset import scaling_range
from icurt.errors import IcurtError


@dataclass(frozen=True)
class Budget:
    """One budget: 0 means "no bound" for max_nonzero and linf_scale."""

    max_nonzero: int        # L0: at most this many changed cells per sample (0: any number)
    linf_scale: float       # L∞: |change| ≤ this × the feature's clinical step (0: no bound)
    measured_only: bool     # only measured cells may change

    @property
    def label(self) -> str:
        parts = [f"k≤{self.max_nonzero}" if self.max_nonzero else "any k",
                 f"|Δ|≤{self.linf_scale:g}×step" if self.linf_scale else "any |Δ|",
                 "measured cells" if self.measured_only else "all cells"]
        return ", ".join(parts)


def scaled_steps(clinical_step: Mapping[str, float], normalisation: Mapping, feature_names: Sequence[str]) -> np.ndarray:
    """(F,) each feature's clinical step in scaled units: step / (p_high − p_low).

    IcurtError naming the first feature with no step or no scaling range (the budget would be
    meaningless for it)."""
    steps = np.empty(len(feature_names))
    for j, name in enumerate(feature_names):
        scale = scaling_range(normalisation, name)
        if name not in clinical_step or scale is None:
            why = "no clinical step in [fragility.clinical_step]" if name not in clinical_step \
                else "no scaling range in the preprocess run's normalisation.json"
            raise IcurtError(f"feature '{name}' has {why}; a clinical-unit budget needs both")
        steps[j] = clinical_step[name] / (scale[1] - scale[0])
    return steps


def to_clinical(values: np.ndarray, normalisation: Mapping, feature_names: Sequence[str]) -> np.ndarray:
    """Scaled values (..., F) as clinical units: v · (p_high − p_low) + p_low per feature."""
    low, high = np.array([scaling_range(normalisation, n) for n in feature_names], dtype=float).T
    return np.asarray(values, dtype=float) * (high - low) + low


def max_abs_of(budget: Budget, steps: np.ndarray) -> np.ndarray | None:
    """(F,) the L∞ bound in scaled units, or None when the budget has none."""
    return budget.linf_scale * steps if budget.linf_scale else None


def project(p: np.ndarray, budget: Budget, max_abs: np.ndarray | None, measured: np.ndarray | None) -> np.ndarray:
    """The budget's projection of perturbations p (N, T, F): clip to ±max_abs per feature, zero the
    cells that may not change, keep the max_nonzero largest |P| of each sample. The box
    x + P ∈ [0, 1] is the attack's own and is kept by clipping, which never enlarges |P|."""
    p = np.array(p, dtype=np.float32, copy=True)
    if max_abs is not None:
        bound = np.asarray(max_abs, dtype=np.float32)[None, None, :]
        p = np.clip(p, -bound, bound)
    if budget.measured_only:
        if measured is None:
            raise IcurtError("a measured-only budget needs the dataset's measured mask; rerun `icurt preprocess`")
        p = np.where(measured, p, 0.0).astype(np.float32)
    k = budget.max_nonzero
    flat = p.reshape(len(p), -1)
    if k and k < flat.shape[1]:
        drop = np.argsort(-np.abs(flat), axis=1, kind="stable")[:, k:]
        np.put_along_axis(flat, drop, 0.0, axis=1)
    return flat.reshape(p.shape)


def within(p: np.ndarray, budget: Budget, max_abs: np.ndarray | None, measured: np.ndarray | None,
           tolerance: float = 1e-6) -> np.ndarray:
    """(N,) whether each perturbation satisfies the budget."""
    ok = np.ones(len(p), bool)
    if budget.max_nonzero:
        ok &= (p != 0).reshape(len(p), -1).sum(axis=1) <= budget.max_nonzero
    if max_abs is not None:
        ok &= (np.abs(p) <= np.asarray(max_abs)[None, None, :] + tolerance).all(axis=(1, 2))
    if budget.measured_only:
        ok &= ~((p != 0) & ~measured).any(axis=(1, 2))
    return ok
