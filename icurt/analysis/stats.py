"""Attack statistics (pure numpy/pandas): success rates, perturbation sizes, where P falls.

A *direction* is named by the original label: "0to1" = label-0 samples pushed to 1, "1to0" the
reverse; the group "all" pools both. P is in scaled [0, 1] units; n = successful samples of a group.
- success rate = successful / attacked samples; samples not attacked (misclassified, skipped)
  are counted apart and never enter a rate.
- distributions (first and best example) are over successful samples: n_nonzero (elements with
  P ≠ 0), L1 = ‖P‖₁ and max |P| from results.parquet; count, mean, population sd, quantiles.
- location statistics, hour t and feature j: PP_tj = (samples with P_tj ≠ 0) / n;
  MP_tj = max |P_tj| (0 where never perturbed); mean |P| is over non-zero elements only. Per
  feature: sample_frequency = fraction of samples with P_tj ≠ 0 at some hour, cell_frequency =
  mean_t PP_tj; per hour the same over features.
- susceptibility (Sun et al., KDD 2018) over the successful samples of one direction (here of
  any group): S_tj = MP_tj · PP_tj, feature score S_j = Σ_t S_tj, hour score H_t = Σ_j S_tj.
- clinical size: Δclinical = median |P| over the feature's non-zero elements × (p_high − p_low) of
  normalisation.json, since scaled = (v − p_low) / (p_high − p_low).
A group without successful samples gets no location rows (the report says so), not NaN rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from icurt.analysis.groups import (  # noqa: F401 (also imported from here)
    DIRECTIONS, GROUP_TITLE, GROUPS, ORIGINAL_LABEL, LocationStats, group_rows, location_stats, successful_rows,
)
from icurt.analysis.reference_stats import discovery_table, sign_table, with_mean_nonzero
from icurt.attack.results import KINDS, Perturbations, check_results
from icurt.dataset import scaling_range
from icurt.errors import IcurtError

METRICS = ("n_nonzero", "l1", "maxabs")  # per-sample sizes in results.parquet
METRIC_TITLE = {"n_nonzero": "perturbed elements", "l1": "L1 = Σ|P|", "maxabs": "max |P|",
                "mean_nonzero": "mean non-zero |P|"}
QUANTILES = {"q10": 0.10, "q25": 0.25, "median": 0.50, "q75": 0.75, "q90": 0.90}
CLINICAL_UNITS = {
    "heartrate": "bpm", "sysbp": "mmHg", "diasbp": "mmHg", "tempc": "°C", "resprate": "breaths/min",
    "spo2": "%", "glucose": "mg/dL", "potassium": "mmol/L", "calcium": "mmol/L", "ph": "",
    "pco2": "mmHg", "lactate": "mmol/L", "albumin": "g/dL", "bun": "mg/dL", "creatinine": "mg/dL",
    "sodium": "mEq/L", "bicarbonate": "mEq/L", "platelet": "K/uL", "magnesium": "mg/dL",
}


@dataclass
class Analysis:
    """Every statistic of one attack run, ready for tables, plots and the report."""

    feature_names: list[str]
    shape: tuple[int, int, int]
    results: pd.DataFrame
    headline: pd.DataFrame
    distributions: pd.DataFrame
    locations: dict = field(default_factory=dict)       # (kind, group) -> LocationStats
    feature_stats: pd.DataFrame | None = None
    hour_stats: pd.DataFrame | None = None
    susceptibility: dict = field(default_factory=dict)  # (direction, kind) -> ranked S_j table
    clinical: dict = field(default_factory=dict)        # (direction, kind) -> top features table
    discovery: pd.DataFrame | None = None               # reference_stats: share found by iteration
    signs: pd.DataFrame | None = None                   # reference_stats: raised / lowered per feature


def success_table(results: pd.DataFrame) -> pd.DataFrame:
    """The headline: per group, attacked / skipped / successful counts, success rate, best medians."""
    rows = []
    for group in GROUPS:
        part = group_rows(results, group)
        attacked = int(part["attacked"].astype(bool).sum())
        won = successful_rows(results, group)
        note = ("no samples with this label" if part.empty else "no attacked samples" if not attacked
                else "no successful sample" if won.empty else "")
        rows.append({
            "direction": GROUP_TITLE[group], "samples": len(part), "attacked": attacked,
            "skipped": len(part) - attacked, "successful": len(won),
            "success_rate": len(won) / attacked if attacked else np.nan,
            **{f"median_{m}_best": float(won[f"{m}_best"].median()) if len(won) else np.nan
               for m in METRICS},
            "note": note,
        })
    return pd.DataFrame(rows)


def distribution_table(results: pd.DataFrame) -> pd.DataFrame:
    """count, mean, sd, min, quantiles, max of n_nonzero / L1 / max|P| per kind and group."""
    rows = []
    for kind in KINDS:
        for metric in METRICS:
            for group in GROUPS:
                values = successful_rows(results, group)[f"{metric}_{kind}"].to_numpy(dtype=float)
                values = values[np.isfinite(values)]
                if not len(values):
                    continue
                rows.append({"kind": kind, "metric": metric, "direction": GROUP_TITLE[group],
                             "count": len(values), "mean": values.mean(), "sd": values.std(),
                             "min": values.min(),
                             **{name: float(np.quantile(values, q)) for name, q in QUANTILES.items()},
                             "max": values.max()})
    columns = ["kind", "metric", "direction", "count", "mean", "sd", "min", *QUANTILES, "max"]
    return pd.DataFrame(rows, columns=columns)


def histogram_edges(values: np.ndarray, integer: bool = False, bins: int = 30) -> np.ndarray:
    """Shared bin edges for `values`: one bin per integer when that is at most `bins` bins."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return np.array([0.0, 1.0])
    low, high = values.min(), values.max()
    if integer and high - low + 1 <= bins:
        return np.arange(np.floor(low), np.floor(high) + 2) - 0.5
    if high == low:
        return np.array([low - 0.5, high + 0.5])
    return np.histogram_bin_edges(values, bins=bins)


def _mean_where_nonzero(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    return np.divide(total, count, out=np.full(np.shape(total), np.nan, dtype=float), where=count > 0)


LOCATION_COLUMNS = ["successful_samples", "nonzero_elements", "sample_frequency", "cell_frequency",
                    "mean_abs_nonzero", "max_abs", "susceptibility"]


def feature_table(locations: dict, names: list[str]) -> pd.DataFrame:
    """Per kind, group and feature: frequencies, mean |P| where non-zero, max |P|, S_j = Σ_t S_tj."""
    return _location_table(locations, "feature", names)


def hour_table(locations: dict) -> pd.DataFrame:
    """Per kind, group and hour: frequencies, mean |P| where non-zero, max |P|, H_t = Σ_j S_tj."""
    return _location_table(locations, "hour", None)


def _location_table(locations: dict, along: str, names: list[str] | None) -> pd.DataFrame:
    """The (hour × feature) maps summed over the other axis: one row per feature or per hour."""
    keep = 1 if along == "feature" else 0       # the axis of the (T, F) maps that stays
    rows = []
    for (kind, group), st in locations.items():
        if not st.n_samples:
            continue
        other = st.count.shape[1 - keep]
        count, total = st.count.sum(axis=1 - keep), st.sum_abs.sum(axis=1 - keep)
        mean = _mean_where_nonzero(total, count)
        score = st.susceptibility.sum(axis=1 - keep)
        max_abs = st.max_abs.max(axis=1 - keep)
        samples = st.samples_by_feature if along == "feature" else st.samples_by_hour
        for i in range(st.count.shape[keep]):
            rows.append({"kind": kind, "direction": group, along: names[i] if names else i,
                         "successful_samples": st.n_samples, "nonzero_elements": int(count[i]),
                         "sample_frequency": samples[i] / st.n_samples,
                         "cell_frequency": count[i] / (st.n_samples * other),
                         "mean_abs_nonzero": mean[i], "max_abs": max_abs[i],
                         "susceptibility": score[i]})
    return pd.DataFrame(rows, columns=["kind", "direction", along, *LOCATION_COLUMNS])


SUSCEPTIBILITY_COLUMNS = ["rank", "feature", "score", "nonzero_elements", "sample_frequency",
                          "max_abs", "peak_hour"]


def susceptibility_table(st: LocationStats, names: list[str]) -> pd.DataFrame:
    """Features ranked by S_j (ties keep feature order); peak_hour = argmax_t S_tj where S_j > 0."""
    if not st.n_samples:
        return pd.DataFrame(columns=SUSCEPTIBILITY_COLUMNS)
    s_tj = st.susceptibility
    score = s_tj.sum(axis=0)
    table = pd.DataFrame({
        "feature": names, "score": score, "nonzero_elements": st.count.sum(axis=0),
        "sample_frequency": st.samples_by_feature / st.n_samples, "max_abs": st.max_abs.max(axis=0),
        "peak_hour": pd.array([int(np.argmax(s_tj[:, j])) if score[j] > 0 else None
                               for j in range(len(names))], dtype="Int64"),
    })
    table = table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table[SUSCEPTIBILITY_COLUMNS]


CLINICAL_COLUMNS = ["rank", "feature", "score", "median_abs_p", "scale_min", "scale_max",
                    "median_change", "max_change", "unit", "note"]


def clinical_table(ranked: pd.DataFrame, st: LocationStats, names: list[str],
                   normalisation: Mapping, top: int) -> pd.DataFrame:
    """The `top` most susceptible features (S_j > 0): typical and largest |P| in clinical units."""
    rows = []
    for item in ranked[ranked["score"] > 0].head(top).itertuples():
        j = names.index(item.feature)
        median_p, max_p = float(st.median_abs_by_feature[j]), float(st.max_abs[:, j].max())
        scale = scaling_range(normalisation, item.feature)
        span = scale[1] - scale[0] if scale else np.nan
        rows.append({"rank": item.rank, "feature": item.feature, "score": item.score,
                     "median_abs_p": median_p,
                     "scale_min": scale[0] if scale else np.nan, "scale_max": scale[1] if scale else np.nan,
                     "median_change": median_p * span, "max_change": max_p * span,
                     "unit": CLINICAL_UNITS.get(item.feature, ""),
                     "note": "" if scale else "no scaling statistics for this feature"})
    return pd.DataFrame(rows, columns=CLINICAL_COLUMNS)


def analyse(results: pd.DataFrame, perturbations: dict[str, Perturbations], shape: tuple,
            names: list[str], normalisation: Mapping, top_features: int,
            iterations: int | None = None) -> Analysis:
    """All statistics of one attack run (`iterations`: its budget, for the discovery curves)."""
    check_results(results)
    if len(names) != shape[2]:
        raise IcurtError(f"{len(names)} feature names for {shape[2]} features in perturbations.npz; "
                         "the attack run's feature_names.json does not match — rerun `icurt attack`")
    analysis = Analysis(list(names), shape, with_mean_nonzero(results), success_table(results),
                        distribution_table(results), discovery=discovery_table(results, iterations),
                        signs=sign_table(perturbations, results, names))
    for kind in KINDS:
        for group in GROUPS:
            samples = successful_rows(results, group)["sample_index"].to_numpy(dtype=np.int64)
            analysis.locations[kind, group] = location_stats(perturbations[kind], samples, shape)
    analysis.feature_stats = feature_table(analysis.locations, names)
    analysis.hour_stats = hour_table(analysis.locations)
    for direction in DIRECTIONS:
        for kind in KINDS:
            st = analysis.locations[kind, direction]
            ranked = susceptibility_table(st, names)
            analysis.susceptibility[direction, kind] = ranked
            analysis.clinical[direction, kind] = clinical_table(ranked, st, names, normalisation,
                                                                top_features)
    return analysis
