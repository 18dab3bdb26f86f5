"""The attack's batch size (icurt/attack/batching.py) and the claims it may not change: with icurt's
method a sample's attack is the same in any batch, so the batch is chosen for throughput; with the
reference's it is not, so the tuned size stays."""

from dataclasses import replace

import numpy as np
import pytest

from icurt.attack.attacker import AttackHparams
from icurt.attack.batching import AUTO_BATCH_SIZE, attack_batch_size, batch_choice, couples_samples
from icurt.attack.samples import attack_samples
from icurt.config import load_config, named_config_path
from icurt.model.hparams import ModelHparams
from icurt.planted import planted_dataset

from tiny_bilstm import fit_tiny_bilstm

DEFAULT = load_config(env={}).attack_method
REFERENCE = load_config(named_config_path("reference"), env={}).attack_method
ROUNDING = 1e-5   # float32 rounding over 40 steps, far below any change of method
HP = dict(kappa=0.0, lambda_1=0.005, learning_rate=0.05, optimizer="adam")


@pytest.fixture(scope="module")
def tiny(one_thread):
    made = planted_dataset(24, hours=6, features=3, seed=3, death_rate=0.5, strength=10.0, drift=0.4,
                           noise=0.15, signal_features=1).dataset
    model = fit_tiny_bilstm(made.features, made.labels, ModelHparams(lstm_hidden=8, fc_size=8), lr=1e-2, steps=100)
    return model, made.features, made.labels


def test_the_profiles_methods_are_what_the_batch_choice_assumes():
    assert not couples_samples(DEFAULT)
    assert couples_samples(REFERENCE)
    assert couples_samples(replace(DEFAULT, loss_reduction="mean"))
    assert couples_samples(replace(DEFAULT, optimizer_state="carried"))


def test_icurts_method_gets_the_auto_size_and_the_reference_its_tuned_one():
    assert batch_choice(DEFAULT, 32, 0, "cuda") == (AUTO_BATCH_SIZE["cuda"], "auto") == (2048, "auto")
    assert attack_batch_size(DEFAULT, 32, 0, "cuda:1") == 2048
    assert batch_choice(DEFAULT, 32, 0, "cpu") == (AUTO_BATCH_SIZE["cpu"], "auto")
    assert batch_choice(REFERENCE, 32, 0, "cuda") == (32, "tuned")
    assert batch_choice(REFERENCE, 128, 0, "cpu") == (128, "tuned")
    # [attack].batch_size > 0 wins for either method
    assert batch_choice(DEFAULT, 32, 16, "cuda") == (16, "configured")
    assert batch_choice(REFERENCE, 32, 16, "cpu") == (16, "configured")


def test_with_icurts_method_a_samples_attack_does_not_depend_on_its_batch(tiny):
    """Same 24 samples in batches of 3 and of 8: the same outcomes, and the same perturbations up
    to float rounding (a BLAS kernel may sum in another order at another batch size: 2e-7 seen on
    CI's CPU). A method change that makes a sample's step depend on its batch breaks this (the
    reference method's differ by ~0.6, next test), and the auto batch with it."""
    model, x, y = tiny
    small, large = (attack_samples(model, x, y, AttackHparams(**HP, batch_size=b), DEFAULT, 40) for b in (3, 8))
    assert small.success.sum() >= 8   # enough flips for the comparison to mean something
    for name in ("success", "first_iteration", "best_iteration"):
        np.testing.assert_array_equal(getattr(small, name), getattr(large, name), err_msg=name)
    for name in ("best_p", "first_p", "adv_logits", "orig_logits"):
        np.testing.assert_allclose(getattr(small, name), getattr(large, name), rtol=0, atol=ROUNDING, err_msg=name)


def test_with_the_reference_method_the_batch_changes_the_attack(tiny):
    """Its batch-mean loss and carried optimizer state tie each sample to its batch: the tuned
    size must stay (batch_choice "tuned")."""
    model, x, y = tiny
    small, large = (attack_samples(model, x, y, AttackHparams(**HP, batch_size=b), REFERENCE, 40) for b in (3, 8))
    assert np.abs(small.best_p - large.best_p).max() > 100 * ROUNDING


def test_a_resumed_run_keeps_the_auto_size_it_planned():
    """Started on a GPU (auto 2,048), resumed on a CPU (auto 64): the finished batches are 2,048's."""
    from icurt.attack.batching import resumed_batch_choice

    assert resumed_batch_choice((64, "auto"), {"batch_size": 2048}) == (
        2048, "auto (the size the interrupted run planned)")
    assert resumed_batch_choice((64, "auto"), {"batch_size": 64}) == (64, "auto")
    assert resumed_batch_choice((64, "auto"), {}) == (64, "auto")          # the run planned nothing yet
    # a configured or tuned size is the user's or the method's: the plan check judges it
    assert resumed_batch_choice((32, "configured"), {"batch_size": 2048}) == (32, "configured")
    assert resumed_batch_choice((128, "tuned"), {"batch_size": 2048}) == (128, "tuned")
