"""The baselines (icurt/baselines/): summaries by hand, the train run's folds used exactly, the
logistic regression beating chance on a planted linear signal, and the banner."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from icurt.baselines.compare import banner, build_baselines, compare, format_baselines, joined
from icurt.baselines.fit import BaselineSettings, baseline_predictions, fit_baselines, recorded_folds
from icurt.baselines.summaries import summaries, summary_names
from icurt.errors import IcurtError
from icurt.model.folds import FoldRows, fold_rows, make_folds
from icurt.model.train_run import write_fold_rows
from icurt.planted import planted_dataset

FAST = BaselineSettings(c_grid=(0.1, 1.0), tree_iterations=20)


def test_summaries_by_hand():
    x = np.zeros((1, 3, 2))
    x[0, :, 0] = [1.0, 2.0, 4.0]      # mean 7/3, last 4, min 1, max 4, slope ((−1)·1 + 0·2 + 1·4) / 2 = 1.5
    x[0, :, 1] = [0.5, 0.5, 0.5]      # constant: slope 0
    measured = np.array([[[True, False], [False, False], [True, True]]])
    got = summaries(x, measured)
    np.testing.assert_allclose(got[0], [7 / 3, 0.5, 4.0, 0.5, 1.0, 0.5, 4.0, 0.5, 1.5, 0.0, 2 / 3, 1 / 3])
    assert summaries(x).shape == (1, 10)
    assert summary_names(["hr", "k"])[:3] == ["mean(hr)", "mean(k)", "last(hr)"]
    with pytest.raises(ValueError, match="measured has shape"):
        summaries(x, measured[:, :2])


def _hand_folds(subjects: np.ndarray) -> list[FoldRows]:
    """3 folds by patient, by hand: fold k holds out patients with subject % 3 == k and chooses on
    those with subject % 3 == (k + 1) % 3."""
    rows = np.arange(len(subjects), dtype=np.int64)
    return [FoldRows(rows[(subjects % 3 != k) & (subjects % 3 != (k + 1) % 3)], rows[subjects % 3 == (k + 1) % 3],
                     rows[subjects % 3 == k]) for k in range(3)]


def test_the_baselines_use_the_train_runs_folds_exactly(tmp_path):
    made = planted_dataset(60, hours=6, features=3, seed=1, death_rate=0.5, strength=4.0, drift=0.4)
    ds = made.dataset
    subjects = np.arange(60) // 2 + 100                      # two stays per patient
    folds = _hand_folds(subjects)
    for rows in folds:                                       # the hand folds are usable: both classes everywhere
        assert all(0 < ds.labels[r].sum() < len(r) for r in (rows.fit, rows.choice, rows.held_out))
    for k, rows in enumerate(folds):                         # what the train stage writes (model/train_run.py)
        write_fold_rows(tmp_path / f"fold_{k}", rows, subjects)
    recorded = recorded_folds(tmp_path)
    assert len(recorded) == 3
    for mine, theirs in zip(folds, recorded):
        for part in ("fit", "choice", "held_out"):
            np.testing.assert_array_equal(getattr(mine, part), getattr(theirs, part))
    fits = fit_baselines(ds.features, ds.labels, recorded, FAST)
    for k, fit in enumerate(fits):
        np.testing.assert_array_equal(fit.held_out, np.flatnonzero(subjects % 3 == k))   # the same held-out stays
        trained_on = np.r_[recorded[k].fit, recorded[k].choice]
        assert set(subjects[trained_on]).isdisjoint(subjects[fit.held_out])              # no patient on both sides
        assert fit.chosen["logistic_regression"]["C"] in FAST.c_grid
        assert 1 <= fit.chosen["boosted_trees"]["iterations"] <= FAST.tree_iterations
    frame = baseline_predictions(fits, ds.labels)
    assert sorted(frame["row"]) == list(range(60))
    bilstm = frame[["fold", "row", "label"]].assign(p_died=0.5)
    assert len(joined(bilstm, frame)) == 60
    moved = bilstm.assign(fold=np.where(bilstm["row"] == 0, (bilstm["fold"] + 1) % 3, bilstm["fold"]))
    with pytest.raises(IcurtError, match="not scored on the BiLSTM's held-out stays"):
        joined(moved, frame)                                  # one stay in another fold: refused


def test_logistic_regression_beats_chance_and_the_banner_fires_for_a_constant_model():
    made = planted_dataset(600, hours=12, features=4, seed=3, strength=3.0, drift=0.3, signal_features=2)
    ds = made.dataset
    patients = np.arange(600)
    outer = make_folds(ds.labels, patients, 3, 0, "patient")
    folds = fold_rows(outer, ds.labels, patients, "inner", 3, 0, "patient")
    fits = fit_baselines(ds.features, ds.labels, folds, FAST)
    frame = baseline_predictions(fits, ds.labels)
    bilstm = frame[["fold", "row", "label"]].assign(p_died=0.5)          # a constant "BiLSTM"
    result = compare(joined(bilstm, frame))
    lr = result["models"]["logistic_regression"]["auroc"]
    by_hand = sum(len(f.held_out) * roc_auc_score(ds.labels[f.held_out], f.p["logistic_regression"])
                  for f in fits) / 600
    assert lr["value"] == pytest.approx(by_hand, abs=1e-9)
    assert lr["low"] > 0.7                                             # the planted signal is linear and strong
    assert result["bilstm"]["auroc"]["value"] == pytest.approx(0.5)
    assert result["difference"]["high"] < 0
    assert len(result["warnings"]) == 1 and "not better than the best baseline" in result["warnings"][0]
    assert format_baselines(result).startswith("WARNING: the BiLSTM is not better")
    oracle = bilstm.assign(p_died=made.p_died[bilstm["row"]])          # the oracle as "BiLSTM"
    built = build_baselines(oracle, frame, fits, ["mean"], {})
    assert built["difference"]["value"] == pytest.approx(
        built["bilstm"]["auroc"]["value"] - built["models"][built["best"]]["auroc"]["value"])
    assert [w["fold"] for w in built["logistic_weights"]] == [0, 1, 2]


def test_banner_by_hand():
    result = {"models": {"logistic_regression": {"label": "logistic regression"}}, "best": "logistic_regression"}
    assert banner({**result, "difference": {"value": 0.03, "low": 0.01, "high": 0.05}}) == []
    assert len(banner({**result, "difference": {"value": 0.02, "low": -0.01, "high": 0.05}})) == 1
    assert len(banner({**result, "difference": {"value": 0.0, "low": 0.0, "high": 0.0}})) == 1     # 0: not better
    assert len(banner({**result, "difference": {"value": math.nan, "low": math.nan, "high": math.nan}})) == 1
