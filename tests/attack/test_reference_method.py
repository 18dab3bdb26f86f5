"""The reference study's attack, switch by switch ([attack_method] threshold, loss_norm,
loss_reduction, optimizer_state), each step computed by hand on a linear stand-in model."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from icurt.attack.attacker import AttackHparams, SparseAttack, induced_l1
from icurt.attack.samples import attack_samples
from icurt.config import AttackMethod, load_config, named_config_path, with_overrides
from icurt.errors import IcurtError

ICURT = AttackMethod(max_perts=0, lambda_decay=1.0, lambda_decay_every=10, early_stop_patience=0,
                     attack_misclassified=False, threshold="preconditioned", loss_norm="elementwise",
                     loss_reduction="sum", optimizer_state="per_batch")
REFERENCE = replace(ICURT, threshold="lambda", loss_norm="induced", loss_reduction="mean", optimizer_state="carried")
W = np.array([[[0.5, -1.0, 0.25], [1.0, 0.0, -0.5]]])  # (1, T=2, F=3)
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8                   # torch's Adam defaults


def attack_on(linear_score, method, bias=-5.0, **hp):
    values = dict(kappa=0.0, lambda_1=0.0, learning_rate=0.05, optimizer="adam", batch_size=1)
    model = linear_score(torch.tensor(W, dtype=torch.float32), bias=bias)
    return SparseAttack(model, AttackHparams(**{**values, **hp}), method)


def p_of(state) -> np.ndarray:
    return state.p.detach().numpy().astype(np.float64)


def soft(p, threshold):
    return np.sign(p) * np.maximum(np.abs(p) - threshold, 0.0)


X = np.full((1, 2, 3), 0.5, np.float32)  # score Σ W·x − 5 < 0: class 0, margin > 0 for every step here


# ---- threshold ----------------------------------------------------------------------------

def test_the_reference_threshold_shrinks_by_exactly_lambda_whatever_the_optimizer(linear_score):
    lr, lam = 0.05, 0.02
    # Adam's steps on a constant gradient −W are lr · sign(W); each iteration then loses exactly lambda_1
    attack = attack_on(linear_score, replace(ICURT, threshold="lambda"), learning_rate=lr, lambda_1=lam)
    p = p_of(attack.step(attack.init(X, [0]), 3))[0]
    np.testing.assert_allclose(p, 3 * (lr - lam) * np.sign(W[0]), atol=1e-6)
    # icurt's threshold is lr · lambda_1 / D with D = |g| for Adam here: lr · (1 − lambda_1 / |W|) per step
    attack = attack_on(linear_score, ICURT, learning_rate=lr, lambda_1=lam)
    p = p_of(attack.step(attack.init(X, [0]), 3))[0]
    safe = np.where(W[0] == 0, 1, np.abs(W[0]))
    np.testing.assert_allclose(p, np.where(W[0] == 0, 0, 3 * lr * (1 - lam / safe) * np.sign(W[0])), atol=1e-6)
    # SGD: the step is lr · W, the reference still shrinks by lambda_1, icurt by lr · lambda_1
    for threshold, shrink in (("lambda", lam), ("preconditioned", lr * lam)):
        attack = attack_on(linear_score, replace(ICURT, threshold=threshold), learning_rate=lr, lambda_1=lam,
                           optimizer="sgd")
        np.testing.assert_allclose(p_of(attack.step(attack.init(X, [0]), 1))[0], soft(lr * W[0], shrink), atol=1e-7)


# ---- loss norm ----------------------------------------------------------------------------

def test_the_induced_norm_is_the_largest_column_sum_over_hours():
    p = torch.tensor([[[0.1, -0.5, 0.0], [0.3, 0.2, -0.1]],
                      [[0.0, 0.0, 0.0], [0.0, 0.0, -0.25]]])
    # columns (features) of sample 0: |0.1|+|0.3| = 0.4, |−0.5|+|0.2| = 0.7, 0.1; sample 1: 0, 0, 0.25
    np.testing.assert_allclose(induced_l1(p).numpy(), [0.7, 0.25], atol=1e-7)


def test_the_reference_loss_back_propagates_lambda_times_the_largest_column_sum(linear_score):
    lr, lam = 0.1, 0.3
    method = replace(ICURT, loss_norm="induced")
    attack = attack_on(linear_score, method, learning_rate=lr, lambda_1=lam, optimizer="sgd")
    state = attack.step(attack.init(X, [0]), 2)
    threshold = lr * lam  # SGD, preconditioned
    # step 1 from P = 0: |P| has gradient 0 there, so only the margin's −W moves P
    p1 = soft(lr * W[0], threshold)
    # step 2: the gradient adds lambda_1 · sign(P) in the column with the largest Σ_t |P_tj|
    column = np.abs(p1).sum(axis=0).argmax()
    norm_gradient = np.zeros_like(p1)
    norm_gradient[:, column] = np.sign(p1[:, column])
    p2 = soft(p1 - lr * (-W[0] + lam * norm_gradient), threshold)
    np.testing.assert_allclose(p_of(state)[0], p2, atol=1e-6)
    # icurt's loss leaves the norm to the soft-threshold alone
    plain = attack_on(linear_score, ICURT, learning_rate=lr, lambda_1=lam, optimizer="sgd")
    np.testing.assert_allclose(p_of(plain.step(plain.init(X, [0]), 2))[0], soft(p1 + lr * W[0], threshold),
                               atol=1e-6)
    assert not np.allclose(p2, soft(p1 + lr * W[0], threshold))


@pytest.mark.parametrize("norm", ["elementwise", "induced"])
def test_first_and_best_loss_are_margin_plus_lambda_times_the_methods_norm(linear_score, norm):
    lam, kappa = 0.05, 0.1
    attack = attack_on(linear_score, replace(ICURT, loss_norm=norm), bias=-0.8, learning_rate=0.05, lambda_1=lam,
                       kappa=kappa)
    state = attack.step(attack.init(X, [0]), 40)
    result = attack.result(state)
    assert result.success[0] and result.best_iteration[0] > result.first_iteration[0]

    def loss_by_hand(p):
        score = (W[0] * (X[0] + p)).sum() - 0.8
        size = np.abs(p).sum(axis=0).max() if norm == "induced" else np.abs(p).sum()
        return max(-score + kappa, 0.0) + lam * size  # class 0: margin Z0 − Z1 = −score

    assert result.first_loss[0] == pytest.approx(loss_by_hand(result.first_p[0].astype(np.float64)), abs=1e-5)
    assert result.best_loss[0] == pytest.approx(loss_by_hand(result.best_p[0].astype(np.float64)), abs=1e-5)
    assert result.best_loss[0] < result.first_loss[0]


# ---- loss reduction -----------------------------------------------------------------------

def test_the_mean_loss_divides_each_samples_step_by_the_batch_size(linear_score):
    x = np.repeat(X, 3, axis=0)
    lr = 0.1
    for reduction, divisor in (("sum", 1), ("mean", 3)):
        attack = attack_on(linear_score, replace(ICURT, loss_reduction=reduction), learning_rate=lr,
                           optimizer="sgd", batch_size=3)
        p = p_of(attack.step(attack.init(x, [0, 0, 0]), 1))
        np.testing.assert_allclose(p, np.repeat(lr * W / divisor, 3, axis=0), atol=1e-7)


# ---- optimizer state ----------------------------------------------------------------------

X_A = np.array([[[0.5, 0.9, 0.5], [0.5, 0.5, 0.5]]], np.float32)  # score −0.275: class 0
X_B = np.full((1, 2, 3), 0.5, np.float32)                          # score +0.125: class 1


def test_adam_moments_and_step_count_carry_to_the_next_batch_of_the_same_size(linear_score):
    lr = 0.01
    attack = attack_on(linear_score, replace(ICURT, optimizer_state="carried"), bias=0.0, learning_rate=lr)
    first = attack.step(attack.init(X_A, [0]), 1)      # gradient −W (class 0), one Adam step
    second = attack.step(attack.init(X_B, [1], carry=first), 1)  # gradient +W, continuing that Adam
    m = BETA1 * (1 - BETA1) * -W[0] + (1 - BETA1) * W[0]
    v = BETA2 * (1 - BETA2) * W[0] ** 2 + (1 - BETA2) * W[0] ** 2
    m_hat, v_hat = m / (1 - BETA1 ** 2), v / (1 - BETA2 ** 2)
    np.testing.assert_allclose(p_of(second)[0], -lr * m_hat / (np.sqrt(v_hat) + EPS), atol=1e-7)
    assert float(second.optimizer.state[second.p]["step"]) == 2
    # a fresh optimizer per batch: Adam's first step is lr · sign, whatever came before
    fresh = attack_on(linear_score, ICURT, bias=0.0, learning_rate=lr)
    after = fresh.step(fresh.init(X_B, [1], carry=fresh.step(fresh.init(X_A, [0]), 1)), 1)
    np.testing.assert_allclose(p_of(after)[0], -lr * np.sign(W[0]), atol=1e-6)
    # a batch of another size (the last one) starts afresh, as the reference rebuilds its optimizer
    third = attack.step(attack.init(np.concatenate([X_A, X_A]), [0, 0], carry=second), 1)
    assert float(third.optimizer.state[third.p]["step"]) == 1


def test_carried_state_attacks_the_correctly_classified_samples_in_order(linear_score):
    model = linear_score(torch.tensor(W, dtype=torch.float32), bias=0.0)
    x = np.concatenate([X_A, X_B, X_A, X_B, X_B])
    y = np.array([0, 0, 0, 1, 1])  # sample 1 is misclassified (predicted 1): not attacked
    hp = AttackHparams(kappa=0.0, lambda_1=0.001, learning_rate=0.02, optimizer="adam", batch_size=2)
    method = replace(REFERENCE, loss_norm="elementwise")
    got = attack_samples(model, x, y, hp, method, iterations=5)
    np.testing.assert_array_equal(got.attacked, [True, False, True, True, True])
    # by hand: batches [0, 2] then [3, 4], the second continuing the first's optimizer
    attack = SparseAttack(model, hp, method)
    first = attack.step(attack.init(x[[0, 2]], [0, 0]), 5)
    second = attack.step(attack.init(x[[3, 4]], [1, 1], carry=first), 5)
    np.testing.assert_allclose(got.best_p[[3, 4]], attack.result(second).best_p, atol=0)
    np.testing.assert_allclose(got.first_p[[0, 2]], attack.result(first).first_p, atol=0)
    np.testing.assert_array_equal(got.first_loss[1], np.nan)
    reports = []
    attack_samples(model, x, y, hp, method, iterations=5, report_every=2,
                   on_report=lambda done, partial: reports.append(done))
    assert reports == [5]  # batches that depend on each other only report their end
    per_batch = attack_samples(model, x, y, hp, replace(method, optimizer_state="per_batch"), iterations=5)
    assert not np.allclose(per_batch.best_p[[3, 4]], got.best_p[[3, 4]])


def test_carried_state_needs_every_sample_to_run_the_whole_budget():
    with pytest.raises(IcurtError, match="early_stop_patience"):
        load_config(overrides=["attack_method.optimizer_state=carried", "attack_method.early_stop_patience=5"],
                    env={})


# ---- the profile ---------------------------------------------------------------------------

def test_the_reference_profile_sets_every_attack_switch_to_the_reference():
    reference = load_config(named_config_path("reference"), env={})
    default = load_config(env={})
    assert reference.attack_method == replace(default.attack_method, **{
        k: getattr(REFERENCE, k) for k in ("threshold", "loss_norm", "loss_reduction", "optimizer_state")},
        lambda_decay=1.0, early_stop_patience=0, max_perts=0, attack_misclassified=False)
    assert reference.tune_attack.prune is False and default.tune_attack.prune is True
    assert reference.tune_attack.n_critical == 1  # the reference's max_perts = 0: n_nonzero ≤ 0
    assert reference.tune_attack.objective == "sparse_small"
    # its second objective is a second `icurt run` that changes only tune-attack and what follows
    assert with_overrides(reference, ["tune_attack.objective=sparse_small_max"]).attack_method == reference.attack_method
