"""The vectorised AUPRC equals scikit-learn's, ties included, and gives the verdict's interval."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from icurt.analysis import verdict
from icurt.baselines.auprc import average_precision, fold_mean_auprc


def test_average_precision_by_hand_with_ties():
    # scores 0.9 (pos), 0.5 (pos, neg tied), 0.1 (pos): thresholds 0.9 → P 1, R 1/3; 0.5 → P 2/3, R 2/3;
    # 0.1 → P 3/4, R 1: AP = 1/3 · 1 + 1/3 · 2/3 + 1/3 · 3/4 = 0.8055…
    y, s = np.array([1, 1, 0, 1]), np.array([0.9, 0.5, 0.5, 0.1])
    assert average_precision(y, s) == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert np.isnan(average_precision(np.zeros(3), np.arange(3.0)))


def test_equals_sklearn_row_by_row():
    rng = np.random.default_rng(0)
    y = (rng.random((50, 40)) < 0.3).astype(int)
    y[:, 0] = 1
    s = np.round(rng.random((50, 40)) + 0.5 * y, 1)          # rounded: many ties
    got = average_precision(y, s)
    np.testing.assert_allclose(got, [average_precision_score(a, b) for a, b in zip(y, s)], atol=1e-12)


def test_same_interval_as_the_verdicts():
    rng = np.random.default_rng(1)
    y = (rng.random(120) < 0.3).astype(np.int64)
    p = np.clip(0.3 * y + rng.random(120), 0, 1)
    folds = np.arange(120) % 3
    groups = verdict.strata(y, folds)
    mine = fold_mean_auprc(y, p)
    theirs = verdict.fold_mean_auprc(y, p)
    assert mine(*groups) == pytest.approx(theirs(*groups), abs=1e-12)
    fast = verdict.bootstrap_interval(mine, groups, vectorized=True, resamples=200)
    slow = verdict.bootstrap_interval(theirs, groups, resamples=200)
    np.testing.assert_allclose(fast, slow, atol=1e-12)
