"""The fragility sweep on one batch (plain torch via attack_samples, no Ray): the attack again under
each budget of a curve, smallest budget first.

A curve is a list of nested budgets (icurt/attack/budget.py): the L0 curve k = 1, 2, 4, … at the
clinical step (L∞ scale 1), or the L∞ curve of scales with no L0 bound; each on measured cells
only or on all cells. Work is reused along a curve:
- a sample flipped under a smaller budget keeps that example for every larger budget (the budgets
  nest, so it satisfies them) and is not attacked again;
- every attack starts from the sample's unbudgeted adversarial example (the attack run's best
  one), projected onto the budget, instead of from P = 0 (`warm_start`);
- settled samples leave their batch early (the method's early stop).
So the success rate never falls as the budget grows, and each sample's minimal budget is the first
budget of the curve under which it flipped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from icurt.attack.attacker import AttackHparams
from icurt.attack.budget import Budget, max_abs_of, project
from icurt.attack.samples import attack_samples
from icurt.config import AttackMethod, FragilityConfig

CURVES = ("k", "linf")


@dataclass(frozen=True)
class Cell:
    """One budget of the sweep and the curve it belongs to."""

    curve: str          # "k" (L0 at the clinical step) or "linf" (L∞ scale, no L0 bound)
    cells: str          # "measured" or "all"
    value: float        # k, or the L∞ scale
    budget: Budget


def sweep_curves(fc: FragilityConfig) -> list[list[Cell]]:
    """The sweep's curves, each a list of nested budgets in increasing order."""
    curves = []
    for cells in fc.cells:
        measured = cells == "measured"
        curves.append([Cell("k", cells, k, Budget(k, 1.0, measured)) for k in sorted(fc.l0_budgets)])
        curves.append([Cell("linf", cells, s, Budget(0, s, measured)) for s in sorted(fc.linf_scales)])
    return curves


@dataclass
class CurveResult:
    """Per cell of one curve, for the samples of one batch (arrays indexed like the batch)."""

    cells: list[Cell]
    success: np.ndarray        # (C, B) bool
    found_at: np.ndarray       # (C, B) int64: the iteration of the first example (-1: none; 0: the warm start)
    p: np.ndarray              # (C, B, T, F) float32: the best (lowest-loss) example (zeros: none)
    adv_logits: np.ndarray     # (C, B, 2) float32 (NaN: none)
    attacked: np.ndarray       # (C, B) bool: attacked under this budget (not flipped before)
    unverified: np.ndarray     # (C, B) bool: its claimed flip under this budget failed re-verification


def sweep_curve(model: nn.Module, x: np.ndarray, y: np.ndarray, hp: AttackHparams, method: AttackMethod,
                curve: list[Cell], steps: np.ndarray, measured: np.ndarray | None, warm_p: np.ndarray | None,
                iterations: int, device: str = "cpu") -> CurveResult:
    """Attack x (B, T, F), scaled, labels y (B,), under each budget of `curve` in order.

    `steps` (F,) are the clinical steps in scaled units, `measured` (B, T, F) the dataset's mask,
    `warm_p` (B, T, F) the unbudgeted examples (None: start from P = 0). Every flip is re-verified
    (attack_samples); one that is not counts as none and is flagged in `unverified`."""
    n, t, f = x.shape
    size = len(curve)
    out = CurveResult(curve, np.zeros((size, n), bool), np.full((size, n), -1, np.int64),
                      np.zeros((size, n, t, f), np.float32), np.full((size, n, 2), np.nan, np.float32),
                      np.zeros((size, n), bool), np.zeros((size, n), bool))
    found = np.zeros(n, bool)
    for c, cell in enumerate(curve):
        if c:   # an example under a smaller budget satisfies this one too
            for name in ("success", "found_at", "p", "adv_logits"):
                getattr(out, name)[c] = getattr(out, name)[c - 1]
        todo = np.flatnonzero(~found)
        out.attacked[c, todo] = True
        if not len(todo):
            continue
        budget = cell.budget
        max_abs = max_abs_of(budget, steps)
        allowed = measured[todo] if budget.measured_only else None
        p0 = None if warm_p is None else project(warm_p[todo], budget, max_abs, allowed)
        results = attack_samples(model, x[todo], y[todo], hp, replace(method, max_perts=budget.max_nonzero),
                                 iterations, device=device, p0=p0, max_abs=max_abs, allowed=allowed)
        won = todo[results.success]
        out.unverified[c, todo] = results.unverified
        out.success[c, won] = True
        out.found_at[c, won] = results.first_iteration[results.success]
        out.p[c, won] = results.best_p[results.success]
        out.adv_logits[c, won] = results.adv_logits[results.success]
        found[won] = True
    return out
