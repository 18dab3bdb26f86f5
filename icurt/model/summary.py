"""Cross-validation summary: per-fold best metrics, their mean and sample sd (pure, no Ray).

`summary.json` = {"folds": [{"fold", "best_epoch", "metrics": {...}}], "mean": {...}, "sd": {...}}.
The sd is the sample standard deviation over folds (ddof=1, as "mean ± sd" over k folds is
conventionally reported; NaN for a single fold).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from icurt.errors import IcurtError
from icurt.files import read_json, write_json, write_text

SUMMARY_METRICS = ("auroc", "auprc", "f1", "precision", "recall", "accuracy", "val_loss")
SUMMARY_JSON, SUMMARY_TXT = "summary.json", "summary.txt"


def summarize_folds(folds: list[dict]) -> dict:
    """The summary.json dict from [{"fold", "best_epoch", "metrics"}] (sorted by fold)."""
    folds = sorted(folds, key=lambda f: f["fold"])
    table = {m: np.array([float(f["metrics"][m]) for f in folds]) for m in SUMMARY_METRICS}
    mean = {m: float(np.mean(v)) for m, v in table.items()}
    sd = {m: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for m, v in table.items()}
    return {"folds": [{"fold": int(f["fold"]), "best_epoch": int(f["best_epoch"]),
                       "metrics": {m: float(f["metrics"][m]) for m in SUMMARY_METRICS}} for f in folds],
            "mean": mean, "sd": sd}


def _cell(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def format_summary(summary: dict) -> str:
    """A plain-text table: one row per fold's best checkpoint, then mean ± sd of each metric."""
    names = list(SUMMARY_METRICS)
    lines = [f"{'fold':>4} {'best_epoch':>10} " + " ".join(f"{n:>9}" for n in names)]
    for fold in summary["folds"]:
        lines.append(f"{fold['fold']:>4} {fold['best_epoch']:>10} "
                     + " ".join(f"{_cell(fold['metrics'][n]):>9}" for n in names))
    lines.append("")
    lines.append(f"mean ± sd over {len(summary['folds'])} folds (sd with ddof=1):")
    for n in names:
        lines.append(f"  {n:<10} {_cell(summary['mean'][n])} ± {_cell(summary['sd'][n])}")
    return "\n".join(lines) + "\n"


def read_summary(run_path: Path) -> dict:
    path = Path(run_path) / SUMMARY_JSON
    if not path.is_file():
        raise IcurtError(f"{run_path} holds no {SUMMARY_JSON}; is it a completed train run?")
    return read_json(path)


def write_summary(run_path: Path, summary: dict) -> None:
    """summary.json and its table as summary.txt (each written atomically)."""
    write_json(Path(run_path) / SUMMARY_JSON, summary)
    write_text(Path(run_path) / SUMMARY_TXT, format_summary(summary))
