"""Binary classification metrics in vectorised numpy (no Ray, no sklearn at run time).

AUROC and AUPRC follow scikit-learn's definitions exactly (ties included): AUROC is the
Mann–Whitney U statistic with average ranks for ties (= `roc_auc_score`), AUPRC is the step-wise
average precision over distinct thresholds (= `average_precision_score`). The thresholded
metrics use the model's argmax, i.e. predict "died" when P(died) > 0.5 (an exact tie goes to
"survived", as `torch.argmax` does). With only one class present AUROC and AUPRC are undefined
and reported as NaN (sklearn raises or warns instead); precision with no predicted positive is 0,
as sklearn's `zero_division` default.
"""

from __future__ import annotations

import numpy as np

METRIC_NAMES = ("auroc", "auprc", "f1", "precision", "recall", "accuracy")


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # start index of each run of equal values, and the mean rank of that run
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for labels `y_true` (0/1); NaN if one class only."""
    y = np.asarray(y_true).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(np.asarray(scores, dtype=np.float64))
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def auprc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (sklearn's `average_precision_score`); NaN if no positive or no negative."""
    y = np.asarray(y_true).astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        return float("nan")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    tp = np.cumsum(y[order])
    # evaluate at the last index of each run of equal scores (one threshold per distinct score)
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    tp_at = tp[last].astype(np.float64)
    precision = tp_at / (last + 1)
    recall = tp_at / n_pos
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def threshold_metrics(y_true: np.ndarray, p_died: np.ndarray) -> dict[str, float]:
    """F1, precision, recall (of class 1) and accuracy of the argmax prediction P(died) > 0.5."""
    y = np.asarray(y_true).astype(bool)
    pred = np.asarray(p_died) > 0.5
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    accuracy = float(np.mean(pred == y)) if len(y) else float("nan")
    return {"f1": float(f1), "precision": float(precision), "recall": float(recall),
            "accuracy": accuracy}


def classification_metrics(y_true: np.ndarray, p_died: np.ndarray) -> dict[str, float]:
    """auroc, auprc, f1, precision, recall, accuracy of P(died) scores against 0/1 labels."""
    return {"auroc": auroc(y_true, p_died), "auprc": auprc(y_true, p_died),
            **threshold_metrics(y_true, p_died)}
