"""Fragility statistics (pure pandas/scipy): success under a budget with 95 % intervals, each
sample's minimal budget, the headline sentence and worked patient examples.

The sweep table has one row per sample and budget: sample_index, stay_id, label, curve ("k": the
L0 budget at L∞ scale 1; "linf": the L∞ scale with no L0 budget), cells ("measured" | "all"),
budget (k or the scale), success, n_nonzero. A direction is named by the original label, as in
icurt/analysis/stats.py: "1to0" = a correctly predicted death pushed to survival.
Intervals: Wilson score intervals of a binomial proportion (scipy.stats.binomtest).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest

DIRECTIONS = {"1to0": 1, "0to1": 0}
DIRECTION_WORDS = {"1to0": ("correctly predicted deaths", "survival"),
                   "0to1": ("correctly predicted survivors", "death")}
CURVE_COLUMNS = ["curve", "cells", "budget", "direction", "samples", "successes", "success_rate",
                 "ci_low", "ci_high"]


def wilson(successes: int, n: int) -> tuple[float, float]:
    """95 % Wilson interval of successes / n (NaN, NaN when n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def success_curves(sweep: pd.DataFrame) -> pd.DataFrame:
    """Per curve, cells, budget and direction: samples, successes, rate and its 95 % interval."""
    rows = []
    for (curve, cells, budget), part in sweep.groupby(["curve", "cells", "budget"], sort=True):
        for direction, label in DIRECTIONS.items():
            won = part.loc[part["label"] == label, "success"].astype(bool)
            n, k = len(won), int(won.sum())
            low, high = wilson(k, n)
            rows.append({"curve": curve, "cells": cells, "budget": budget, "direction": direction,
                         "samples": n, "successes": k, "success_rate": k / n if n else np.nan,
                         "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def minimal_budgets(sweep: pd.DataFrame, curve: str = "k", cells: str = "measured") -> pd.DataFrame:
    """Per sample: the smallest budget of the curve under which it flipped (NaN: none did)."""
    part = sweep[(sweep["curve"] == curve) & (sweep["cells"] == cells)]
    found = part[part["success"].astype(bool)].groupby("sample_index")["budget"].min()
    samples = part.drop_duplicates("sample_index")[["sample_index", "stay_id", "label"]]
    return samples.assign(minimal_budget=samples["sample_index"].map(found)).reset_index(drop=True)


def headline(curves: pd.DataFrame, k: int, direction: str = "1to0", attacked: int | None = None) -> dict:
    """The quotable number: the share of a direction's samples flipped by at most `k` measured cells,
    each within its clinical step, with its interval and the sentence that states it. `attacked`:
    how many of the direction's samples the attack run attacked; when the sweep took fewer, the
    sentence says so."""
    row = curves[(curves["curve"] == "k") & (curves["cells"] == "measured") & (curves["budget"] == k)
                 & (curves["direction"] == direction)]
    who, to = DIRECTION_WORDS[direction]
    if row.empty or not row["samples"].iloc[0]:
        return {"k": k, "direction": direction, "samples": 0, "sentence":
                f"no {who} were attacked at k = {k}, so there is no headline number"}
    r = row.iloc[0]
    sentence = (f"{100 * r['success_rate']:.1f} % (95 % CI {100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f} %) "
                f"of {int(r['samples'])} {who} flip to {to} by changing at most {k} measured values, "
                "each by at most its default clinical step")
    if attacked and int(r["samples"]) < attacked:
        sentence += f" (drawn at random from the attack run's {attacked}, [fragility].max_num_samples)"
    return {"k": k, "direction": direction, "samples": int(r["samples"]), "successes": int(r["successes"]),
            "success_rate": float(r["success_rate"]), "ci_low": float(r["ci_low"]),
            "ci_high": float(r["ci_high"]), "sentence": sentence}


def worked_examples(minimal: pd.DataFrame, count: int = 3) -> list[int]:
    """Sample indices of up to `count` examples to show: flipped deaths first, fewest cells first."""
    found = minimal.dropna(subset=["minimal_budget"]).copy()
    found["death_first"] = found["label"] != 1
    found = found.sort_values(["death_first", "minimal_budget", "sample_index"], kind="stable")
    return [int(s) for s in found["sample_index"].head(count)]


def changes_table(p: np.ndarray, feature_names: list[str], clinical_x: np.ndarray, clinical_adv: np.ndarray,
                  units: dict[str, str]) -> pd.DataFrame:
    """One sample's changed cells: hour, feature, value before → after in clinical units.

    p, clinical_x, clinical_adv are (T, F): the perturbation (scaled units), the input and the
    adversarial input (clinical units)."""
    hours, features = np.nonzero(p)
    return pd.DataFrame({"hour": hours, "feature": [feature_names[f] for f in features],
                         "before": clinical_x[hours, features], "after": clinical_adv[hours, features],
                         "unit": [units.get(feature_names[f], "") for f in features]})
