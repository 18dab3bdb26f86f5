"""The sparse attack on a tiny LSTM trained here, and its step checked by hand on a linear model."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from icurt.attack.attacker import AttackHparams, SparseAttack
from icurt.attack.samples import attack_samples
from icurt.config import AttackMethod
from icurt.errors import IcurtError
from icurt.model.lstm import LSTMClassifier, ModelHparams
from icurt.planted import planted_dataset

from tiny_bilstm import fit_tiny_bilstm

T, F = 8, 3


def planted_data(n: int, seed: int = 0):
    """icurt.planted on T hours × F features: a latent severity decides the label and drifts feature 0."""
    made = planted_dataset(n, hours=T, features=F, seed=seed, death_rate=0.5, strength=10.0, drift=0.4,
                           noise=0.15, signal_features=1).dataset
    return made.features, made.labels


def train_tiny_model(x, y, steps: int = 150) -> LSTMClassifier:
    return fit_tiny_bilstm(x, y, ModelHparams(lstm_hidden=8, fc_size=8, dropout=0.3), lr=1e-2, steps=steps)


@pytest.fixture(scope="module")
def tiny(one_thread):
    x, y = planted_data(96)
    model = train_tiny_model(x, y)
    with torch.no_grad():
        assert (model(torch.from_numpy(x)).argmax(1).numpy() == y).mean() > 0.85
    return model, x, y


PLAIN_METHOD = AttackMethod(max_perts=0, lambda_decay=1.0, lambda_decay_every=10, early_stop_patience=0,
                            attack_misclassified=False, threshold="preconditioned", loss_norm="elementwise",
                            loss_reduction="sum", optimizer_state="per_batch")


def hparams(**changes) -> AttackHparams:
    values = dict(kappa=0.0, lambda_1=0.01, learning_rate=0.05, optimizer="adam", batch_size=32)
    return AttackHparams(**{**values, **changes})


def settings(**changes) -> tuple[AttackHparams, AttackMethod]:
    """(hyperparameters, method) with `changes` applied to whichever holds each name."""
    method = {k: v for k, v in changes.items() if k in AttackMethod.__dataclass_fields__}
    return hparams(**{k: v for k, v in changes.items() if k not in method}), replace(PLAIN_METHOD, **method)


def predict(model, x) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, np.float32))).numpy()


def total_loss(model, x, p, target, hp) -> np.ndarray:
    """f(x + P) + lambda_1 ‖P‖₁, computed from scratch."""
    logits = predict(model, x + p)
    own = logits[np.arange(len(target)), target]
    other = logits[np.arange(len(target)), 1 - target]
    return np.maximum(own - other + hp.kappa, 0) + hp.lambda_1 * np.abs(p).sum(axis=(1, 2))


def test_attack_flips_predictions_inside_the_box(tiny):
    model, x, y = tiny
    training = model.training
    res = attack_samples(model, x, y, *settings(), iterations=150)
    assert model.training == training and all(p.requires_grad for p in model.parameters())
    assert res.attacked.sum() > 80 and res.success[res.attacked].mean() > 0.9
    for p in (res.first_p, res.best_p):
        adversarial = x + p
        assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    ok = res.success
    assert (predict(model, x[ok] + res.first_p[ok]).argmax(1) != y[ok]).all()
    assert (predict(model, x[ok] + res.best_p[ok]).argmax(1) != y[ok]).all()
    np.testing.assert_allclose(res.adv_logits[ok], predict(model, x[ok] + res.best_p[ok]), atol=1e-4)
    np.testing.assert_allclose(res.orig_logits, predict(model, x), atol=1e-5)
    assert np.isnan(res.adv_logits[~ok]).all() and not res.first_p[~ok].any()


def test_sparsity_is_exact_and_grows_with_lambda(tiny):
    model, x, y = tiny
    mean_nonzero = {}
    for lam in (1e-3, 0.1):
        res = attack_samples(model, x, y, *settings(lambda_1=lam), iterations=150)
        best = res.best_p[res.success]
        assert len(best) > 60
        mean_nonzero[lam] = (best != 0).sum(axis=(1, 2)).mean()
    assert (best == 0).mean() > 0.5  # exact zeros, not tiny values
    assert mean_nonzero[0.1] < 0.5 * mean_nonzero[1e-3]


def test_max_perts_caps_every_perturbation(tiny):
    model, x, y = tiny
    res = attack_samples(model, x, y, *settings(lambda_1=1e-4, max_perts=2), iterations=100)
    for p in (res.first_p, res.best_p):
        assert (p != 0).sum(axis=(1, 2)).max() <= 2
    assert res.success.sum() > 20


def test_misclassified_samples_are_skipped_unless_asked(tiny):
    model, x, y = tiny
    wrong = np.arange(len(y)) % 10 == 0
    labels = np.where(wrong, 1 - y, y)
    prediction = predict(model, x).argmax(1)
    res = attack_samples(model, x, labels, *settings(), iterations=60)
    np.testing.assert_array_equal(res.attacked, prediction == labels)
    skipped = ~res.attacked
    assert skipped.sum() >= wrong.sum() - 2
    assert not res.success[skipped].any() and (res.first_iteration[skipped] == -1).all()
    res_all = attack_samples(model, x, labels, *settings(attack_misclassified=True), iterations=60)
    assert res_all.attacked.all()
    flipped = res_all.success & skipped
    assert flipped.sum() >= skipped.sum() - 1  # pushed away from the model's (wrong) prediction
    assert (predict(model, x[flipped] + res_all.best_p[flipped]).argmax(1) != prediction[flipped]).all()


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_first_comes_before_best_and_best_has_the_lowest_loss(tiny, decay):
    model, x, y = tiny
    hp, method = settings(kappa=0.5, lambda_1=0.02, lambda_decay=decay, lambda_decay_every=7)
    res = attack_samples(model, x, y, hp, method, iterations=120)
    ok = res.success
    assert (res.first_iteration[ok] >= 1).all() and (res.first_iteration[ok] <= res.best_iteration[ok]).all()
    assert (res.best_iteration[ok] <= 120).all()
    assert (res.first_iteration[~ok] == -1).all() and (res.best_iteration[~ok] == -1).all()
    first = total_loss(model, x[ok], res.first_p[ok], y[ok], hp)
    best = total_loss(model, x[ok], res.best_p[ok], y[ok], hp)
    assert (best <= first + 1e-5).all() and (best < first - 1e-4).any()


def test_one_step_matches_the_proximal_update_by_hand(linear_score):
    LinearScore = linear_score
    weight = torch.tensor([[[0.5, -2.0, 0.05], [3.0, 0.0, -0.2]]])
    x = np.array([[[0.5, 0.1, 0.5], [0.9, 0.5, 0.5]]], np.float32)
    model = LinearScore(weight, bias=-5.0)  # class 0, margin Z0 - Z1 = 5 - Σ W·x
    lr, lam = 0.2, 0.3
    attack = SparseAttack(model, AttackHparams(kappa=0.0, lambda_1=lam, learning_rate=lr, optimizer="sgd",
                                               batch_size=1), PLAIN_METHOD)
    state = attack.step(attack.init(x, [0]), 1)
    # P = clamp(soft(0 + lr·W, lr·λ), -x, 1 - x): gradient of (Z0 - Z1) is -W
    w = weight.numpy()[0]
    shrunk = np.sign(w) * np.maximum(lr * np.abs(w) - lr * lam, 0)
    expected = np.clip(shrunk, -x[0], 1 - x[0])
    np.testing.assert_allclose(state.p.detach().numpy()[0], expected, atol=1e-7)
    assert expected[1, 0] == pytest.approx(0.1) and expected[0, 1] == pytest.approx(-0.1)  # both clamped

    adam = SparseAttack(model, AttackHparams(kappa=0.0, lambda_1=lam, learning_rate=lr, optimizer="adam",
                                             batch_size=1), PLAIN_METHOD)
    p = adam.step(adam.init(x, [0]), 1).p.detach().numpy()[0]
    # Adam's first step is lr·sign(g); the matching threshold lr·λ/|g| keeps it only where |g| > λ
    expected = np.clip(np.where(np.abs(w) > lam, np.sign(w) * lr * (1 - lam / np.where(w == 0, 1, np.abs(w))), 0),
                       -x[0], 1 - x[0])
    np.testing.assert_allclose(p, expected, atol=1e-6)


def test_lambda_search_frees_samples_whose_gradients_are_all_below_lambda(linear_score):
    LinearScore = linear_score
    weight = torch.full((1, 2, 3), 0.2)          # |gradient| 0.2 everywhere, below lambda_1 = 0.5
    x = np.full((1, 2, 3), 0.5, np.float32)      # score 0.2 · 3 - 1 = -0.4: class 0; flips once Σ P > 2
    model = LinearScore(weight, bias=-1.0)
    fixed = hparams(lambda_1=0.5, learning_rate=0.1, optimizer="sgd", batch_size=1)
    stuck = attack_samples(model, x, [0], fixed, PLAIN_METHOD, iterations=60)
    assert not stuck.success[0] and not stuck.best_p.any()  # the soft threshold zeroes every step
    # ×0.5 every 5 iterations: after 10 decays lambda is 0.5/1024 < 0.2, so P grows and flips the class
    searched = attack_samples(model, x, [0], fixed, replace(PLAIN_METHOD, lambda_decay=0.5, lambda_decay_every=5),
                              iterations=60)
    assert searched.success[0] and predict(model, x + searched.best_p).argmax(1)[0] == 1


def test_lambda_search_raises_the_success_rate(tiny):
    model, x, y = tiny
    # lambda_1 = 30 outweighs most input gradients of this model: a fixed weight leaves most samples at P = 0
    fixed = attack_samples(model, x, y, *settings(lambda_1=30.0), iterations=80)
    searched = attack_samples(model, x, y, *settings(lambda_1=30.0, lambda_decay=0.5), iterations=80)
    assert fixed.success.sum() < 0.5 * searched.success.sum()
    assert searched.success[searched.attacked].mean() > 0.95


def test_blocks_of_iterations_match_one_run_and_can_stop(tiny):
    model, x, y = tiny
    whole = attack_samples(model, x, y, *settings(), iterations=40)
    reports = []
    blocked = attack_samples(model, x, y, *settings(), iterations=40, report_every=15,
                             on_report=lambda done, partial: reports.append((done, partial.success.sum())))
    assert [done for done, _ in reports] == [15, 30, 40]
    assert reports[-1][1] == blocked.success.sum()
    np.testing.assert_array_equal(blocked.first_iteration, whole.first_iteration)
    np.testing.assert_array_equal(blocked.best_iteration, whole.best_iteration)
    np.testing.assert_allclose(blocked.best_p, whole.best_p, atol=1e-6)
    stopped = attack_samples(model, x, y, *settings(), iterations=40, report_every=10,
                             on_report=lambda done, partial: done < 20)
    assert stopped.best_iteration.max() <= 20


def count_attacked_rows(attack: SparseAttack) -> list[int]:
    """Every batch size the attack's model is called with, recorded by a forward hook."""
    sizes = []
    attack.model.register_forward_hook(lambda module, inputs, output: sizes.append(inputs[0].shape[0]))
    return sizes


def attack_counting_rows(model, x, y, hp, method, iterations):
    """What attack_samples does for one batch, plus the rows the model processed."""
    attack = SparseAttack(model, hp, method)
    sizes = count_attacked_rows(attack)
    prediction = predict(model, x).argmax(1)
    ok = prediction == y
    state = attack.step(attack.init(x[ok], y[ok]), iterations)
    return attack.result(state), sum(sizes), state


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop", "sgd"])
def test_early_stop_drops_settled_samples_and_keeps_their_trajectories(tiny, optimizer):
    model, x, y = tiny
    lr = {"adam": 0.05, "rmsprop": 0.005, "sgd": 1.0}[optimizer]
    hp, method = settings(optimizer=optimizer, learning_rate=lr, batch_size=len(y), lambda_decay=0.5)
    full, full_rows, _ = attack_counting_rows(model, x, y, hp, method, iterations=200)
    early, early_rows, state = attack_counting_rows(model, x, y, hp, replace(method, early_stop_patience=20), 200)
    assert full.success.mean() > 0.9 and early.success.mean() >= full.success.mean() - 0.02
    assert len(state.rows) < len(full.success) and early_rows < full_rows
    if optimizer != "rmsprop":  # RMSprop keeps shaving the L1 term on this model, so few samples settle
        assert early_rows < 0.7 * full_rows
    # a sample stops only after its first example, and until it stops it follows the same path:
    # the optimizer state moved with it when the batch shrank
    np.testing.assert_array_equal(early.first_iteration, full.first_iteration)
    np.testing.assert_allclose(early.first_p, full.first_p, atol=1e-5)
    still_running = state.rows.numpy()
    np.testing.assert_allclose(early.best_p[still_running], full.best_p[still_running], atol=1e-5)
    correct = predict(model, x).argmax(1) == y
    ok = early.success
    assert (predict(model, x[correct][ok] + early.best_p[ok]).argmax(1) != y[correct][ok]).all()


def test_early_stop_ends_a_batch_once_every_sample_has_settled(tiny):
    model, x, y = tiny
    hp, method = settings(lambda_1=0.05, early_stop_patience=10)
    _, rows_200, state = attack_counting_rows(model, x, y, hp, method, iterations=200)
    _, rows_2000, _ = attack_counting_rows(model, x, y, hp, method, iterations=2000)
    assert len(state.rows) == 0 or rows_2000 > rows_200  # settles for good, or keeps going
    assert rows_2000 < 3 * rows_200  # settled samples do not come back: most of the budget is unused
    results = attack_samples(model, x, y, hp, method, iterations=2000)
    assert results.success[results.attacked].mean() > 0.9


def test_hparams_round_trip_and_reject_bad_values():
    hp = hparams(kappa=0.5)
    assert AttackHparams.from_dict({**hp.to_dict(), "objective": 1.5, "trial": 3}) == hp
    with pytest.raises(IcurtError):
        hparams(optimizer="lbfgs")
    with pytest.raises(IcurtError):
        hparams(learning_rate=0.0)
    with pytest.raises(IcurtError):
        hparams(lambda_1=-1.0)
    with pytest.raises(IcurtError):
        AttackHparams.from_dict({"kappa": 0.0})
    with pytest.raises(IcurtError):
        attack_samples(nn.Identity(), np.full((2, T, F), 2.0, np.float32), np.zeros(2), *settings(), 1)


@pytest.mark.parametrize("key,value", [("lambda_decay", 0.0), ("lambda_decay", 1.5), ("early_stop_patience", -1),
                                       ("lambda_decay_every", 0), ("max_perts", -1)])
def test_the_attack_method_rejects_bad_values_at_the_config_door(key, value):
    from icurt.config import load_config

    with pytest.raises(IcurtError, match=f"attack_method.{key}"):
        load_config(overrides=[f"attack_method.{key}={value}"], env={})
