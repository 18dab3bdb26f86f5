"""The model-quality verdict of a train run (pure, no Ray): how good the model is on stays it never
saw, with intervals, and a warning banner when the answer is not worth reading.

Computed over the held-out predictions of all folds (each stay is predicted once, by the one fold
model that did not train on it; model/train_run.py predictions.parquet):
- AUROC and AUPRC: the mean over folds (weighted by fold size) of each fold model's score on its
  own held-out stays, so that one model's scores are never ranked against another's (pooling the
  folds' predictions mixes five differently calibrated models, ~0.01 lower on the synthetic
  cohort; `pooled_auroc` records it), with 95 % bootstrap percentile intervals
  (scipy.stats.bootstrap, 1,000 resamples drawn within each fold and class, so no resample lacks a
  class; AUROC as scipy's Mann–Whitney U, vectorised over the resamples);
- the Brier score and a reliability curve (sklearn calibration_curve, 10 quantile bins); a model
  trained on oversampled batches overestimates P(died), which both show;
- F1, precision and recall with each fold's threshold, chosen to maximise F1 on that fold's
  validation data (not 0.5);
- on a synthetic cohort, the oracle's AUROC on the same stays (it knows each stay's latent
  severity) and the achievable ceiling's (the probability given what the 48 h of measurements
  carry, icurt/db/synth/ceiling.py), measured the same way, each with a paired bootstrap interval
  of model − reference (the same resampled stays for both).

The banner warns when the AUROC interval includes 0.5, when a class has fewer than MIN_CLASS
held-out samples, when the cohort has fewer than MIN_COHORT samples (at 10 % deaths and AUROC 0.8
the 95 % interval of AUROC is then wider than ±0.05: Hanley & McNeil 1982), when the checkpoints
were chosen on the reported folds (the reference rule), and when the model beats the oracle by
more than its interval allows (a leak).
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from icurt.files import read_json, write_json
from icurt.model.metrics import auprc, auroc, brier, threshold_metrics

MIN_CLASS = 20
MIN_COHORT = 1000
RESAMPLES, CONFIDENCE, SEED = 1000, 0.95, 0
CALIBRATION_BINS = 10
VERDICT_FILE = "verdict.json"
REFERENCES = {"oracle": "oracle_probability", "ceiling": "ceiling_probability"}


def strata(labels: np.ndarray, folds: np.ndarray | None = None) -> list[np.ndarray]:
    """Row indices per fold and class: [died of fold 0, survived of fold 0, died of fold 1, …]."""
    labels = np.asarray(labels)
    folds = np.zeros(len(labels), dtype=np.int64) if folds is None else np.asarray(folds)
    return [np.flatnonzero((folds == f) & (labels == c)) for f in np.unique(folds) for c in (1, 0)]


def bootstrap_interval(statistic, groups: list[np.ndarray], vectorized: bool = False,
                       resamples: int = RESAMPLES, seed: int = SEED) -> list[float]:
    """[low, high] 95 % percentile interval of statistic(*groups) over bootstrap resamples drawn
    within each group of row indices (scipy.stats.bootstrap with the groups as independent
    samples: strata by fold and class, so no resample lacks a class). With `vectorized` each group
    arrives as (resamples, n) and the statistic returns one value per resample. [nan, nan] when a
    group has fewer than 2 rows or the statistic is not finite on all rows."""
    from scipy.stats import bootstrap

    if min(len(g) for g in groups) < 2 or not np.isfinite(statistic(*groups)):
        return [math.nan, math.nan]
    if vectorized:
        stat = lambda *g, axis=-1: statistic(*(x.astype(np.int64) for x in g))  # noqa: E731
    else:
        stat = lambda *g: statistic(*(x.astype(np.int64) for x in g))  # noqa: E731
    n = sum(len(g) for g in groups)
    result = bootstrap(tuple(groups), stat, paired=False, vectorized=vectorized, n_resamples=resamples,
                       confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed),
                       batch=max(1, int(2e7 // n)))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def fold_mean_auroc(scores: np.ndarray):
    """statistic(died_0, survived_0, died_1, survived_1, …) → the mean over folds, weighted by fold
    size, of the AUROC of `scores` within each fold: the Mann–Whitney U of died vs survived scores
    over n_died · n_survived (scipy; = sklearn's roc_auc_score, ties counted ½), vectorised over
    leading axes. NaN when a score is not finite."""
    from scipy.stats import mannwhitneyu

    scores = np.asarray(scores, dtype=np.float64)
    finite = bool(np.isfinite(scores).all())

    def statistic(*groups):
        shape = np.shape(groups[0])[:-1]
        if not finite:
            return np.full(shape, math.nan) if shape else math.nan
        total, weight = 0.0, 0
        for died, survived in zip(groups[::2], groups[1::2]):
            n_d, n_s = np.shape(died)[-1], np.shape(survived)[-1]
            u = mannwhitneyu(scores[died], scores[survived], axis=-1, method="asymptotic").statistic
            total = total + (n_d + n_s) * u / (n_d * n_s)
            weight += n_d + n_s
        return total / weight

    return statistic


def fold_mean_auprc(labels: np.ndarray, scores: np.ndarray):
    """statistic(*groups) → the fold-size-weighted mean over folds of the AUPRC (sklearn)."""
    def statistic(*groups):
        rows = [np.r_[d, s] for d, s in zip(groups[::2], groups[1::2])]
        return sum(len(r) * auprc(labels[r], scores[r]) for r in rows) / sum(len(r) for r in rows)

    return statistic


def _estimate(statistic, groups, vectorized: bool = False) -> dict:
    value = float(statistic(*groups)) if min(len(g) for g in groups) else math.nan
    low, high = bootstrap_interval(statistic, groups, vectorized)
    return {"value": value, "low": low, "high": high}


def pooled_threshold_metrics(predictions) -> dict[str, float]:
    """F1, precision, recall, accuracy of the held-out predictions, each at its fold's threshold."""
    y = predictions["label"].to_numpy()
    pred = (predictions["p_died"].to_numpy() > predictions["threshold"].to_numpy()).astype(np.float64)
    return threshold_metrics(y, pred, 0.5)


def build_verdict(predictions, rule: dict | None = None) -> dict:
    """The verdict (a JSON-ready dict) from a predictions table: label, p_died, threshold per row
    and optionally oracle_probability / ceiling_probability (see the module docstring)."""
    from sklearn.calibration import calibration_curve

    y = predictions["label"].to_numpy().astype(np.int64)
    p = predictions["p_died"].to_numpy().astype(np.float64)
    groups = strata(y, predictions["fold"].to_numpy() if "fold" in predictions else None)
    verdict = {"n_samples": int(len(y)), "n_died": int(y.sum()), "n_survived": int(len(y) - y.sum()),
               "n_folds": len(groups) // 2, "rule": dict(rule or {}), "resamples": RESAMPLES,
               "confidence": CONFIDENCE,
               "auroc": _estimate(fold_mean_auroc(p), groups, vectorized=True),
               "auprc": _estimate(fold_mean_auprc(y, p), groups),
               "pooled_auroc": auroc(y, p),
               "brier": brier(y, p), "at_threshold": pooled_threshold_metrics(predictions),
               "calibration": None}
    if np.isfinite(p).all() and 0 < y.sum() < len(y):
        fraction, mean_p = calibration_curve(y, np.clip(p, 0, 1), n_bins=CALIBRATION_BINS, strategy="quantile")
        verdict["calibration"] = {"mean_predicted": mean_p.tolist(), "fraction_died": fraction.tolist()}
    for name, column in REFERENCES.items():
        if column in predictions and predictions[column].notna().all():
            q = predictions[column].to_numpy().astype(np.float64)
            model, reference = fold_mean_auroc(p), fold_mean_auroc(q)
            verdict[name] = {"auroc": float(reference(*groups)),
                             "gap": _estimate(lambda *g: model(*g) - reference(*g), groups, vectorized=True)}
    verdict["warnings"] = warnings_of(verdict)
    return verdict


def warnings_of(verdict: dict) -> list[str]:
    """The banner's lines (empty when the verdict is worth reading as it stands)."""
    out = []
    a = verdict["auroc"]
    if not math.isfinite(a["value"]):
        out.append("the model's held-out AUROC is not defined (non-finite scores or one class only)")
    elif math.isnan(a["low"]) or a["low"] <= 0.5 <= a["high"]:
        out.append(f"the AUROC's 95 % interval [{a['low']:.3f}, {a['high']:.3f}] includes 0.5: the model may "
                   "rank no better than chance, and its attack results say little about a useful model")
    for label, n in (("died", verdict["n_died"]), ("survived", verdict["n_survived"])):
        if n < MIN_CLASS:
            out.append(f"only {n} held-out sample(s) {label} (fewer than {MIN_CLASS}): every metric of that "
                       "class is noise")
    if verdict["n_samples"] < MIN_COHORT:
        out.append(f"the cohort has {verdict['n_samples']} samples (fewer than {MIN_COHORT:,}): the AUROC's "
                   "interval is wide and fold-to-fold differences are mostly sampling noise")
    if (verdict.get("rule") or {}).get("checkpoint_split") == "held_out":
        out.append("each fold's checkpoint was chosen on the fold it is scored on (the reference rule): "
                   "the held-out metrics are optimistic")
    gap = (verdict.get("oracle") or {}).get("gap") or {}
    if gap and gap["low"] > 0:
        out.append(f"the model beats the oracle that knows each stay's severity by {gap['value']:.3f} "
                   f"(interval [{gap['low']:.3f}, {gap['high']:.3f}]): information leaks into the features")
    return out


def interval_text(estimate: dict) -> str:
    """An estimate with its interval as the console prints it: "0.812 [0.780, 0.840]"."""
    return f"{estimate['value']:.3f} [{estimate['low']:.3f}, {estimate['high']:.3f}]"


def format_verdict(verdict: dict) -> str:
    """The verdict as console text: the banner first, then the numbers."""
    lines = [f"WARNING: {w}" for w in verdict["warnings"]]
    t = verdict["at_threshold"]
    lines += [f"model quality on {verdict['n_samples']} held-out predictions ({verdict['n_died']} died), mean over "
              f"{verdict.get('n_folds', 1)} fold(s), 95 % bootstrap intervals:",
              f"  AUROC {interval_text(verdict['auroc'])}   AUPRC {interval_text(verdict['auprc'])}   Brier {verdict['brier']:.4f}",
              f"  at each fold's validation-chosen threshold: F1 {t['f1']:.3f}, precision {t['precision']:.3f}, "
              f"recall {t['recall']:.3f}"]
    for name, what in (("oracle", "oracle (knows the latent severity)"),
                       ("ceiling", "achievable ceiling (what the measurements carry)")):
        if name in verdict:
            lines.append(f"  {what}: AUROC {verdict[name]['auroc']:.3f}; model − {name} "
                         f"{interval_text(verdict[name]['gap'])}")
    return "\n".join(lines)


def write_verdict(run_path: Path, verdict: dict) -> None:
    write_json(Path(run_path) / VERDICT_FILE, verdict)


def read_verdict(run_path: Path) -> dict | None:
    """A train run's verdict, or None for a run written before verdicts existed."""
    path = Path(run_path) / VERDICT_FILE
    return read_json(path) if path.is_file() else None


def reliability_png(verdict: dict) -> bytes | None:
    """The reliability plot (mean predicted P(died) vs the observed death rate per bin) as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curve = verdict.get("calibration")
    if not curve:
        return None
    fig = Figure(figsize=(4.5, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot(curve["mean_predicted"], curve["fraction_died"], marker="o", color="#1f77b4", label="model")
    ax.axvline(0.5, color="#d62728", linestyle=":", linewidth=1, label="decision threshold P(died) = 0.5")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean predicted P(died)", ylabel="observed fraction died",
           title=f"reliability, {CALIBRATION_BINS} quantile bins")
    ax.legend(loc="upper left", fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
