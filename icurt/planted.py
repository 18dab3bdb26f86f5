"""Small datasets with a planted mortality signal, already in the preprocess stage's shape: for
tests and benchmarks, where the answer must be known (the synthetic MIMIC-III cohort of
`icurt db synth` is the database-level counterpart).

Each sample has a latent severity s ~ N(0, 1); it dies with the oracle probability
p = sigmoid(a + strength · s), a set so that the mean of p is `death_rate`; its features are
0.5 + noise, and s drifts the first `signal_features` of them by `drift · s` over the window (from
0 at hour 0 to the full drift at the last hour), clipped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit

from icurt.dataset import Dataset


@dataclass(frozen=True)
class Planted:
    dataset: Dataset        # features (n, hours, features) float32 in [0, 1], labels, stay ids
    p_died: np.ndarray      # (n,) the oracle probability of death
    severity: np.ndarray    # (n,) the latent s


def planted_dataset(n: int, *, hours: int = 48, features: int = 19, seed: int = 0, death_rate: float = 0.25,
                    strength: float = 3.0, drift: float = 0.15, noise: float = 0.05,
                    signal_features: int = 3) -> Planted:
    """`n` samples of `hours` × `features` scaled values with the planted signal above."""
    rng = np.random.default_rng(seed)
    severity = rng.standard_normal(n)
    intercept = brentq(lambda a: expit(a + strength * severity).mean() - death_rate, -50.0, 50.0)
    p_died = expit(intercept + strength * severity)
    labels = (rng.random(n) < p_died).astype(np.int64)
    x = 0.5 + noise * rng.standard_normal((n, hours, features))
    x[:, :, :signal_features] += drift * severity[:, None, None] * np.linspace(0, 1, hours)[None, :, None]
    dataset = Dataset(np.clip(x, 0, 1).astype(np.float32), labels, np.arange(n, dtype=np.int64) + 1000,
                      [f"f{j}" for j in range(features)], {})
    return Planted(dataset, p_died, severity)
