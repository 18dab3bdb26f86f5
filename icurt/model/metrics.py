"""Binary classification metrics: scikit-learn's, guarded so that a broken model can never score.

AUROC (`roc_auc_score`), AUPRC (`average_precision_score`) and the Brier score
(`brier_score_loss`) are NaN whenever a score is NaN or infinite (scikit-learn raises there; a
rank-based AUROC would quietly give a finite number for NaN scores) and whenever only one class
is present (undefined). Precision with no predicted positive is 0, scikit-learn's
`zero_division` default. Thresholded metrics predict "died" when P(died) > threshold; the
threshold is 0.5 (the argmax) unless one chosen on validation data is passed
(`f1_threshold`): under oversampled training, 0.5 is not where the model's scores separate the
natural class distribution.
"""

from __future__ import annotations

import math

import numpy as np

METRIC_NAMES = ("auroc", "auprc", "brier", "f1", "precision", "recall", "accuracy")


def scores_usable(y_true: np.ndarray, scores: np.ndarray) -> bool:
    """True when every score is finite and both classes are present (AUROC/AUPRC are defined)."""
    y, s = np.asarray(y_true), np.asarray(scores, dtype=np.float64)
    return bool(len(y) and np.isfinite(s).all() and 0 < int((y == 1).sum()) < len(y))


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for 0/1 labels (sklearn); NaN for a non-finite score
    or a single class."""
    from sklearn.metrics import roc_auc_score

    if not scores_usable(y_true, scores):
        return math.nan
    return float(roc_auc_score(np.asarray(y_true), np.asarray(scores, dtype=np.float64)))


def auprc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sklearn's `average_precision_score`); NaN for a non-finite score or a
    single class."""
    from sklearn.metrics import average_precision_score

    if not scores_usable(y_true, scores):
        return math.nan
    return float(average_precision_score(np.asarray(y_true), np.asarray(scores, dtype=np.float64)))


def brier(y_true: np.ndarray, p_died: np.ndarray) -> float:
    """Mean squared error of P(died) against the 0/1 label (sklearn's `brier_score_loss`); NaN for
    a non-finite probability or no samples."""
    from sklearn.metrics import brier_score_loss

    p = np.asarray(p_died, dtype=np.float64)
    if not len(p) or not np.isfinite(p).all():
        return math.nan
    return float(brier_score_loss(np.asarray(y_true), np.clip(p, 0.0, 1.0), pos_label=1))


def threshold_metrics(y_true: np.ndarray, p_died: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """F1, precision, recall (of class 1) and accuracy of the prediction P(died) > threshold;
    all NaN when a probability is not finite (a NaN compares as "survived", which would pass)."""
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(p_died, dtype=np.float64)
    if not len(y) or not np.isfinite(p).all() or not math.isfinite(threshold):
        return {"f1": math.nan, "precision": math.nan, "recall": math.nan, "accuracy": math.nan}
    pred = p > threshold
    tp, fp, fn = int(np.sum(pred & y)), int(np.sum(pred & ~y)), int(np.sum(~pred & y))
    return {"f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
            "precision": tp / (tp + fp) if tp + fp else 0.0,
            "recall": tp / (tp + fn) if tp + fn else 0.0,
            "accuracy": float(np.mean(pred == y))}


def f1_threshold(y_true: np.ndarray, p_died: np.ndarray) -> float:
    """The threshold t maximising the F1 of "P(died) > t" on these (validation) predictions.

    Each cut between two consecutive distinct scores is a candidate; t is the midpoint of the cut
    (below the lowest score for "all died"), so the rule is the strict ">" of `threshold_metrics`.
    On a tie the highest t wins. NaN when the scores are unusable (non-finite, or one class only).
    """
    if not scores_usable(y_true, p_died):
        return math.nan
    p = np.asarray(p_died, dtype=np.float64)
    order = np.argsort(-p, kind="mergesort")
    s, tp = p[order], np.cumsum(np.asarray(y_true)[order] == 1)
    cut = np.flatnonzero(np.r_[s[1:] != s[:-1], True])          # last index of each run of equal scores
    f1 = 2 * tp[cut] / (cut + 1 + tp[-1])
    best = int(np.argmax(f1))
    below = s[cut[best] + 1] if cut[best] + 1 < len(s) else s[-1] - 1.0
    return float((s[cut[best]] + below) / 2)


def classification_metrics(y_true: np.ndarray, p_died: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """auroc, auprc, brier, f1, precision, recall, accuracy of P(died) against 0/1 labels."""
    return {"auroc": auroc(y_true, p_died), "auprc": auprc(y_true, p_died), "brier": brier(y_true, p_died),
            **threshold_metrics(y_true, p_died, threshold)}


def all_finite(values) -> bool:
    """True when every value is a finite number (an evaluation that may be chosen as "best")."""
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
