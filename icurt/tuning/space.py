"""Search spaces as Optuna distributions, and trial parameters decoded into hyperparameters."""

from __future__ import annotations

from typing import Any, Sequence

LOG2_PREFIX = "log2_"  # an Optuna parameter "log2_x" = k stands for the hyperparameter x = 2**k


def exponent_range(exponents: Sequence[int]):
    """Integer k in [low, high] for a hyperparameter 2**k (name its key with LOG2_PREFIX)."""
    from optuna.distributions import IntDistribution

    return IntDistribution(int(exponents[0]), int(exponents[1]))


def uniform(bounds: Sequence[float], log: bool = False):
    from optuna.distributions import FloatDistribution

    return FloatDistribution(float(bounds[0]), float(bounds[1]), log=log)


def choice(options: Sequence[str]):
    from optuna.distributions import CategoricalDistribution

    return CategoricalDistribution(tuple(options))


def decode_params(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna parameters as hyperparameters: "log2_x": k becomes "x": 2**k."""
    decoded = {}
    for key, value in params.items():
        if key.startswith(LOG2_PREFIX):
            decoded[key[len(LOG2_PREFIX):]] = 2 ** int(value)
        else:
            decoded[key] = value
    return decoded


def hparam_names(space: dict[str, Any]) -> list[str]:
    return list(decode_params({key: 0 for key in space}))
