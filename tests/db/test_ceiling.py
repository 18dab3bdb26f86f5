"""The synthetic cohort's achievable ceiling: the posterior of the severity given the measurements,
checked by hand on one measurement, and on a whole cohort between a simple model and the oracle."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from icurt.db.synth.ceiling import Evidence, ceiling_probability
from icurt.db.synth.cohort import generate_cohort
from icurt.db.synth.events import SIGNAL_INDEX


def test_one_potassium_measurement_gives_the_hand_computed_posterior():
    """potassium: mean 4.1, between-stay sd 0.4, noise sd 0.3, effect 0.1, no daily wave. One value
    4.6 at 24 h, where drift = 1 − 0.7·e⁻¹ = 0.742487. With the stay's baseline integrated out,
    y − 4.1 ~ N(0.1 · 0.742487 · s, 0.3² + 0.4² = 0.25), so the posterior precision of s is
    1 + (0.0742487)² / 0.25 = 1.0220515 and its mean 0.0742487 · 0.5 / 0.25 / 1.0220515 = 0.145293."""
    evidence = Evidence(2)
    evidence.add(np.array([SIGNAL_INDEX["potassium"]]), np.array([1]), np.array([24.0]), np.array([4.6]))
    mean, variance, bg_seen = evidence.posterior()
    assert mean[1] == pytest.approx(0.145293, abs=1e-6)
    assert variance[1] == pytest.approx(1 / 1.0220515, abs=1e-6)
    assert (mean[0], variance[0]) == pytest.approx((0.0, 1.0))          # no measurement: the prior
    assert not bg_seen.any()


def test_measurements_outside_the_window_or_of_other_signals_carry_nothing():
    evidence = Evidence(1)
    evidence.add(np.array([SIGNAL_INDEX["potassium"]] * 2 + [SIGNAL_INDEX["meanbp"]]), np.zeros(3, int),
                 np.array([-1.0, 48.0, 10.0]), np.array([9.0, 9.0, 200.0]))
    assert evidence.sums.sum() == 0


def test_a_stay_without_measurements_gets_the_prior_risk():
    # E[sigmoid(−2 + 2.1 s)], s ~ N(0, 1), by a fine Riemann sum here
    s = np.linspace(-8, 8, 20001)
    expected = np.sum(np.exp(-s ** 2 / 2) / math.sqrt(2 * math.pi) / (1 + np.exp(2 - 2.1 * s))) * (s[1] - s[0])
    got = ceiling_probability(Evidence(1), -2.0, 2.1, adult=np.array([False]))
    assert got[0] == pytest.approx(expected, abs=1e-4)


def test_the_ceiling_is_calibrated_and_sits_below_the_oracle():
    cohort = generate_cohort(2500, seed=11)
    truth = cohort.truth
    q = cohort.tables["icustays"].set_index("icustay_id").loc[truth["icustay_id"], "los"].to_numpy() >= 2
    died, ceiling = truth["died"].to_numpy()[q], truth["ceiling_probability"].to_numpy()[q]
    assert abs(ceiling.mean() - died.mean()) < 0.015                       # calibrated on average
    assert cohort.ceiling_auroc == pytest.approx(roc_auc_score(died, ceiling), abs=0.01)
    # the measurements show the severity only partly: below the oracle, far above chance
    assert 0.75 < cohort.ceiling_auroc < cohort.oracle_auroc
