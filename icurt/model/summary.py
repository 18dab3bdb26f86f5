"""Cross-validation summary: per-fold metrics of the chosen checkpoints on the held-out fold and on
the training fold, their means and sample sds (pure, no Ray).

`summary.json` = {"rule": {...}, "folds": [{"fold", "best_epoch", "epochs_trained", "threshold", "sizes",
"metrics": {...}, "train_metrics": {...}}], "mean", "sd", "train_mean", "train_sd"}.
`metrics` are measured on the fold's held-out samples (never used to fit or to choose, unless
rule.checkpoint_split is "held_out"), `train_metrics` on the samples the model was fitted on
(natural class distribution: the overfitting gap; a train-set evaluation is how the reference's
F1 ≈ 0.97 at 10 % deaths comes about). F1, precision, recall and accuracy are taken at the
fold's threshold, chosen to maximise F1 on the checkpoint-choice samples. The sd is the sample
standard deviation over folds (ddof=1, as "mean ± sd" over k folds is conventionally reported;
NaN for a single fold).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from icurt.errors import IcurtError
from icurt.files import read_json, write_json, write_text

SUMMARY_METRICS = ("auroc", "auprc", "brier", "f1", "precision", "recall", "accuracy", "val_loss")
SUMMARY_JSON, SUMMARY_TXT = "summary.json", "summary.txt"


def _mean_sd(folds: list[dict], key: str) -> tuple[dict, dict]:
    table = {m: np.array([float(f[key][m]) for f in folds]) for m in SUMMARY_METRICS}
    mean = {m: float(np.mean(v)) for m, v in table.items()}
    sd = {m: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for m, v in table.items()}
    return mean, sd


def summarize_folds(folds: list[dict], rule: dict | None = None) -> dict:
    """The summary.json dict from [{"fold", "best_epoch", "metrics", "epochs_trained"?, "train_metrics"?,
    "threshold"?, "sizes"?}] (sorted by fold); `rule` records how checkpoints were chosen."""
    folds = sorted(folds, key=lambda f: f["fold"])
    rows = [{"fold": int(f["fold"]), "best_epoch": int(f["best_epoch"]),
             "epochs_trained": None if f.get("epochs_trained") is None else int(f["epochs_trained"]),
             "threshold": float(f.get("threshold", 0.5)), "sizes": dict(f.get("sizes") or {}),
             "metrics": {m: float(f["metrics"][m]) for m in SUMMARY_METRICS},
             "train_metrics": {m: float((f.get("train_metrics") or {}).get(m, math.nan)) for m in SUMMARY_METRICS}}
            for f in folds]
    mean, sd = _mean_sd(rows, "metrics")
    train_mean, train_sd = _mean_sd(rows, "train_metrics")
    return {"rule": dict(rule or {}), "folds": rows, "mean": mean, "sd": sd,
            "train_mean": train_mean, "train_sd": train_sd}


def _cell(value) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.4f}"


def rule_text(rule: dict) -> str:
    """One line saying how the checkpoints were chosen (the reference rule named as such)."""
    if not rule:
        return "checkpoint rule not recorded (an older train run)"
    where = ("on the held-out fold itself (the reference rule: optimistic)"
             if rule.get("checkpoint_split") == "held_out" else
             f"on an inner validation split (1 of {rule.get('inner_folds')} folds of the training fold)")
    metric = "highest AUROC" if rule.get("checkpoint_metric") == "auroc" else "lowest validation loss"
    return f"folds by {rule.get('split')}; each fold's checkpoint: {metric} {where}"


def format_summary(summary: dict) -> str:
    """Plain text: how checkpoints were chosen, one row per fold (held-out metrics), then mean ± sd
    on the held-out folds beside mean ± sd on the training folds."""
    names = list(SUMMARY_METRICS)
    lines = [rule_text(summary.get("rule") or {}), "",
             "held-out fold, at each fold's threshold (chosen on validation data):",
             f"{'fold':>4} {'best_epoch':>10} {'epochs':>6} {'threshold':>9} " + " ".join(f"{n:>9}" for n in names)]
    for fold in summary["folds"]:
        trained = fold.get("epochs_trained")   # absent in runs written before early stopping
        lines.append(f"{fold['fold']:>4} {fold['best_epoch']:>10} {'-' if trained is None else trained:>6} "
                     f"{_cell(fold.get('threshold', 0.5)):>9} "
                     + " ".join(f"{_cell(fold['metrics'][n]):>9}" for n in names))
    lines += ["", f"mean ± sd over {len(summary['folds'])} folds (sd with ddof=1):",
              f"  {'':<10} {'held-out':>17}   {'training fold':>17}"]
    train_mean, train_sd = summary.get("train_mean") or {}, summary.get("train_sd") or {}
    for n in names:
        lines.append(f"  {n:<10} {_cell(summary['mean'][n]):>8} ± {_cell(summary['sd'][n]):<6}   "
                     f"{_cell(train_mean.get(n)):>8} ± {_cell(train_sd.get(n)):<6}")
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
