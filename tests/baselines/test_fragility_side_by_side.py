"""The BiLSTM's and the logistic-regression baseline's fragility side by side
(icurt/baselines/fragility.py): the same samples where both classify correctly, the same budgets."""

import numpy as np
import pandas as pd
import torch

from icurt.attack.attacker import AttackHparams
from icurt.attack.sweep import sweep_curves
from icurt.baselines.compare import logistic_weights
from icurt.baselines.fit import BaselineSettings, fit_fold
from icurt.baselines.fragility import baseline_sweep, side_by_side
from icurt.baselines.summaries import summaries
from icurt.baselines.torch_lr import from_record
from icurt.config import AttackMethod, load_config, with_overrides
from icurt.model.folds import FoldRows
from icurt.planted import planted_dataset

METHOD = AttackMethod(max_perts=0, lambda_decay=0.5, lambda_decay_every=5, early_stop_patience=0,
                      attack_misclassified=False, threshold="preconditioned", loss_norm="elementwise",
                      loss_reduction="sum", optimizer_state="per_batch")
HP = AttackHparams(kappa=0.0, lambda_1=0.005, learning_rate=0.05, optimizer="adam", batch_size=64)

FC = with_overrides(load_config(env={}), ["fragility.l0_budgets=[1, 4]", "fragility.linf_scales=[1.0]",
                                          'fragility.cells=["measured"]', "fragility.headline_k=4"]).fragility


def test_counts_per_budget_and_direction_on_the_common_samples():
    curve = next(c for c in sweep_curves(FC) if c[0].curve == "k")          # budgets 1, 4
    samples = np.array([10, 11, 12, 13])                                    # labels 1, 1, 0, 0
    labels = np.array([1, 1, 0, 0])
    sweep = pd.DataFrame({"sample_index": [10, 11, 12, 13, 99] * 2, "curve": "k", "cells": "measured",
                          "budget": [1] * 5 + [4] * 5,
                          "success": [True, False, False, False, True, True, False, True, False, True]})
    baseline = np.array([[False, False, True, False], [True, False, True, True]])   # (budgets, samples)
    out = side_by_side(sweep, baseline, samples, curve, labels, 4)
    by = {(r["budget"], r["direction"]): r for r in out["rows"]}
    # sample 99 is not common: never counted; deaths are 10, 11; survivors 12, 13
    assert (by[1, "1to0"]["bilstm_successes"], by[1, "1to0"]["baseline_successes"], by[1, "1to0"]["samples"]) == (1, 0, 2)
    assert (by[4, "1to0"]["bilstm_successes"], by[4, "1to0"]["baseline_successes"]) == (1, 1)
    assert (by[1, "0to1"]["bilstm_successes"], by[1, "0to1"]["baseline_successes"]) == (0, 1)
    assert (by[4, "0to1"]["bilstm_successes"], by[4, "0to1"]["baseline_successes"]) == (1, 2)
    assert by[4, "0to1"]["baseline_rate"] == 1.0 and by[4, "1to0"]["bilstm_rate"] == 0.5
    assert out["headline"]["1to0"].startswith("of the 2 correctly predicted deaths both models classify correctly, "
                                              "changing at most 4 measured values flips 50.0 %")


def test_the_sweep_attacks_only_what_the_baseline_gets_right():
    torch.set_num_threads(1)
    ds = planted_dataset(160, hours=8, features=3, seed=2, death_rate=0.5, strength=10.0, drift=0.4, noise=0.15,
                         signal_features=1).dataset
    rows = np.arange(160, dtype=np.int64)
    split = FoldRows(rows[:80], rows[80:120], rows[120:])
    fold = fit_fold(3, summaries(ds.features), ds.labels, split, BaselineSettings(c_grid=(1.0,), tree_iterations=5))
    record = {"hours": 8, "logistic_weights": logistic_weights([fold])}
    model = from_record(record["logistic_weights"][0], 8).eval()
    samples = split.held_out
    x, y = ds.features[samples], ds.labels[samples]
    with torch.no_grad():
        right = model(torch.from_numpy(x)).argmax(1).numpy() == y
    measured = np.ones_like(x, dtype=bool)
    sweep = pd.DataFrame({"sample_index": np.tile(samples, 2), "curve": "k", "cells": "measured",
                          "budget": np.repeat([1, 4], len(samples)), "success": False})
    out = baseline_sweep(record, 3, x, y, samples, measured, sweep, sweep_curves(FC), HP, METHOD,
                         np.full(3, 0.5), 30, 4)
    assert out["samples"] == int(right.sum()) and 0 < out["samples"] < len(samples) + 1
    assert sum(r["samples"] for r in out["rows"] if r["budget"] == 1) == int(right.sum())
    assert all(r["bilstm_successes"] == 0 for r in out["rows"])                 # the sweep table said none
    rates = {(r["budget"], r["direction"]): r["baseline_successes"] for r in out["rows"]}
    assert rates[4, "1to0"] >= rates[1, "1to0"] and rates[4, "0to1"] >= rates[1, "0to1"]   # nested budgets
    assert baseline_sweep(record, 0, x, y, samples, measured, sweep, sweep_curves(FC), HP, METHOD,
                          np.full(3, 0.5), 30, 4) is None                       # no baseline for fold 0


def test_the_report_shows_both_curves_and_nothing_without_a_baseline():
    from icurt.analysis.fragility_report import baseline_comparison

    curve = next(c for c in sweep_curves(FC) if c[0].curve == "k")
    sweep = pd.DataFrame({"sample_index": [1, 2] * 2, "curve": "k", "cells": "measured", "budget": [1, 1, 4, 4],
                          "success": [False, False, True, False]})
    out = side_by_side(sweep, np.array([[True, False], [True, True]]), np.array([1, 2]), curve, np.array([1, 0]), 4)
    html = baseline_comparison(out)
    assert "<h3>Beside a logistic regression</h3>" in html and "Of the 1 correctly predicted deaths" in html
    # table cells (BiLSTM, baseline): k = 1 deaths (0, 1 of 1), survivors (0, 0); k = 4 deaths (1, 1), survivors (0, 1)
    assert html.count('"text">100.0 % (') == 4 and html.count('"text">0.0 % (') == 4
    # the sentences at k = 4: deaths 100.0 % and 100.0 %, survivors 0.0 % and 100.0 %
    assert html.count("% (95 % CI") == 4
    assert baseline_comparison(None) == ""
