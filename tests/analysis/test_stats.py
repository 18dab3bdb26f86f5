"""Attack statistics on a hand-made result: 6 samples × 4 hours × 3 features, numbers by hand.

Samples (label, attacked, success):  s0 (0, yes, yes)  s1 (0, yes, yes)  s2 (0, yes, no)
                                     s3 (1, yes, yes)  s4 (1, no, -)     s5 (1, yes, yes)
Best P, (hour, feature, value):  s0: (0,0,.1) (3,2,-.2)      s1: (0,0,-.3) (1,0,.05) (3,2,.2)
                                 s3: (2,1,.4)                s5: (2,1,-.1) (3,1,.2) (3,2,.3)
First P:                         s0: (0,0,.2)  s1: (0,0,-.3) (3,2,.1)
                                 s3: (2,1,.5) (0,0,.1)       s5: (3,1,.2)
"""

import math

import numpy as np
import pandas as pd
import pytest

from icurt.analysis.stats import (analyse, clinical_table, distribution_table, histogram_edges, location_stats,
                                  success_table, susceptibility_table)
from icurt.attack.results import Perturbations, perturbations_from_arrays
from icurt.dataset import scaling_range
from icurt.errors import IcurtError

NAMES = ["creatinine", "sodium", "heartrate"]
SHAPE = (6, 4, 3)
BEST = {0: [(0, 0, .1), (3, 2, -.2)], 1: [(0, 0, -.3), (1, 0, .05), (3, 2, .2)],
        3: [(2, 1, .4)], 5: [(2, 1, -.1), (3, 1, .2), (3, 2, .3)]}
FIRST = {0: [(0, 0, .2)], 1: [(0, 0, -.3), (3, 2, .1)], 3: [(2, 1, .5), (0, 0, .1)], 5: [(3, 1, .2)]}
NORMALISATION = {"creatinine": {"p_low": .5, "p_high": 4.5, "median": 1.0},
                 "sodium": {"p_low": 130, "p_high": 150, "median": 139},
                 "heartrate": {"p_low": 50, "p_high": 130, "median": 86}}


def coo(elements: dict) -> dict:
    rows = [(s, t, f, v) for s, items in elements.items() for t, f, v in items]
    return {"sample": np.array([r[0] for r in rows], np.int64), "t": np.array([r[1] for r in rows], np.int16),
            "f": np.array([r[2] for r in rows], np.int16), "value": np.array([r[3] for r in rows], np.float32)}


def npz_arrays() -> dict:
    arrays = {"shape": np.array(SHAPE)}
    for kind, elements in (("first", FIRST), ("best", BEST)):
        arrays.update({f"{kind}_{k}": v for k, v in coo(elements).items()})
    return arrays


def results_frame() -> pd.DataFrame:
    nan = math.nan
    rows = []
    # n_nonzero / L1 / max|P| written from the P values above, not computed
    per_sample = {  # sample: (first n, l1, max, best n, l1, max)
        0: (1, .2, .2, 2, .3, .2), 1: (2, .4, .3, 3, .55, .3),
        3: (2, .6, .5, 1, .4, .4), 5: (1, .2, .2, 3, .6, .3),
    }
    spec = {0: (0, True, True), 1: (0, True, True), 2: (0, True, False),
            3: (1, True, True), 4: (1, False, False), 5: (1, True, True)}
    for s, (label, attacked, success) in spec.items():
        fn, fl, fm, bn, bl, bm = per_sample.get(s, (0, nan, nan, 0, nan, nan))
        rows.append({"sample_index": s, "stay_id": 1000 + s, "label": label, "orig_pred": label,
                     "attacked": attacked, "success": success,
                     "first_iteration": 5 if success else -1, "best_iteration": 9 if success else -1,
                     "n_nonzero_first": fn, "n_nonzero_best": bn, "l1_first": fl, "l1_best": bl,
                     "maxabs_first": fm, "maxabs_best": bm})
    return pd.DataFrame(rows)


@pytest.fixture
def analysis():
    perturbations, shape = perturbations_from_arrays(npz_arrays())
    return analyse(results_frame(), perturbations, shape, NAMES, NORMALISATION, top_features=2)


def test_success_rates_by_direction(analysis):
    head = analysis.headline.set_index("direction")
    assert head.loc["all", ["samples", "attacked", "skipped", "successful"]].tolist() == [6, 5, 1, 4]
    assert head.loc["all", "success_rate"] == pytest.approx(4 / 5)
    assert head.loc["0 → 1", ["attacked", "skipped", "successful"]].tolist() == [3, 0, 2]
    assert head.loc["0 → 1", "success_rate"] == pytest.approx(2 / 3)
    assert head.loc["1 → 0", ["attacked", "skipped", "successful"]].tolist() == [2, 1, 2]
    assert head.loc["1 → 0", "success_rate"] == pytest.approx(1.0)
    # best examples: n_nonzero 2, 3, 1, 3 -> median 2.5; L1 .3 .55 .4 .6 -> .475
    assert head.loc["all", "median_n_nonzero_best"] == pytest.approx(2.5)
    assert head.loc["all", "median_l1_best"] == pytest.approx(.475)
    assert head.loc["1 → 0", "median_maxabs_best"] == pytest.approx(.35)
    assert (head["note"] == "").all()


def test_size_distributions(analysis):
    dist = analysis.distributions.set_index(["kind", "metric", "direction"])
    row = dist.loc[("best", "n_nonzero", "all")]
    assert row["count"] == 4 and row["mean"] == pytest.approx(2.25) and row["median"] == pytest.approx(2.5)
    assert row["min"] == 1 and row["max"] == 3
    assert row["sd"] == pytest.approx(math.sqrt(((2 - 2.25) ** 2 + .75 ** 2 + 1.25 ** 2 + .75 ** 2) / 4))
    row = dist.loc[("best", "l1", "0 → 1")]
    assert row["count"] == 2 and row["mean"] == pytest.approx(.425)
    assert row["q25"] == pytest.approx(.3 + .25 * .25)  # linear between .3 and .55
    row = dist.loc[("first", "maxabs", "1 → 0")]
    assert row["mean"] == pytest.approx(.35) and row["max"] == pytest.approx(.5)


def test_frequency_and_size_by_feature_and_hour(analysis):
    feat = analysis.feature_stats.set_index(["kind", "direction", "feature"])
    row = feat.loc[("best", "0to1", "creatinine")]
    assert row["successful_samples"] == 2 and row["nonzero_elements"] == 3
    assert row["sample_frequency"] == pytest.approx(1.0)           # s0 and s1 both
    assert row["cell_frequency"] == pytest.approx(3 / (2 * 4))
    assert row["mean_abs_nonzero"] == pytest.approx((.1 + .3 + .05) / 3)
    assert feat.loc[("best", "0to1", "sodium"), "nonzero_elements"] == 0
    assert math.isnan(feat.loc[("best", "0to1", "sodium"), "mean_abs_nonzero"])
    assert feat.loc[("best", "all", "heartrate"), "sample_frequency"] == pytest.approx(3 / 4)
    assert feat.loc[("first", "1to0", "creatinine"), "sample_frequency"] == pytest.approx(1 / 2)
    hours = analysis.hour_stats.set_index(["kind", "direction", "hour"])
    assert hours.loc[("best", "0to1", 1), "sample_frequency"] == pytest.approx(.5)
    assert hours.loc[("best", "0to1", 2), "sample_frequency"] == 0
    assert hours.loc[("best", "1to0", 3), "sample_frequency"] == pytest.approx(.5)  # only s5
    assert hours.loc[("best", "1to0", 3), "mean_abs_nonzero"] == pytest.approx(.25)
    assert hours.loc[("best", "all", 0), "cell_frequency"] == pytest.approx(2 / (4 * 3))


def test_susceptibility_maps_and_ranking(analysis):
    st = analysis.locations["best", "0to1"]
    expected_pp, expected_mp = np.zeros((4, 3)), np.zeros((4, 3))
    expected_pp[0, 0], expected_pp[1, 0], expected_pp[3, 2] = 1.0, .5, 1.0
    expected_mp[0, 0], expected_mp[1, 0], expected_mp[3, 2] = .3, .05, .2
    np.testing.assert_allclose(st.frequency, expected_pp)
    np.testing.assert_allclose(st.max_abs, expected_mp)
    np.testing.assert_allclose(st.susceptibility, expected_pp * expected_mp)
    ranked = analysis.susceptibility["0to1", "best"]
    assert ranked["feature"].tolist() == ["creatinine", "heartrate", "sodium"]
    np.testing.assert_allclose(ranked["score"], [.325, .2, 0.0])
    assert ranked["peak_hour"].tolist()[:2] == [0, 3] and ranked["peak_hour"].isna().tolist()[2]
    # 1 -> 0: S(2,sodium) = .4·1, S(3,sodium) = .2·.5, S(3,heartrate) = .3·.5
    ranked = analysis.susceptibility["1to0", "best"]
    assert ranked["feature"].tolist() == ["sodium", "heartrate", "creatinine"]
    np.testing.assert_allclose(ranked["score"], [.5, .15, 0.0])
    hours = analysis.hour_stats.set_index(["kind", "direction", "hour"])["susceptibility"]
    assert [hours[("best", "1to0", t)] for t in range(4)] == pytest.approx([0, 0, .4, .25])
    # first examples, 1 -> 0: s3 (2,1,.5) (0,0,.1), s5 (3,1,.2): sodium .25 + .1, creatinine .05
    ranked = analysis.susceptibility["1to0", "first"]
    assert ranked["feature"].tolist()[:2] == ["sodium", "creatinine"]
    np.testing.assert_allclose(ranked["score"][:2], [.35, .05])


def test_clinical_units(analysis):
    table = analysis.clinical["1to0", "best"]
    assert table["feature"].tolist() == ["sodium", "heartrate"]      # top_features = 2
    sodium = table.iloc[0]
    assert sodium["median_abs_p"] == pytest.approx(.2)               # |.4|, |-.1|, |.2|
    assert sodium["median_change"] == pytest.approx(.2 * 20) and sodium["unit"] == "mEq/L"
    assert sodium["max_change"] == pytest.approx(.4 * 20)
    heart = table.iloc[1]
    assert heart["median_change"] == pytest.approx(.3 * 80) and heart["unit"] == "bpm"
    creat = analysis.clinical["0to1", "best"].iloc[0]
    assert creat["feature"] == "creatinine" and creat["unit"] == "mg/dL"
    assert creat["median_change"] == pytest.approx(.1 * 4.0)          # median of .1 .3 .05


def test_clinical_without_scaling_statistics_says_so():
    perturbations, shape = perturbations_from_arrays(npz_arrays())
    st = location_stats(perturbations["best"], np.array([3, 5]), shape)
    ranked = susceptibility_table(st, NAMES)
    table = clinical_table(ranked, st, NAMES, {"sodium": {"median": 140}}, top=3)
    assert table["note"].tolist() == ["no scaling statistics for this feature"] * 2
    assert table["median_change"].isna().all()
    assert scaling_range({"ph": {"p_low": 7.0, "p_high": 7.6}}, "ph") == (7.0, 7.6)
    assert scaling_range({"ph": {"p_low": 7.2, "p_high": 7.2}}, "ph") is None   # no range to scale by
    assert scaling_range({"ph": {"min": 7.0, "max": 7.6}}, "ph") is None       # one key pair: p_low, p_high


def test_duplicate_and_zero_elements_are_not_double_counted():
    pert = Perturbations(sample=np.array([0, 0, 0, 1]), t=np.array([1, 1, 2, 1]), f=np.array([0, 0, 0, 0]),
                         value=np.array([.2, .2, 0.0, -.4]))
    st = location_stats(pert, np.array([0, 1]), (2, 3, 1))
    assert st.count[:, 0].tolist() == [0, 2, 0]
    assert st.max_abs[1, 0] == pytest.approx(.4) and st.sum_abs[1, 0] == pytest.approx(.6)


def test_no_successful_sample_gives_empty_tables_not_nan():
    results = results_frame().assign(success=False)
    perturbations, shape = perturbations_from_arrays(npz_arrays())
    analysis = analyse(results, perturbations, shape, NAMES, NORMALISATION, top_features=3)
    head = analysis.headline.set_index("direction")
    assert head["successful"].tolist() == [0, 0, 0] and head["success_rate"].tolist() == [0, 0, 0]
    assert (head["note"] == "no successful sample").all()
    assert analysis.distributions.empty and analysis.feature_stats.empty and analysis.hour_stats.empty
    assert all(t.empty for t in analysis.susceptibility.values())
    assert all(t.empty for t in analysis.clinical.values())


def test_a_direction_without_samples_is_explained():
    results = results_frame()
    results = results[results["label"] == 0]
    perturbations, shape = perturbations_from_arrays(npz_arrays())
    analysis = analyse(results, perturbations, shape, NAMES, NORMALISATION, top_features=3)
    row = analysis.headline.set_index("direction").loc["1 → 0"]
    assert row["samples"] == 0 and math.isnan(row["success_rate"])
    assert row["note"] == "no samples with this label"
    assert analysis.susceptibility["1to0", "best"].empty
    assert analysis.susceptibility["0to1", "best"]["score"].iloc[0] == pytest.approx(.325)


def test_bad_inputs_raise_icurt_error():
    arrays = npz_arrays()
    del arrays["best_value"]
    with pytest.raises(IcurtError, match="best_value"):
        perturbations_from_arrays(arrays)
    arrays = npz_arrays()
    arrays["first_t"] = arrays["first_t"] + 4
    with pytest.raises(IcurtError, match="outside shape"):
        perturbations_from_arrays(arrays)
    perturbations, shape = perturbations_from_arrays(npz_arrays())
    with pytest.raises(IcurtError, match="l1_best"):
        analyse(results_frame().drop(columns="l1_best"), perturbations, shape, NAMES, {}, 3)
    with pytest.raises(IcurtError, match="feature names"):
        analyse(results_frame(), perturbations, shape, NAMES[:2], {}, 3)


def test_histogram_edges():
    np.testing.assert_allclose(histogram_edges(np.array([1, 3, 2]), integer=True), [.5, 1.5, 2.5, 3.5])
    edges = histogram_edges(np.array([0.0, 1.0]), bins=4)
    np.testing.assert_allclose(edges, [0, .25, .5, .75, 1])
    assert len(histogram_edges(np.array([]))) == 2


def test_distribution_table_skips_nan_sizes():
    results = results_frame()
    results.loc[results["sample_index"] == 0, "l1_best"] = math.nan
    table = distribution_table(results).set_index(["kind", "metric", "direction"])
    assert table.loc[("best", "l1", "all"), "count"] == 3
    assert success_table(results)["successful"].tolist() == [4, 2, 2]
