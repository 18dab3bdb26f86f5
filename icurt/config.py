"""Typed configuration: defaults from configs/default.toml, a user file on top, `--set` last.

Every setting is declared once, with its type and bounds, in icurt/config_sections.py; its default
value lives in configs/default.toml, so the defaults are visible in one place. Validation happens once, at
load time, and every problem is an IcurtError naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icurt.config_sections import (
    AnalyzeConfig, AttackConfig, AttackMethod, DbConfig, FragilityConfig, ModelConfig, PathsConfig,
    PreprocessConfig, ProfileConfig, QueryConfig, RayConfig, SynthConfig, TrainConfig, TuneAttackConfig,
    TuneModelConfig,
)
from icurt.config_toml import (
    apply_override, build_section, dict_to_toml, merge, outside_any_section, read_toml, set_value,
)
from icurt.errors import IcurtError
from icurt.shipped import shipped_path


@dataclass(frozen=True)
class Config:
    profile: ProfileConfig
    paths: PathsConfig
    db: DbConfig
    ray: RayConfig
    synth: SynthConfig
    query: QueryConfig
    preprocess: PreprocessConfig
    model: ModelConfig
    tune_model: TuneModelConfig
    train: TrainConfig
    tune_attack: TuneAttackConfig
    attack_method: AttackMethod
    attack: AttackConfig
    fragility: FragilityConfig
    analyze: AnalyzeConfig

    def with_(self, values: dict[str, Any] | None = None, /, **overrides: Any) -> "Config":
        """A validated copy with settings changed, given as Python values: keywords
        `section__key=value` (`fragility__clinical_step__heartrate=5` sets one entry of a table
        setting) and/or a dict `{"section.key": value}`. IcurtError for an unknown key or a value
        outside the setting's type or bounds."""
        return with_values(self, {**(values or {}), **{k.replace("__", "."): v for k, v in overrides.items()}})


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
    raw = read_toml(default_config_path())
    if path is not None:
        layered = read_toml(Path(path))
        merge(raw, layered, origin=str(path))
        if "name" not in layered.get("profile", {}):   # a file that does not name itself: its file name
            raw["profile"]["name"] = Path(path).stem
    env = os.environ if env is None else env
    for var, (section, key) in ENV_OVERRIDES.items():
        if env.get(var):
            raw[section][key] = env[var]
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)


# Sections that say where and how a run executes, not what it computes.
PLACE_SECTIONS = ("paths", "db", "ray", "profile")


def profile_changes(cfg: Config, reads: tuple[str, ...] | None = None) -> list[str] | None:
    """The settings in which `cfg` departs from the shipped profile it is named after (defaults, then
    configs/<name>.toml), as sorted `section.key=value` strings (values as JSON; a table's entries as
    `section.key.entry=value`), the sections in PLACE_SECTIONS aside, and with `reads` (a stage's
    sections or `section.key`s) only those it reads; [] when it is that profile exactly; None when
    no shipped profile has its name (a user's own file)."""
    name = cfg.profile.name
    path = None if name == "default" else named_config_path(name)
    if path is not None and not path.exists():
        return None
    shipped = config_to_dict(load_config(path, env={}), redact=False)
    ours = config_to_dict(cfg, redact=False)
    changes = sorted(change for section in ours if section not in PLACE_SECTIONS
                     for change in _changes(section, ours[section], shipped[section]))
    if reads is None:
        return changes
    return [change for change in changes if any(change.startswith((f"{item}.", f"{item}=")) for item in reads)]


def _changes(prefix: str, ours: Any, shipped: Any) -> list[str]:
    if isinstance(ours, dict) and isinstance(shipped, dict):
        return [change for key in sorted(set(ours) | set(shipped))
                for change in _changes(f"{prefix}.{key}", ours.get(key), shipped.get(key))]
    return [] if ours == shipped else [f"{prefix}={json.dumps(ours)}"]


def config_from_dict(raw: dict[str, Any]) -> Config:
    """Build and validate a Config from a complete nested dict (as in default.toml)."""
    sections = {}
    hints = typing.get_type_hints(Config)
    for name, section_type in hints.items():
        if name not in raw:
            raise IcurtError(f"config section [{name}] is missing; copy it from configs/default.toml")
        sections[name] = build_section(name, section_type, raw[name])
    unknown = set(raw) - set(hints)
    for key in sorted(unknown):
        if not isinstance(raw[key], dict):
            raise IcurtError(outside_any_section(key, raw))
    if unknown:
        raise IcurtError(f"unknown config section [{sorted(unknown)[0]}]; "
                         f"known sections: {', '.join(hints)}")
    return Config(**sections)


def section_from_dict(name: str, values: dict[str, Any]):
    """One section (e.g. an [attack_method] a run recorded) from a dict, validated like a config file."""
    hints = typing.get_type_hints(Config)
    if name not in hints:
        raise IcurtError(f"unknown config section [{name}]; known sections: {', '.join(hints)}")
    return build_section(name, hints[name], values)


def config_to_dict(cfg: Config, redact: bool = True) -> dict[str, Any]:
    out = dataclasses.asdict(cfg)
    if redact:
        from icurt.dsn import redact_dsn
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


def with_values(cfg: Config, values: dict[str, Any]) -> Config:
    """A copy of cfg with `{"section.key": value}` (Python values) applied and validated."""
    raw = config_to_dict(cfg, redact=False)
    for key, value in values.items():
        set_value(raw, key, value)
    return config_from_dict(raw)


def with_overrides(cfg: Config, overrides: list[str]) -> Config:
    """A copy of cfg with `section.key=value` overrides applied and validated."""
    raw = config_to_dict(cfg, redact=False)
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw)
