"""icurt's metrics (scikit-learn's, guarded against NaN/inf scores) against scikit-learn and against
values worked out by hand."""

import math

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, average_precision_score, f1_score, precision_score,
                             recall_score, roc_auc_score)

from icurt.model.metrics import (all_finite, auprc, auroc, brier, classification_metrics, f1_threshold,
                                 threshold_metrics)


def _sklearn_metrics(y, p):
    pred = (p > 0.5).astype(int)
    return {"auroc": roc_auc_score(y, p), "auprc": average_precision_score(y, p),
            "f1": f1_score(y, pred, zero_division=0), "precision": precision_score(y, pred, zero_division=0),
            "recall": recall_score(y, pred, zero_division=0), "accuracy": accuracy_score(y, pred)}


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(500) < 0.1 + 0.1 * seed).astype(np.int64)
    p = np.clip(rng.random(500) * 0.6 + 0.4 * y * rng.random(500), 0, 1)
    ours, expected = classification_metrics(y, p), _sklearn_metrics(y, p)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_with_many_ties(seed):
    rng = np.random.default_rng(100 + seed)
    y = (rng.random(300) < 0.3).astype(np.int64)
    p = np.round(rng.random(300) * 0.5 + 0.3 * y, 1)     # few distinct scores, ties across classes
    p[:20] = 0.5                                          # exact ties at the threshold
    ours, expected = classification_metrics(y, p), _sklearn_metrics(y, p)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, abs=1e-12), name


def test_hand_computed_small_case():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.6, 0.9])
    # pairs (pos, neg): (0.6,0.1)=1 (0.6,0.6)=½ (0.9,0.1)=1 (0.9,0.6)=1 → 3.5/4
    assert auroc(y, p) == pytest.approx(3.5 / 4)
    # thresholds 0.9: P=1, R=½; 0.6: P=2/3, R=1 → AP = ½·1 + ½·2/3
    assert auprc(y, p) == pytest.approx(0.5 + 1 / 3)
    # predictions >0.5: [0,1,1,1] → tp=2, fp=1, fn=0
    assert threshold_metrics(y, p) == pytest.approx(
        {"f1": 0.8, "precision": 2 / 3, "recall": 1.0, "accuracy": 0.75})


def test_brier_by_hand():
    # ((0.1−0)² + (0.6−0)² + (0.6−1)² + (0.9−1)²) / 4 = (0.01 + 0.36 + 0.16 + 0.01) / 4 = 0.135
    assert brier(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.6, 0.9])) == pytest.approx(0.135)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_score_makes_every_score_nan(bad):
    """The hand-written rank AUROC gave 0.79 for all-NaN scores; sklearn raises. Now: NaN."""
    y = np.array([0, 1, 0, 1, 0, 0])
    for p in (np.full(6, bad), np.array([0.1, 0.9, 0.2, bad, 0.3, 0.4])):
        m = classification_metrics(y, p)
        assert all(math.isnan(m[k]) for k in ("auroc", "auprc", "brier", "f1", "precision", "recall", "accuracy"))
        assert math.isnan(f1_threshold(y, p))
    assert not all_finite([0.5, float(bad)]) and all_finite([0.5, 1])


def test_f1_threshold_by_hand():
    # scores 0.9 0.8 0.45 0.3 0.2 with labels 1 0 1 0 0; F1 = 2·tp / (k + 2) when the top k are "died":
    # k=1: 2/3; k=2: 2/4; k=3: 4/5; k=4: 4/6; k=5: 4/7 → the top 3, cut between 0.45 and 0.3
    y = np.array([1, 0, 1, 0, 0])
    p = np.array([0.9, 0.8, 0.45, 0.3, 0.2])
    t = f1_threshold(y, p)
    assert t == pytest.approx((0.45 + 0.3) / 2)
    assert threshold_metrics(y, p, t)["f1"] == pytest.approx(0.8)
    assert threshold_metrics(y, p)["f1"] == pytest.approx(0.5)    # at 0.5: the top 2, tp 1, fp 1, fn 1


def test_perfect_and_inverted_scores():
    y = np.array([0, 1, 0, 1, 1])
    assert auroc(y, y * 0.8 + 0.1) == 1.0 and auprc(y, y * 0.8 + 0.1) == 1.0
    assert auroc(y, 1 - y) == 0.0


def test_one_class_only_gives_nan_rank_metrics_and_defined_threshold_metrics():
    y = np.zeros(10, dtype=np.int64)
    p = np.linspace(0, 1, 10)
    m = classification_metrics(y, p)
    assert math.isnan(m["auroc"]) and math.isnan(m["auprc"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["accuracy"] == pytest.approx(accuracy_score(y, (p > 0.5).astype(int)))
    assert m["brier"] == pytest.approx(np.mean(p ** 2))          # defined with one class
    assert math.isnan(auroc(np.ones(4), np.arange(4.0)))
