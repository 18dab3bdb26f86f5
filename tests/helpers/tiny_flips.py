"""tests/deploy/tiny.toml made strong enough to find adversarial examples, for the tests that read them.

tiny.toml's 2-epoch model and 20-iteration attack flip no sample, and its 2-trial tuning may pick
SGD (which learns nothing in 10 epochs: the model then predicts every stay survived and no death is
attacked). Adam in a learning-rate range that learns in 10 epochs, and a weak-margin Adam attack,
give a model better than chance and dozens of adversarial examples on the 400-stay cohort.
"""

TINY_FLIPS: dict[str, dict] = {
    "train": {"epochs": 10},
    "tune_model": {"optimizers": ["adam"], "learning_rate": [3e-3, 3e-2]},
    "tune_attack": {"epochs_per_batch": 60, "optimizers": ["adam"], "learning_rate": [1e-2, 1e-1],
                    "kappa": [0.0, 0.2]},
    "attack": {"epochs_per_batch": 150},
    "fragility": {"max_num_samples": 64},
}


def _toml(value) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def set_args() -> list[str]:
    """`--set section.key=value` arguments for the CLI."""
    return [arg for section, values in TINY_FLIPS.items() for key, value in values.items()
            for arg in ("--set", f"{section}.{key}={_toml(value)}")]


def overrides() -> dict:
    """keyword overrides for icurt.load_config (section__key=value)."""
    return {f"{section}__{key}": value for section, values in TINY_FLIPS.items() for key, value in values.items()}


def merged(raw: dict) -> dict:
    """a parsed tiny.toml with TINY_FLIPS merged in (a new dict)."""
    out = {section: dict(values) for section, values in raw.items()}
    for section, values in TINY_FLIPS.items():
        out.setdefault(section, {}).update(values)
    return out
