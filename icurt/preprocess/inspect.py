"""`icurt inspect preprocess [RUN]`: what a preprocess run holds, from its files alone."""

from __future__ import annotations

import numpy as np
import pandas as pd

from icurt.dataset import load_dataset
from icurt.files import read_json, read_parquet, read_toml
from icurt.runs import Run

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def describe(run: Run) -> str:
    """A plain-text report of a preprocess run: samples, labels, distributions, per-feature values."""
    ds = load_dataset(run.path)
    cohort = read_json(run.file("cohort.json"))
    imputation = read_json(run.file("imputation.json"))
    kept = read_parquet(run.file("5_window") / "stays.parquet")
    n, hours, n_features = ds.features.shape
    died = int(ds.labels.sum())
    from icurt.stages.query import describe_dataset

    lines = [f"preprocess run {run.run_id} (from query run {run.inputs.get('query', '?')}, "
             f"engine {run.meta.get('engine', '?')})", f"dataset: {describe_dataset(run.meta)}", _method_line(run),
             f"samples: {n:,} × {hours} h × {n_features} features, float32",
             f"labels: died {died:,} ({died / n:.1%}), survived {n - died:,}",
             "rows left after each filter: " + ", ".join(f"{k} {v:,}" for k, v in cohort["filters"].items()),
             f"values: min {ds.features.min():.4f}, max {ds.features.max():.4f}",
             "", _quantile_table(kept, hours), "", _feature_table(ds, imputation, cohort.get("median_filled", {}))]
    return "\n".join(lines)


METHOD_KEYS = ("statistics", "interpolation", "inclusion", "hour_bins", "potassium_source", "calcium_source")


def _method_line(run: Run) -> str:
    """The profile and the preprocessing choices the run was made with (its config.toml)."""
    settings = read_toml(run.file("config.toml")).get("preprocess", {})
    return (f"profile {run.meta.get('profile', '?')}: "
            + ", ".join(f"{key} {settings.get(key, '?')}" for key in METHOD_KEYS))


def _quantile_table(kept: pd.DataFrame, hours: int) -> str:
    header = f"{'per stay':<28}" + "".join(f"{f'q{int(q * 100)}':>9}" for q in QUANTILES)
    rows = [header]
    for column, label in (("hours_with_data", f"hours with data (of {hours})"),
                          ("n_measurements", "measurements"),
                          ("features_never_measured", "features never measured")):
        values = kept[column].quantile(list(QUANTILES)).to_numpy()
        rows.append(f"{label:<28}" + "".join(f"{v:>9.1f}" for v in values))
    return "\n".join(rows)


def _feature_table(ds, imputation: dict, median_filled: dict) -> str:
    rows = [f"{'feature':<12}{'min':>8}{'max':>8}{'mean':>8}{'p_low':>10}{'p_high':>10}"
            f"{'median':>10}{'imputed':>9}{'median-filled':>15}"]
    for f, name in enumerate(ds.feature_names):
        values, stats = ds.features[:, :, f], ds.normalisation[name]
        filled = f"{median_filled[name]:.1%}" if name in median_filled else "–"
        rows.append(f"{name:<12}{values.min():>8.3f}{values.max():>8.3f}{float(np.mean(values)):>8.3f}"
                    f"{stats['p_low']:>10.4g}{stats['p_high']:>10.4g}{stats['median']:>10.4g}"
                    f"{imputation[name]:>9.1%}{filled:>15}")
    rows.append("(min/max/mean: scaled values in [0, 1]; p_low/p_high/median: clinical units; "
                "imputed: share of stays where the feature was never measured in the window; "
                "median-filled: share filled with the median, nothing to interpolate from)")
    return "\n".join(rows)
