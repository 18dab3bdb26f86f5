"""Claimed flips are re-verified before they are recorded (samples.verify_successes), and the
attack runs without TF32 (exact.exact_fp32)."""

import numpy as np
import pytest
import torch

from icurt.attack.attacker import AttackHparams
from icurt.attack.exact import exact_fp32
from icurt.attack.samples import SampleResults, attack_samples, verify_successes
from icurt.attack.budget import Budget
from icurt.attack.sweep import Cell, sweep_curve
from icurt.config import load_config

T, F = 2, 2
METHOD = load_config(env={}).attack_method
HP = AttackHparams(kappa=0.0, lambda_1=0.01, learning_rate=0.1, optimizer="adam", batch_size=4)


def claimed(best_p: np.ndarray, first_p: np.ndarray, orig_logits: np.ndarray) -> SampleResults:
    """Results that claim a flip for every sample, as the attack would record them."""
    n = len(best_p)
    return SampleResults(
        success=np.ones(n, bool), first_iteration=np.array([3, 4, 5])[:n], best_iteration=np.array([7, 8, 9])[:n],
        first_loss=np.full(n, 0.5, np.float32), best_loss=np.full(n, 0.25, np.float32), first_p=first_p,
        best_p=best_p, orig_logits=orig_logits, adv_logits=np.full((n, 2), 0.125, np.float32),
        attacked=np.ones(n, bool), unverified=np.zeros(n, bool))


def test_a_flip_exactly_on_the_boundary_is_recorded_as_a_failure(linear_score):
    """Logits [0, 0.25 · Σ(x + p) − 0.5] with x = 0: class 0 (score −0.5), attacked class 0.
    Sample 0: best Σp = 2 → logits [0, 0] exactly, argmax 0 (torch takes the first of a tie), margin
    0 − 0 = 0 ≥ 0 → not a flip. Sample 1: Σp = 4 → [0, 0.5], margin −0.5 → a flip. Sample 2: best
    Σp = 4 flips but its first example Σp = 1 → [0, −0.25] does not → not a flip either."""
    model = linear_score(torch.full((1, T, F), 0.25), bias=-0.5)
    x = np.zeros((3, T, F), np.float32)
    on_boundary = np.array([[1.0, 1.0], [0.0, 0.0]], np.float32)
    clear = np.ones((T, F), np.float32)
    short = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    results = claimed(np.stack([on_boundary, clear, clear]), np.stack([on_boundary, clear, short]),
                      np.tile(np.array([[0.0, -0.5]], np.float32), (3, 1)))
    got = verify_successes(model, x, results)
    np.testing.assert_array_equal(got.unverified, [True, False, True])
    np.testing.assert_array_equal(got.success, [False, True, False])
    np.testing.assert_array_equal(got.first_iteration, [-1, 4, -1])
    np.testing.assert_array_equal(got.best_iteration, [-1, 8, -1])
    for row in (0, 2):   # cleared like a sample with no example
        assert not got.best_p[row].any() and not got.first_p[row].any()
        assert np.isnan(got.adv_logits[row]).all() and np.isnan([got.first_loss[row], got.best_loss[row]]).all()
    np.testing.assert_array_equal(got.best_p[1], clear)          # the verified flip is kept as recorded
    np.testing.assert_array_equal(got.adv_logits[1], [0.125, 0.125])
    np.testing.assert_array_equal(got.orig_logits, results.orig_logits)
    assert got.attacked.all()
    assert results.success.all() and results.best_p[0].any()     # the caller's results are left alone


def test_attack_samples_and_the_sweep_record_only_flips_that_re_verify(linear_score, monkeypatch):
    """A report's forward pass that sees every example on the boundary (logits [0, 0]): every flip
    the attack claims is recorded as a failure, flagged unverified, in attack_samples and the sweep."""
    model = linear_score(torch.full((1, T, F), 1.0), bias=-1.0)
    x = np.full((4, T, F), 0.1, np.float32)             # score 4 · 0.1 − 1 = −0.6: class 0, flips easily
    y = np.zeros(4, np.int64)
    honest = attack_samples(model, x, y, HP, METHOD, 30)
    assert honest.success.all() and not honest.unverified.any()
    import icurt.model.trainer as trainer
    monkeypatch.setattr(trainer, "predict_logits", lambda m, inputs: torch.zeros((len(inputs), 2)))
    doubted = attack_samples(model, x, y, HP, METHOD, 30)
    assert doubted.unverified.all() and not doubted.success.any() and not doubted.best_p.any()
    curve = [Cell("linf", "all", 1.0, Budget(0, 1.0, False))]
    swept = sweep_curve(model, x, y, HP, METHOD, curve, np.ones(F, np.float32), None, None, 30)
    assert swept.unverified.all() and not swept.success.any() and (swept.found_at == -1).all()


@pytest.mark.parametrize("before", [True, False])
def test_tf32_is_off_inside_and_as_it_was_after(before):
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = before
    try:
        with exact_fp32():
            assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (before, before)
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved
