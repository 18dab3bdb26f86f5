"""The reference study's analyses that icurt adds to its own (pure numpy/pandas).

Over the attacked samples of a direction (groups.py's groups; "first" and "best" examples):
- discovery curve: share_k = (samples whose example was found at iterate ≤ k) / attacked samples,
  k = 0 … iterations; iterate k is the perturbation after k updates, so its end value is the
  success rate.
- per example: mean non-zero |P| = L1 / n_nonzero (the reference's histogram of "mean magnitude
  of the non-zero elements").
- per (hour t, feature j), over the successful samples: gpp_tj = PP_tj (the share of examples
  with P_tj ≠ 0), ganzp_tj = mean |P_tj| over those non-zero elements (NaN where there are none)
  and sensitivity_tj = gpp_tj / ganzp_tj, high where small perturbations often make an example.
- sign per feature: the non-zero elements that raise it (P > 0) and that lower it (P < 0).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from icurt.analysis.groups import DIRECTIONS, GROUP_TITLE, LocationStats, group_rows, successful_rows
from icurt.attack.results import KINDS, Perturbations

DISCOVERY_COLUMNS = ["direction", "kind", "iteration", "found", "attacked", "share"]
SIGN_COLUMNS = ["direction", "kind", "feature", "raised", "lowered", "share_raised", "mean_p"]


def discovery_table(results: pd.DataFrame, iterations: int | None) -> pd.DataFrame:
    """Per direction and kind, the share of attacked samples with an example by iterate k
    (k = 0 … iterations; iterations None → the largest recorded iterate). Empty without the
    first_iteration / best_iteration columns."""
    if not {"first_iteration", "best_iteration"} <= set(results.columns):
        return pd.DataFrame(columns=DISCOVERY_COLUMNS)
    if iterations is None:
        iterations = int(max(results["first_iteration"].max(), results["best_iteration"].max(), 0))
    steps = np.arange(iterations + 1)
    frames = []
    for direction in DIRECTIONS:
        rows = group_rows(results, direction)
        attacked = rows[rows["attacked"].astype(bool)]
        for kind in KINDS:
            found_at = attacked.loc[attacked["success"].astype(bool), f"{kind}_iteration"].to_numpy(np.int64)
            found = np.searchsorted(np.sort(found_at), steps, side="right")
            frames.append(pd.DataFrame({
                "direction": direction, "kind": kind, "iteration": steps, "found": found,
                "attacked": len(attacked), "share": found / len(attacked) if len(attacked) else np.nan}))
    return pd.concat(frames, ignore_index=True)[DISCOVERY_COLUMNS]


def with_mean_nonzero(results: pd.DataFrame) -> pd.DataFrame:
    """results with mean_nonzero_{first,best} = L1 / n_nonzero (NaN where nothing is perturbed)."""
    out = results.copy()
    for kind in KINDS:
        count = out[f"n_nonzero_{kind}"].to_numpy(dtype=float)
        l1 = out[f"l1_{kind}"].to_numpy(dtype=float)
        out[f"mean_nonzero_{kind}"] = np.divide(l1, count, out=np.full(len(out), np.nan), where=count > 0)
    return out


def mean_nonzero_map(st: LocationStats) -> np.ndarray:
    """ganzp_tj (T, F): mean |P_tj| over the non-zero elements; NaN where none."""
    return np.divide(st.sum_abs, st.count, out=np.full(st.count.shape, np.nan), where=st.count > 0)


def sensitivity_map(st: LocationStats) -> np.ndarray:
    """gpp_tj / ganzp_tj (T, F); NaN where P_tj was never non-zero (needs st.n_samples > 0)."""
    ganzp = mean_nonzero_map(st)
    return np.divide(st.frequency, ganzp, out=np.full(ganzp.shape, np.nan), where=st.count > 0)


def sign_table(perturbations: dict[str, Perturbations], results: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Per direction, kind and feature over the successful samples: elements raised (P > 0) and
    lowered (P < 0), the share raised (NaN where never perturbed) and the mean signed P of the
    non-zero elements (scaled units)."""
    rows = []
    for direction in DIRECTIONS:
        samples = successful_rows(results, direction)["sample_index"].to_numpy(dtype=np.int64)
        for kind in KINDS:
            pert = perturbations[kind]
            keep = np.isin(pert.sample, samples) & (pert.value != 0)
            feature, value = pert.f[keep], pert.value[keep]
            raised = np.bincount(feature[value > 0], minlength=len(names))
            lowered = np.bincount(feature[value < 0], minlength=len(names))
            total = np.bincount(feature, weights=value, minlength=len(names))
            for j, name in enumerate(names):
                count = raised[j] + lowered[j]
                rows.append({"direction": direction, "kind": kind, "feature": name, "raised": int(raised[j]),
                             "lowered": int(lowered[j]), "share_raised": raised[j] / count if count else np.nan,
                             "mean_p": total[j] / count if count else np.nan})
    return pd.DataFrame(rows, columns=SIGN_COLUMNS)


def discovery_summary(discovery: pd.DataFrame, fractions=(0.1, 0.25, 0.5, 1.0)) -> pd.DataFrame:
    """The discovery curves at a few fractions of the budget: one row per direction and kind."""
    rows = []
    for (direction, kind), part in discovery.groupby(["direction", "kind"], sort=False):
        last = int(part["iteration"].max())
        shares = {f"at {int(round(f * last))}": float(part.loc[part["iteration"] == int(round(f * last)),
                                                               "share"].iloc[0]) for f in fractions}
        rows.append({"direction": GROUP_TITLE[direction], "kind": kind,
                     "attacked": int(part["attacked"].iloc[0]), **shares})
    return pd.DataFrame(rows)
