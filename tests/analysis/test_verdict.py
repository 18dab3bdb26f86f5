"""The model-quality verdict: numbers checked by hand, and the warning banner for a model at chance
(trained on shuffled labels) but not for one that learned the planted signal."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from icurt.analysis.report import ReportContext, verdict_section
from icurt.analysis.verdict import (MIN_CLASS, bootstrap_interval, build_verdict, fold_mean_auroc, format_verdict,
                                    reliability_png, strata, warnings_of)
from icurt.model.hparams import ModelHparams
from icurt.model.trainer import Trainer, predict_logits
from icurt.planted import planted_dataset


def test_verdict_numbers_by_hand():
    # two folds; fold 0 threshold 0.5, fold 1 threshold 0.2
    table = pd.DataFrame({"fold": [0, 0, 0, 1, 1, 1], "label": [0, 1, 0, 1, 0, 0],
                          "p_died": [0.1, 0.6, 0.55, 0.3, 0.25, 0.1], "threshold": [.5, .5, .5, .2, .2, .2]})
    v = build_verdict(table)
    # per fold: fold 0 ranks 0.6 above 0.1 and 0.55 → 1; fold 1 ranks 0.3 above 0.25 and 0.1 → 1; mean 1.
    # pooled: 0.6 beats all four survivors, 0.3 beats 0.1, 0.25, 0.1 but not 0.55 → 7/8
    assert v["auroc"]["value"] == pytest.approx(1.0)
    assert v["pooled_auroc"] == pytest.approx(7 / 8) == pytest.approx(roc_auc_score(table["label"], table["p_died"]))
    # Brier: (.01 + .16 + .3025 + .49 + .0625 + .01) / 6 = 1.035 / 6
    assert v["brier"] == pytest.approx(1.035 / 6)
    # predicted died at the fold thresholds: .6 > .5, .55 > .5, .3 > .2, .25 > .2 → tp 2, fp 2, fn 0
    assert v["at_threshold"]["precision"] == pytest.approx(0.5) and v["at_threshold"]["recall"] == 1.0
    assert v["at_threshold"]["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2))
    assert "oracle" not in v and (v["n_samples"], v["n_died"], v["n_survived"], v["n_folds"]) == (6, 2, 4, 2)
    assert any(f"fewer than {MIN_CLASS}" in w for w in v["warnings"])


def test_fold_mean_auroc_weighs_each_fold_by_its_size():
    # fold 0 (4 stays): died .9, .2; survived .5, .1 → pairs won 1, 1, 0, 1 → 3/4
    # fold 1 (2 stays): died .3; survived .4 → 0. Weighted: (4 · 0.75 + 2 · 0) / 6 = 0.5
    labels = np.array([1, 1, 0, 0, 1, 0])
    folds = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([.9, .2, .5, .1, .3, .4])
    assert fold_mean_auroc(scores)(*strata(labels, folds)) == pytest.approx(0.5)


def test_bootstrap_intervals_resample_within_each_class():
    y = np.r_[np.zeros(30), np.ones(10)].astype(int)
    groups = strata(y)
    perfect = np.r_[np.linspace(0, .4, 30), np.linspace(.6, 1, 10)]
    # every resample has both classes, so a perfect ranking stays perfect
    assert bootstrap_interval(fold_mean_auroc(perfect), groups, vectorized=True) == pytest.approx([1.0, 1.0])
    noisy = perfect + np.r_[np.zeros(35), -.5 * np.ones(5)]
    low, high = bootstrap_interval(fold_mean_auroc(noisy), groups, vectorized=True)
    assert low < roc_auc_score(y, noisy) < high
    # the vectorised Mann–Whitney AUROC equals sklearn's, ties included, and the loop gives the same interval
    tied = np.round(noisy, 1)
    assert fold_mean_auroc(tied)(*groups) == pytest.approx(roc_auc_score(y, tied))
    looped = bootstrap_interval(lambda d, s: roc_auc_score(y[np.r_[d, s]], tied[np.r_[d, s]]), groups, resamples=200)
    assert bootstrap_interval(fold_mean_auroc(tied), groups, vectorized=True, resamples=200) == pytest.approx(looped)
    assert all(math.isnan(b) for b in bootstrap_interval(lambda d, s: 0.5, strata(np.r_[0, 0, 1])))  # 1 death
    assert math.isnan(fold_mean_auroc(np.r_[np.nan, tied[1:]])(*groups))


def test_a_model_equal_to_the_oracle_has_a_zero_gap():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(int)
    p = np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)
    v = build_verdict(pd.DataFrame({"label": y, "p_died": p, "threshold": 0.5, "oracle_probability": p}))
    assert v["oracle"]["gap"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert "oracle" in format_verdict(v)


@pytest.fixture
def one_thread():
    """torch on one thread (two threads on a busy 2-core machine are ~8× slower for this tiny LSTM)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def predictions_of(labels, features, seed=0):
    """Pooled held-out predictions of two folds of a small trained LSTM, as train writes them."""
    import torch

    n = len(labels)
    rows = [np.arange(0, n // 2), np.arange(n // 2, n)]
    hp = ModelHparams(lstm_hidden=8, fc_size=8, learning_rate=1e-2, batch_size=64)
    frames = []
    for fold, (held, fit) in enumerate([(rows[0], rows[1]), (rows[1], rows[0])]):
        trainer = Trainer(hp, features[fit], labels[fit], features[held], labels[held], seed=seed + fold)
        for _ in range(4):
            trainer.train_epoch()
        p = torch.softmax(predict_logits(trainer.model, trainer.x_val), 1)[:, 1].numpy()
        frames.append(pd.DataFrame({"fold": fold, "label": labels[held], "p_died": p, "threshold": 0.5}))
    return pd.concat(frames, ignore_index=True)


def test_the_banner_warns_about_a_model_at_chance_and_not_about_the_planted_signal_model(one_thread):
    made = planted_dataset(1200, hours=8, features=4, seed=3, death_rate=0.3, strength=4.0, drift=0.3,
                           signal_features=2)
    x, y = made.dataset.features, made.dataset.labels
    shuffled = np.random.default_rng(1).permutation(y)
    sections = {}
    for name, labels in (("planted", y), ("chance", shuffled)):
        verdict = build_verdict(predictions_of(labels, x))
        sections[name] = (verdict, verdict_section(ReportContext("A", [], verdict=verdict), []))
    planted_verdict, planted_html = sections["planted"]
    chance_verdict, chance_html = sections["chance"]
    assert planted_verdict["auroc"]["low"] > 0.6 and planted_verdict["warnings"] == []
    assert 'class="banner"' not in planted_html and "Model quality" in planted_html
    assert chance_verdict["auroc"]["low"] <= 0.5 <= chance_verdict["auroc"]["high"]
    assert 'class="banner"' in chance_html and "includes 0.5" in chance_html
    assert format_verdict(chance_verdict).startswith("WARNING: the AUROC's 95 % interval")
    assert reliability_png(planted_verdict).startswith(b"\x89PNG")


def test_the_reference_checkpoint_rule_and_a_model_above_the_oracle_are_flagged():
    verdict = {"auroc": {"value": 0.9, "low": 0.85, "high": 0.95}, "n_died": 500, "n_survived": 5000,
               "n_samples": 5500, "rule": {"checkpoint_split": "held_out"},
               "oracle": {"auroc": 0.8, "gap": {"value": 0.1, "low": 0.05, "high": 0.15}}}
    found = warnings_of(verdict)
    assert len(found) == 2 and "optimistic" in found[0] and "leaks" in found[1]
