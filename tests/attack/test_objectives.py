"""Objective scores against values worked out by hand on hand-built perturbations."""

import numpy as np
import pytest

from icurt.attack.objectives import objective_score, per_sample_scores, perturbation_sizes
from icurt.errors import IcurtError

# Two samples of 2 hours × 3 features (6 elements each).
P = np.array([
    [[0.5, 0.0, 0.0], [0.0, -0.25, 0.0]],   # 2 non-zero, L1 0.75, max 0.5, sparsity 4/6
    [[0.0, 0.0, 0.0], [0.0, 0.0, 0.1]],     # 1 non-zero, L1 0.1,  max 0.1, sparsity 5/6
], dtype=np.float32)


def test_sizes():
    n_nonzero, l1, maxabs = perturbation_sizes(P)
    np.testing.assert_array_equal(n_nonzero, [2, 1])
    np.testing.assert_allclose(l1, [0.75, 0.1], rtol=1e-6)
    np.testing.assert_allclose(maxabs, [0.5, 0.1], rtol=1e-6)


@pytest.mark.parametrize("name, n_critical, per_sample", [
    ("sparsity", 10, [4 / 6, 5 / 6]),
    ("max_num_nonzero_perts", 2, [0.0, 1.0]),      # 2 is not below 2; 1 is
    ("max_num_nonzero_perts", 3, [1.0, 1.0]),
    ("sparse_small", 10, [(4 / 6) / 0.75, (5 / 6) / 0.1]),
    ("sparse_small_max", 10, [(4 / 6) / 0.5, (5 / 6) / 0.1]),
])
def test_scores_match_hand_values(name, n_critical, per_sample):
    np.testing.assert_allclose(per_sample_scores(name, P, n_critical), per_sample, rtol=1e-6)
    assert objective_score(name, P, n_critical) == pytest.approx(sum(per_sample), rel=1e-6)


def test_edge_cases():
    assert objective_score("sparse_small", np.zeros((0, 2, 3)), 10) == 0.0
    assert objective_score("sparse_small", np.zeros((1, 2, 3)), 10) == 0.0  # no P, no ratio
    assert objective_score("sparsity", np.zeros((1, 2, 3)), 10) == 1.0
    with pytest.raises(IcurtError):
        objective_score("l0", P, 10)


@pytest.mark.parametrize("max_perts", [0, 1, 2])
def test_the_references_max_perts_cut_off_is_n_critical_one_above(max_perts):
    # the reference's max_num_nonzero_perts counts examples with n_nonzero ≤ max_perts (P: 2 and 1 non-zero)
    by_hand = [float(2 <= max_perts), float(1 <= max_perts)]
    np.testing.assert_array_equal(per_sample_scores("max_num_nonzero_perts", P, max_perts + 1), by_hand)
