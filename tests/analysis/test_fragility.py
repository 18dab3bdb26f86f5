"""Fragility statistics by hand: Wilson intervals, curves, minimal budgets, the headline sentence."""

import math

import numpy as np
import pandas as pd
import pytest

from icurt.analysis.fragility import (changes_table, headline, minimal_budgets, success_curves, wilson,
                                      worked_examples)

Z = 1.959963984540054


def wilson_by_hand(k, n):
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def sweep_table():
    # labels: s0, s1 survived (0); s2, s3, s4 died (1). k ≤ 1: s2 flips; k ≤ 4: s0, s2, s3 flip.
    flips = {1: {2}, 4: {0, 2, 3}}
    labels = [0, 0, 1, 1, 1]
    return pd.DataFrame([{"sample_index": s, "stay_id": 100 + s, "label": labels[s], "curve": "k",
                          "cells": "measured", "budget": k, "success": s in flips[k]}
                         for k in (1, 4) for s in range(5)])


def test_wilson_interval_by_hand():
    for k, n in ((1, 2), (0, 3), (7, 10), (10, 10)):
        np.testing.assert_allclose(wilson(k, n), wilson_by_hand(k, n), atol=1e-9)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_curves_minimal_budgets_and_headline():
    curves = success_curves(sweep_table()).set_index(["budget", "direction"])
    assert curves.loc[(1, "1to0"), ["samples", "successes"]].tolist() == [3, 1]
    assert curves.loc[(4, "1to0"), "success_rate"] == pytest.approx(2 / 3)
    assert curves.loc[(4, "0to1"), "success_rate"] == pytest.approx(1 / 2)
    np.testing.assert_allclose(curves.loc[(4, "1to0"), ["ci_low", "ci_high"]].to_numpy(float),
                               wilson_by_hand(2, 3))
    minimal = minimal_budgets(sweep_table()).set_index("sample_index")["minimal_budget"]
    assert minimal.loc[2] == 1 and minimal.loc[0] == 4 and minimal.loc[3] == 4
    assert math.isnan(minimal.loc[1]) and math.isnan(minimal.loc[4])
    # deaths first, fewest cells first: s2 (k 1), s3 (k 4), then the survivor s0
    assert worked_examples(minimal_budgets(sweep_table())) == [2, 3, 0]
    low, high = wilson_by_hand(2, 3)
    h = headline(success_curves(sweep_table()), 4)
    assert h["sentence"] == (f"66.7 % (95 % CI {100 * low:.1f}–{100 * high:.1f} %) of 3 correctly predicted "
                             "deaths flip to survival by changing at most 4 measured values, each by at most its "
                             "default clinical step")
    assert headline(success_curves(sweep_table()), 8)["samples"] == 0
    # a sweep of every attacked death says nothing more; a subsample says what it is a sample of
    assert headline(success_curves(sweep_table()), 4, attacked=3)["sentence"] == h["sentence"]
    assert headline(success_curves(sweep_table()), 4, attacked=7)["sentence"] == (
        h["sentence"] + " (drawn at random from the attack run's 7, [fragility].max_num_samples)")


def test_changes_are_listed_in_clinical_units():
    p = np.zeros((3, 2), np.float32)
    p[1, 0], p[2, 1] = 0.1, -0.05
    before = np.array([[80.0, 4.0], [82.0, 4.1], [85.0, 4.2]])
    after = before.copy()
    after[1, 0], after[2, 1] = 87.0, 4.1
    table = changes_table(p, ["heartrate", "potassium"], before, after, {"heartrate": "bpm"})
    assert table.to_dict("records") == [
        {"hour": 1, "feature": "heartrate", "before": 82.0, "after": 87.0, "unit": "bpm"},
        {"hour": 2, "feature": "potassium", "before": 4.2, "after": 4.1, "unit": ""}]
