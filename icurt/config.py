"""Typed configuration: defaults from configs/default.toml, a user file on top, `--set` last.

Every setting is declared once here with its type and bounds; its default value lives in
configs/default.toml, so the defaults are visible in one place. Validation happens once, at
load time, and every problem is an IcurtError naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icurt.errors import IcurtError
from icurt.shipped import shipped_path

FEATURE_COLUMNS = (
    "potassium", "calcium", "ph", "pco2", "lactate",
    "albumin", "bun", "creatinine", "sodium", "bicarbonate", "platelet", "glucose", "magnesium",
    "heartrate", "sysbp", "diasbp", "tempc", "resprate", "spo2",
)
OPTIMIZERS = ("sgd", "rmsprop", "adam")
ACTIVATIONS = ("relu", "tanh")
ATTACK_OBJECTIVES = ("sparsity", "max_num_nonzero_perts", "sparse_small", "sparse_small_max")


def setting(*, min: float | None = None, max: float | None = None, choices=None,
            ascending_pair: bool = False, positive: bool = False):
    """A config field with the bounds the loader checks (`choices` applies to each list item)."""
    return field(metadata={"min": min, "max": max, "choices": choices,
                           "ascending_pair": ascending_pair, "positive": positive})


@dataclass(frozen=True)
class PathsConfig:
    data: str = setting()


@dataclass(frozen=True)
class DbConfig:
    dsn: str = setting()
    optuna_dsn: str = setting()
    schema: str = setting()
    embedded_port: int = setting(min=0, max=65535)
    connect_timeout_s: int = setting(min=1, max=600)


@dataclass(frozen=True)
class RayConfig:
    address: str = setting()
    num_cpus: int = setting(min=0)
    num_gpus: int = setting(min=-1)
    device: str = setting(choices=("auto", "cpu", "cuda"))
    include_dashboard: bool = setting()
    dashboard_host: str = setting()
    dashboard_port: int = setting(min=1, max=65535)
    worker_logs: bool = setting()


@dataclass(frozen=True)
class SynthConfig:
    stays: int = setting(min=1, max=1_000_000)
    seed: int = setting(min=0)
    mortality_rate: float = setting(min=0.01, max=0.5)


@dataclass(frozen=True)
class QueryConfig:
    fetch_size: int = setting(min=100)
    csv: bool = setting()


@dataclass(frozen=True)
class PreprocessConfig:
    engine: str = setting(choices=("modin", "pandas"))
    features: list[str] = setting(choices=FEATURE_COLUMNS)
    min_age: float = setting(min=0, max=150)
    age_cap: float = setting(min=0, max=150)
    min_los_hospital: float = setting(min=0)
    min_los_icu: float = setting(min=0)
    winsorize_percentiles: list[float] = setting(min=0, max=100, ascending_pair=True)
    observation_window_start: str = setting(choices=("intime", "admittime"))
    observation_window_hours: int = setting(min=1, max=24 * 30)
    min_observation_hours: int = setting(min=1, max=24 * 30)
    num_partitions: int = setting(min=0)


@dataclass(frozen=True)
class TuningDriverConfig:
    """What tune-model and tune-attack share: trial budget, TPE start-up, ASHA, resources, seed."""
    num_trials: int = setting(min=1)
    optuna_startup_trials: int = setting(min=0)
    asha_grace_period: int = setting(min=1)
    asha_reduction_factor: int = setting(min=2)
    max_concurrent_trials: int = setting(min=0)
    cpus_per_trial: float = setting(min=0.01)
    gpus_per_trial: float = setting(min=0, max=8)
    seed: int = setting(min=0)


@dataclass(frozen=True)
class TuneModelConfig(TuningDriverConfig):
    num_folds: int = setting(min=2, max=20)
    fold_seed: int = setting(min=0)
    cv_epochs: int = setting(min=1)
    epochs_per_cv_epoch: int = setting(min=1)
    batch_size_exponents: list[int] = setting(min=0, max=16, ascending_pair=True)
    lstm_hidden_exponents: list[int] = setting(min=0, max=12, ascending_pair=True)
    lstm_activations: list[str] = setting(choices=ACTIVATIONS)
    dropout: list[float] = setting(min=0, max=0.99, ascending_pair=True)
    fc_size_exponents: list[int] = setting(min=0, max=12, ascending_pair=True)
    fc_activations: list[str] = setting(choices=ACTIVATIONS)
    optimizers: list[str] = setting(choices=OPTIMIZERS)
    learning_rate: list[float] = setting(min=1e-12, max=10, ascending_pair=True)


@dataclass(frozen=True)
class TrainConfig:
    num_folds: int = setting(min=2, max=20)
    fold_seed: int = setting(min=0)
    epochs: int = setting(min=1)
    eval_interval: int = setting(min=1)
    num_workers: int = setting(min=1)
    cpus_per_worker: float = setting(min=0.01)
    gpus_per_worker: float = setting(min=0, max=8)
    seed: int = setting(min=0)


@dataclass(frozen=True)
class TuneAttackConfig(TuningDriverConfig):
    fold: int = setting(min=0)
    epochs_per_batch: int = setting(min=1)
    report_interval: int = setting(min=1)
    max_num_samples: int = setting(min=1)
    sample_selection_seed: int = setting(min=0)
    objective: str = setting(choices=ATTACK_OBJECTIVES)
    n_critical: int = setting(min=1)
    max_perts: int = setting(min=0)
    attack_misclassified_samples: bool = setting()
    kappa: list[float] = setting(min=0, ascending_pair=True)
    lambda_1: list[float] = setting(min=1e-12, ascending_pair=True)
    learning_rate: list[float] = setting(min=1e-12, max=10, ascending_pair=True)
    batch_size_exponents: list[int] = setting(min=0, max=16, ascending_pair=True)
    optimizers: list[str] = setting(choices=OPTIMIZERS)


@dataclass(frozen=True)
class AttackConfig:
    epochs_per_batch: int = setting(min=1)
    max_num_samples: int = setting(min=1)
    seed: int = setting(min=0)
    batch_size: int = setting(min=0)
    num_actors: int = setting(min=0)
    cpus_per_actor: float = setting(min=0.01)
    gpus_per_actor: float = setting(min=0, max=8)
    max_batch_retries: int = setting(min=0)
    lambda_decay: float = setting(min=1e-6, max=1.0)
    lambda_decay_every: int = setting(min=1)
    early_stop_patience: int = setting(min=0)

    def method_settings(self) -> dict:
        """The attack's own settings that tuning does not search: tune-attack trials use them too,
        so they score the attack that `icurt attack` runs."""
        return {"lambda_decay": self.lambda_decay, "lambda_decay_every": self.lambda_decay_every,
                "early_stop_patience": self.early_stop_patience}


@dataclass(frozen=True)
class AnalyzeConfig:
    top_features: int = setting(min=1, max=19)


@dataclass(frozen=True)
class Config:
    paths: PathsConfig
    db: DbConfig
    ray: RayConfig
    synth: SynthConfig
    query: QueryConfig
    preprocess: PreprocessConfig
    tune_model: TuneModelConfig
    train: TrainConfig
    tune_attack: TuneAttackConfig
    attack: AttackConfig
    analyze: AnalyzeConfig


ENV_OVERRIDES = {"ICURT_DATA": ("paths", "data"), "ICURT_DSN": ("db", "dsn"),
                 "ICURT_OPTUNA_DSN": ("db", "optuna_dsn")}


def default_config_path() -> Path:
    return shipped_path("icurt.configs", "default.toml")


def named_config_path(name: str) -> Path:
    """configs/<name>.toml shipped with icurt (e.g. 'demo')."""
    return shipped_path("icurt.configs", f"{name}.toml")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                env: dict[str, str] | None = None) -> Config:
    """Defaults, then the TOML file at `path`, then environment, then `section.key=value` overrides."""
    raw = _read_toml(default_config_path())
    if path is not None:
        _merge(raw, _read_toml(Path(path)), origin=str(path))
    env = os.environ if env is None else env
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            raw[section][key] = env[var]
    for item in overrides:
        _apply_override(raw, item)
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config from a complete nested dict (as in default.toml)."""
    sections = {}
    hints = typing.get_type_hints(Config)
    for name, section_type in hints.items():
        if name not in raw:
            raise IcurtError(f"config section [{name}] is missing; copy it from configs/default.toml")
        sections[name] = _build_section(name, section_type, raw[name])
    unknown = set(raw) - set(hints)
    if unknown:
        raise IcurtError(f"unknown config section [{sorted(unknown)[0]}]; "
                         f"known sections: {', '.join(hints)}")
    return Config(**sections)


def config_to_dict(cfg: Config, redact: bool = True) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    if redact:
        from icurt.db.dsn import redact_dsn
        out["db"]["dsn"] = redact_dsn(out["db"]["dsn"])
        out["db"]["optuna_dsn"] = redact_dsn(out["db"]["optuna_dsn"])
    return out


def config_to_toml(cfg: Config, redact: bool = True) -> str:
    """The effective config as TOML; the DSN password is redacted unless asked otherwise."""
    return dict_to_toml(config_to_dict(cfg, redact=redact))


def config_value(cfg: Config, key: str) -> Any:
    """The value at 'section' or 'section.key'; unknown keys are an IcurtError."""
    data = config_to_dict(cfg)
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise IcurtError(f"unknown config key '{key}'; see `icurt config show` for all keys")
        node = node[part]
    return node


def with_overrides(cfg: Config, overrides: list[str]) -> Config:
    """A copy of cfg with `section.key=value` overrides applied and validated."""
    raw = config_to_dict(cfg, redact=False)
    for item in overrides:
        _apply_override(raw, item)
    return config_from_dict(raw)


def dict_to_toml(data: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise IcurtError(f"config file {path} does not exist; pass an existing TOML file to --config")
    except tomllib.TOMLDecodeError as exc:
        raise IcurtError(f"config file {path} is not valid TOML ({exc}); fix the syntax")


def _merge(base: dict[str, Any], update: dict[str, Any], origin: str) -> None:
    for section, values in update.items():
        if section not in base:
            raise IcurtError(f"unknown config section [{section}] in {origin}; "
                             f"known sections: {', '.join(base)}")
        if not isinstance(values, dict):
            raise IcurtError(f"config key '{section}' in {origin} must be a [section] table")
        for key, value in values.items():
            if key not in base[section]:
                raise IcurtError(f"unknown config key '{section}.{key}' in {origin}; "
                                 "see `icurt config show` for all keys")
            base[section][key] = value


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    key = key.strip()
    section, dot, name = key.partition(".")
    if not sep or not dot:
        raise IcurtError(f"override '{item}' must look like section.key=value, e.g. train.epochs=20")
    if section not in raw or name not in raw[section]:
        raise IcurtError(f"unknown config key '{key}'; see `icurt config show` for all keys")
    raw[section][name] = _parse_override_value(text.strip())


def _parse_override_value(text: str) -> Any:
    """TOML syntax when it parses (numbers, booleans, lists), the bare text otherwise."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _build_section(name: str, section_type: type, values: Any):
    if not isinstance(values, dict):
        raise IcurtError(f"config key '{name}' must be a [section] table")
    kwargs = {}
    for f in dataclasses.fields(section_type):
        key = f"{name}.{f.name}"
        if f.name not in values:
            raise IcurtError(f"config key '{key}' is missing; copy it from configs/default.toml")
        hint = typing.get_type_hints(section_type)[f.name]
        value = _coerce(key, hint, values[f.name])
        _check_bounds(key, value, f.metadata)
        kwargs[f.name] = value
    unknown = set(values) - {f.name for f in dataclasses.fields(section_type)}
    if unknown:
        raise IcurtError(f"unknown config key '{name}.{sorted(unknown)[0]}'; "
                         "see `icurt config show` for all keys")
    return section_type(**kwargs)


def _coerce(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise IcurtError(f"config key '{key}' must be a list of {item_type.__name__}, "
                             f"got {value!r}")
        if not value:
            raise IcurtError(f"config key '{key}' must not be empty")
        return [_coerce(key, item_type, v) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise IcurtError(f"config key '{key}' must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise IcurtError(f"config key '{key}' must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise IcurtError(f"config key '{key}' must be a finite number, got {value!r}")
            return float(value)
        raise IcurtError(f"config key '{key}' must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise IcurtError(f"config key '{key}' must be a string, got {value!r}")
    raise TypeError(f"unsupported config type {hint} for {key}")


def _check_bounds(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    items = value if isinstance(value, list) else [value]
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    for item in items:
        if choices is not None and item not in choices:
            raise IcurtError(f"config key '{key}' has {item!r}; choose from {', '.join(choices)}")
        if lo is not None and item < lo:
            raise IcurtError(f"config key '{key}' is {item!r}, below its minimum {lo}")
        if hi is not None and item > hi:
            raise IcurtError(f"config key '{key}' is {item!r}, above its maximum {hi}")
    if meta.get("ascending_pair"):
        if len(items) != 2:
            raise IcurtError(f"config key '{key}' must be a [low, high] pair, got {value!r}")
        if items[0] > items[1]:
            raise IcurtError(f"config key '{key}' is inverted ({items[0]} > {items[1]}); "
                             "write it as [low, high]")
    if isinstance(value, list) and choices is not None and len(set(items)) != len(items):
        raise IcurtError(f"config key '{key}' lists a value twice: {value!r}")
