"""Budgets and the fragility sweep on a tiny LSTM: every example within its budget, success never
falling as the budget grows, measured-only examples only on measured cells."""

import numpy as np
import pytest
import torch

from icurt.attack.attacker import AttackHparams
from icurt.attack.batches import select_deaths_first, select_samples
from icurt.attack.budget import Budget, max_abs_of, project, scaled_steps, to_clinical, within
from icurt.attack.sweep import sweep_curve, sweep_curves
from icurt.config import AttackMethod, load_config, with_overrides
from icurt.errors import IcurtError
from icurt.model.hparams import ModelHparams
from icurt.planted import planted_dataset

from tiny_bilstm import fit_tiny_bilstm

T, F = 8, 3
NAMES = ["heartrate", "potassium", "sodium"]
NORMALISATION = {"heartrate": {"p_low": 60.0, "p_high": 110.0}, "potassium": {"p_low": 3.5, "p_high": 5.5},
                 "sodium": {"p_low": 133.0, "p_high": 145.0}}
STEP = {"heartrate": 10.0, "potassium": 0.5, "sodium": 3.0}   # scaled: 0.2, 0.25, 0.25
METHOD = AttackMethod(max_perts=0, lambda_decay=0.5, lambda_decay_every=5, early_stop_patience=0,
                      attack_misclassified=False, threshold="preconditioned", loss_norm="elementwise",
                      loss_reduction="sum", optimizer_state="per_batch")
HP = AttackHparams(kappa=0.0, lambda_1=0.005, learning_rate=0.05, optimizer="adam", batch_size=64)


@pytest.fixture(scope="module")
def tiny(one_thread):
    made = planted_dataset(64, hours=T, features=F, seed=2, death_rate=0.5, strength=10.0, drift=0.4,
                           noise=0.15, signal_features=1).dataset
    model = fit_tiny_bilstm(made.features, made.labels, ModelHparams(lstm_hidden=8, fc_size=8), lr=1e-2, steps=150)
    x, y = torch.from_numpy(made.features), torch.from_numpy(made.labels)
    with torch.no_grad():
        correct = (model(x).argmax(1) == y).numpy()
    measured = np.random.default_rng(5).random((len(y), T, F)) < 0.5
    return model, made.features[correct], made.labels[correct], measured[correct]


def test_one_scaled_unit_is_the_scaling_range_in_clinical_units():
    np.testing.assert_allclose(to_clinical(np.ones((1, 3)), NORMALISATION, NAMES)
                               - to_clinical(np.zeros((1, 3)), NORMALISATION, NAMES), [[50.0, 2.0, 12.0]])
    np.testing.assert_allclose(scaled_steps(STEP, NORMALISATION, NAMES), [0.2, 0.25, 0.25])
    with pytest.raises(IcurtError, match="'sodium' has no scaling range"):
        scaled_steps(STEP, {k: v for k, v in NORMALISATION.items() if k != "sodium"}, NAMES)


def test_projection_by_hand():
    p = np.zeros((1, 2, 3), np.float32)
    p[0] = [[0.5, -0.1, 0.05], [-0.3, 0.2, 0.0]]
    measured = np.array([[[True, True, True], [False, True, True]]])
    steps = np.array([0.2, 0.25, 0.25])
    got = project(p, Budget(2, 1.0, True), max_abs_of(Budget(2, 1.0, True), steps), measured)
    # clip to ±(0.2, .25, .25): [.2, -.1, .05], [-.2, .2, 0]; unmeasured (1, 0) → 0; keep the 2 largest
    np.testing.assert_allclose(got[0], [[0.2, 0.0, 0.0], [0.0, 0.2, 0.0]])
    assert within(got, Budget(2, 1.0, True), steps, measured).all()
    assert not within(p, Budget(2, 1.0, True), steps, measured).any()


def test_every_example_is_within_its_budget_and_success_never_falls(tiny):
    model, x, y, measured = tiny
    fc = with_overrides(load_config(env={}), ["fragility.l0_budgets=[1, 2, 4, 24]",
                                              "fragility.linf_scales=[0.25, 1.0, 4.0]"]).fragility
    steps = scaled_steps(STEP, NORMALISATION, NAMES)
    for curve in sweep_curves(fc):
        result = sweep_curve(model, x, y, HP, METHOD, curve, steps, measured, None, iterations=60)
        rates = result.success.mean(axis=1)
        assert (np.diff(rates) >= 0).all(), (curve[0].curve, curve[0].cells, rates)
        assert (np.diff(result.success.astype(int), axis=0) >= 0).all()   # per sample too
        for c, cell in enumerate(curve):
            ok = result.success[c]
            p = result.p[c][ok]
            if cell.budget.max_nonzero:
                assert (p != 0).reshape(len(p), -1).sum(axis=1).max(initial=0) <= cell.budget.max_nonzero
            clinical_change = np.abs(p) * np.array([50.0, 2.0, 12.0])   # |P| × (p_high − p_low)
            assert (clinical_change <= cell.budget.linf_scale * np.array([10.0, 0.5, 3.0]) + 1e-4).all()
            if cell.cells == "measured":
                assert not ((p != 0) & ~measured[ok]).any()
            with torch.no_grad():   # each example really flips the prediction
                flipped = model(torch.from_numpy(x[ok] + p)).argmax(1).numpy()
            assert (flipped != y[ok]).all()
        assert rates[-1] > rates[0] or rates[0] == 1.0   # a larger budget flips more (or all already)


def test_warm_start_and_reuse_attack_only_what_is_left(tiny):
    model, x, y, measured = tiny
    steps = scaled_steps(STEP, NORMALISATION, NAMES)
    fc = with_overrides(load_config(env={}), ["fragility.l0_budgets=[2, 24]", "fragility.cells=[\"all\"]"]).fragility
    curve = sweep_curves(fc)[0]
    free = sweep_curve(model, x, y, HP, METHOD, [curve[-1]], steps, None, None, iterations=80)
    warm = sweep_curve(model, x, y, HP, METHOD, curve, steps, None, free.p[0], iterations=80)
    # samples flipped at k = 2 are not attacked again at k = 24 and keep their example
    assert not (warm.attacked[1] & warm.success[0]).any()
    np.testing.assert_array_equal(warm.p[1][warm.success[0]], warm.p[0][warm.success[0]])
    # a warm start from the unbudgeted example that already fits the budget is found at iteration 0
    fits = free.success[0] & within(free.p[0], curve[-1].budget, max_abs_of(curve[-1].budget, steps), None)
    assert fits.any() and (warm.found_at[1][fits & ~warm.success[0]] == 0).all()


def test_the_sweep_keeps_every_death_and_draws_the_survivors():
    labels = np.array([0, 1, 0, 0, 1, 0, 0, 1, 0, 0])           # deaths at rows 1, 4, 7; 7 survivors
    survivors = np.array([0, 2, 3, 5, 6, 8, 9])
    kept = select_deaths_first(labels, 5, seed=3)
    assert kept.tolist() == sorted([1, 4, 7, *survivors[select_samples(7, 2, 3)].tolist()])
    assert select_deaths_first(labels, 10, seed=3).tolist() == list(range(10))   # all fit: all kept
    assert select_deaths_first(labels, 3, seed=3).tolist() == [1, 4, 7]          # deaths fill it
    two = select_deaths_first(labels, 2, seed=3)                                  # fewer than the deaths
    assert len(two) == 2 and set(two) <= {1, 4, 7}
