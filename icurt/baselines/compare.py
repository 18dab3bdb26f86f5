"""The BiLSTM beside its baselines on the same held-out stays, and baselines.json (this module owns
its format).

Every model is scored as the verdict scores the BiLSTM (icurt/analysis/verdict.py): AUROC and
AUPRC as the fold-size-weighted mean over folds of each fold model's score on its own held-out
stays, with 95 % bootstrap percentile intervals drawn within each fold and class (AUPRC vectorised
over the resamples, baselines/auprc.py, equal to scikit-learn's). The best
baseline is the one with the higher AUROC; BiLSTM − best baseline AUROC has a paired interval: the
same resampled stays score both models (as the verdict's model − oracle gap). The banner fires
when that interval's lower end is at or below 0: the BiLSTM is then not shown to be better.

baselines.json: {"n_samples", "n_folds", "resamples", "confidence", "summaries" (the input
columns' blocks), "settings", "models": {name: {"label", "auroc", "auprc", "chosen" (per fold)}},
"bilstm": {"auroc", "auprc"}, "best", "difference" ({value, low, high}: BiLSTM − best AUROC),
"logistic_weights" (per fold: scaler mean and scale, coef, intercept; torch_lr.py rebuilds the
model from them), "hours" (the window's length, which the slope needs; written by
baselines/record.py), "warnings"}. Estimates are {"value", "low", "high"}.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from icurt.analysis.verdict import (CONFIDENCE, RESAMPLES, bootstrap_interval, fold_mean_auroc, interval_text,
                                    strata)
from icurt.baselines.auprc import fold_mean_auprc
from icurt.baselines.fit import MODELS, FoldFit
from icurt.errors import IcurtError
from icurt.files import read_json, write_json

BASELINES_FILE = "baselines.json"


def _estimate(statistic, groups, vectorized: bool = False) -> dict:
    low, high = bootstrap_interval(statistic, groups, vectorized)
    return {"value": float(statistic(*groups)), "low": low, "high": high}


def joined(bilstm: pd.DataFrame, baselines: pd.DataFrame) -> pd.DataFrame:
    """The BiLSTM's held-out predictions (fold, row, label, p_died; predictions.parquet) with the
    baselines' p_<model> of the same rows. IcurtError unless both hold exactly the same held-out
    rows in the same folds with the same labels."""
    a = bilstm[["fold", "row", "label", "p_died"]].sort_values("row").reset_index(drop=True)
    b = baselines.sort_values("row").reset_index(drop=True)
    same = (len(a) == len(b) and np.array_equal(a["row"], b["row"]) and np.array_equal(a["fold"], b["fold"])
            and np.array_equal(a["label"], b["label"]))
    if not same:
        raise IcurtError("the baselines were not scored on the BiLSTM's held-out stays fold by fold; "
                         "fit them on the train run's recorded folds (icurt/baselines/fit.py recorded_folds)")
    return a.join(b[[f"p_{name}" for name in MODELS]])


def compare(frame: pd.DataFrame) -> dict:
    """Held-out AUROC/AUPRC with intervals of the BiLSTM (p_died) and each baseline (p_<model>),
    and BiLSTM − best baseline AUROC with its paired interval; `frame` as `joined` returns it."""
    y = frame["label"].to_numpy().astype(np.int64)
    groups = strata(y, frame["fold"].to_numpy())
    scores = {"bilstm": frame["p_died"].to_numpy(np.float64),
              **{name: frame[f"p_{name}"].to_numpy(np.float64) for name in MODELS}}
    rated = {name: {"auroc": _estimate(fold_mean_auroc(p), groups, vectorized=True),
                    "auprc": _estimate(fold_mean_auprc(y, p), groups, vectorized=True)} for name, p in scores.items()}
    best = max(MODELS, key=lambda name: rated[name]["auroc"]["value"])
    model, base = fold_mean_auroc(scores["bilstm"]), fold_mean_auroc(scores[best])
    difference = _estimate(lambda *g: model(*g) - base(*g), groups, vectorized=True)
    out = {"n_samples": int(len(y)), "n_died": int(y.sum()), "n_folds": len(groups) // 2, "resamples": RESAMPLES,
           "confidence": CONFIDENCE, "bilstm": rated["bilstm"],
           "models": {name: {"label": label, **rated[name]} for name, label in MODELS.items()},
           "best": best, "difference": difference}
    out["warnings"] = banner(out)
    return out


def banner(result: dict) -> list[str]:
    """The warning when the BiLSTM is not shown to beat the best baseline (the difference's
    interval reaches 0 or below; an undefined interval counts as not shown)."""
    d, label = result["difference"], result["models"][result["best"]]["label"]
    if math.isfinite(d["low"]) and d["low"] > 0:
        return []
    return [f"the BiLSTM is not better than the best baseline ({label}): BiLSTM − {label} AUROC "
            f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] (paired 95 % interval reaches 0 or below)"]


def logistic_weights(fits: list[FoldFit]) -> list[dict]:
    """Per fold: the fitted scaler's mean and scale and the regression's coef and intercept."""
    out = []
    for f in fits:
        scaler, lr = f.logistic[0], f.logistic[-1]
        out.append({"fold": f.fold, "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(),
                    "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0])})
    return out


def build_baselines(bilstm: pd.DataFrame, baseline_frame: pd.DataFrame, fits: list[FoldFit],
                    summaries: list[str], settings: dict) -> dict:
    """The baselines.json dict (see the module docstring)."""
    result = compare(joined(bilstm, baseline_frame))
    for name in MODELS:
        result["models"][name]["chosen"] = [{"fold": f.fold, **f.chosen[name]} for f in fits]
    return {**result, "summaries": summaries, "settings": settings, "logistic_weights": logistic_weights(fits)}


def format_baselines(result: dict) -> str:
    """baselines.json as console text: the banner first, then one line per model."""
    lines = [f"WARNING: {w}" for w in result.get("warnings", [])]
    lines.append(f"baselines on the same {result['n_samples']} held-out stays and folds (fold-mean, 95 % intervals; "
                 f"inputs: {', '.join(result.get('summaries', []))} per feature):")
    rows = [("BiLSTM", result["bilstm"])] + [(m["label"], m) for m in result["models"].values()]
    width = max(len(name) for name, _ in rows)
    lines += [f"  {name:<{width}}  AUROC {interval_text(r['auroc'])}   AUPRC {interval_text(r['auprc'])}" for name, r in rows]
    d = result["difference"]
    lines.append(f"  BiLSTM − {result['models'][result['best']]['label']} (best baseline) AUROC "
                 f"{d['value']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] (paired)")
    return "\n".join(lines)


def write_baselines(run_path: Path, result: dict) -> None:
    write_json(Path(run_path) / BASELINES_FILE, result)


def read_baselines(run_path: Path) -> dict | None:
    """A train run's baselines.json, or None for a run written before baselines existed."""
    path = Path(run_path) / BASELINES_FILE
    return read_json(path) if path.is_file() else None
