"""The reference study's analyses on a hand-made attack: 5 samples × 3 hours × 2 features.

Samples (label, attacked, success, first / best iteration), best P as (hour, feature, value):
  s0 (0, yes, yes, 2 / 6): (0,0,+.2) (1,0,+.4) (2,1,-.1)     s1 (0, yes, yes, 4 / 4): (1,0,-.2)
  s2 (0, yes, no)                                            s3 (1, yes, yes, 1 / 10): (2,1,+.3)
  s4 (1, not attacked)
The first examples equal the best ones. The attack ran 10 iterations.
"""

import math

import numpy as np
import pandas as pd
import pytest

from icurt.analysis.plots import all_plots
from icurt.analysis.reference_stats import (discovery_summary, discovery_table, mean_nonzero_map,
                                            sensitivity_map, sign_table, with_mean_nonzero)
from icurt.analysis.stats import analyse, location_stats
from icurt.attack.results import Perturbations

NAMES = ["creatinine", "sodium"]
SHAPE = (5, 3, 2)
BEST = [(0, 0, 0, .2), (0, 1, 0, .4), (0, 2, 1, -.1), (1, 1, 0, -.2), (3, 2, 1, .3)]  # (sample, t, f, P)
SPEC = {0: (0, True, True, 2, 6), 1: (0, True, True, 4, 4), 2: (0, True, False, -1, -1),
        3: (1, True, True, 1, 10), 4: (1, False, False, -1, -1)}


def perturbations() -> dict[str, Perturbations]:
    columns = [np.array(c) for c in zip(*BEST)]
    coo = Perturbations(columns[0].astype(np.int64), columns[1].astype(np.int64), columns[2].astype(np.int64),
                        columns[3].astype(np.float64))
    return {"first": coo, "best": coo}


def results() -> pd.DataFrame:
    rows = []
    for s, (label, attacked, success, first, best) in SPEC.items():
        values = np.array([v for sample, _, _, v in BEST if sample == s])
        size = (len(values), np.abs(values).sum(), np.abs(values).max()) if success else (0, math.nan, math.nan)
        rows.append({"sample_index": s, "label": label, "attacked": attacked, "success": success,
                     "first_iteration": first, "best_iteration": best,
                     **{f"{m}_{kind}": v for kind in ("first", "best") for m, v in zip(("n_nonzero", "l1", "maxabs"), size)}})
    return pd.DataFrame(rows)


def shares(table, direction, kind):
    part = table[(table["direction"] == direction) & (table["kind"] == kind)]
    return part["share"].tolist()


def test_discovery_curves_count_samples_found_by_each_iteration():
    table = discovery_table(results(), iterations=10)
    assert len(table) == 2 * 2 * 11
    third = 1 / 3
    # 0 → 1: three attacked; first examples at 2 and 4, best at 6 and 4
    assert shares(table, "0to1", "first") == pytest.approx([0, 0] + [third] * 2 + [2 * third] * 7)
    assert shares(table, "0to1", "best") == pytest.approx([0] * 4 + [third] * 2 + [2 * third] * 5)
    # 1 → 0: one attacked (s4 is not), found first at 1 and best at the last iteration
    assert shares(table, "1to0", "first") == pytest.approx([0] + [1] * 10)
    assert shares(table, "1to0", "best") == pytest.approx([0] * 10 + [1])
    summary = discovery_summary(table).set_index(["direction", "kind"])
    assert summary.loc[("0 → 1", "first"), "at 10"] == pytest.approx(2 * third)  # the success rate
    assert summary.loc[("0 → 1", "best"), "at 5"] == pytest.approx(third)
    # without a budget the curve ends at the last recorded iterate; without iterations there is none
    assert discovery_table(results(), None)["iteration"].max() == 10
    assert discovery_table(results().drop(columns="best_iteration"), 10).empty


def test_mean_nonzero_magnitude_per_example():
    table = with_mean_nonzero(results())
    assert table["mean_nonzero_best"].tolist()[:2] == pytest.approx([.7 / 3, .2])
    assert table["mean_nonzero_best"].isna().tolist() == [False, False, True, False, True]


def test_ganzp_and_sensitivity_maps():
    st = location_stats(perturbations()["best"], np.array([0, 1]), SHAPE)  # 0 → 1 successes
    ganzp, sensitivity = mean_nonzero_map(st), sensitivity_map(st)
    nan = math.nan
    # (0, creat): .2 in 1 of 2 samples; (1, creat): .4 and .2 in both; (2, sodium): .1 in one
    np.testing.assert_allclose(ganzp, [[.2, nan], [.3, nan], [nan, .1]], rtol=1e-6)
    np.testing.assert_allclose(sensitivity, [[.5 / .2, nan], [1 / .3, nan], [nan, .5 / .1]], rtol=1e-6)


def test_signs_count_raised_and_lowered_elements_per_feature():
    table = sign_table(perturbations(), results(), NAMES).set_index(["direction", "kind", "feature"])
    creat, sodium = table.loc[("0to1", "best", "creatinine")], table.loc[("0to1", "best", "sodium")]
    assert (creat["raised"], creat["lowered"], sodium["raised"], sodium["lowered"]) == (2, 1, 0, 1)
    assert creat["share_raised"] == pytest.approx(2 / 3) and creat["mean_p"] == pytest.approx(.4 / 3)
    assert sodium["share_raised"] == 0 and sodium["mean_p"] == pytest.approx(-.1)
    never = table.loc[("1to0", "best", "creatinine")]
    assert (never["raised"], never["lowered"]) == (0, 0) and math.isnan(never["share_raised"])
    assert table.loc[("1to0", "best", "sodium"), "raised"] == 1


def test_analyse_carries_the_reference_analyses_and_draws_them():
    analysis = analyse(results(), perturbations(), SHAPE, NAMES, {}, top_features=2, iterations=10)
    assert analysis.discovery["iteration"].max() == 10 and len(analysis.signs) == 2 * 2 * 2
    names = [plot.name for plot in all_plots(analysis)]
    for name in ("hist_mean_nonzero.png", "discovery.png", "map_ganzp.png", "map_sensitivity.png", "signs.png"):
        assert name in names
