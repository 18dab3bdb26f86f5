"""The config's file format and validation: TOML in and out, layering, `--set` overrides, and
checking each value against its section's type and bounds (icurt/config_sections.py declares them)."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing
from pathlib import Path
from typing import Any

from icurt.errors import IcurtError


def dict_to_toml(data: dict[str, Any]) -> str:
    """Sections as TOML tables; a setting that is itself a table becomes a [section.key] sub-table."""
    lines: list[str] = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        tables = {key: value for key, value in values.items() if isinstance(value, dict)}
        for key, value in values.items():
            if key not in tables:
                lines.append(f"{key} = {toml_value(value)}")
        lines.append("")
        for key, table in tables.items():
            lines += [f"[{section}.{key}]", *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""]
    return "\n".join(lines)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise IcurtError(f"config file {path} does not exist; pass an existing TOML file to --config")
    except IsADirectoryError:
        raise IcurtError(f"config file {path} is a folder; pass a TOML file to --config") from None
    except PermissionError:
        raise IcurtError(f"config file {path} cannot be read (no permission); pass a TOML file you can read "
                         "to --config") from None
    except UnicodeDecodeError:
        raise IcurtError(f"config file {path} is not UTF-8 text; pass a TOML file to --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise IcurtError(f"config file {path} is not valid TOML ({exc}); fix the syntax")


def outside_any_section(key: str, base: dict[str, Any], origin: str = "") -> str:
    """The message for a setting written before any [section] header (TOML puts it at the top level)."""
    homes = [f"[{section}]" for section, values in base.items() if isinstance(values, dict) and key in values]
    where = f" ({key} is a key of {', '.join(homes)})" if homes else ""
    return (f"config key '{key}'{f' in {origin}' if origin else ''} is outside any section{where}; put it "
            "under its [section] (see configs/default.toml)")


def merge(base: dict[str, Any], update: dict[str, Any], origin: str) -> None:
    for section, values in update.items():
        if section not in base and not isinstance(values, dict):
            raise IcurtError(outside_any_section(section, base, origin))
        if section not in base:
            raise IcurtError(f"unknown config section [{section}] in {origin}; "
                             f"known sections: {', '.join(base)}")
        if not isinstance(values, dict):
            raise IcurtError(f"config key '{section}' in {origin} must be a [section] table")
        for key, value in values.items():
            if key not in base[section]:
                raise IcurtError(f"unknown config key '{section}.{key}' in {origin}; "
                                 "see `icurt config show` for all keys")
            if isinstance(base[section][key], dict) and isinstance(value, dict):
                base[section][key] = {**base[section][key], **value}   # a table setting: key by key
            else:
                base[section][key] = value


def apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or "." not in key:
        raise IcurtError(f"override '{item}' must look like section.key=value, e.g. train.epochs=20")
    set_value(raw, key.strip(), parse_override_value(text.strip()))


def set_value(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `section.key` (or `section.table.entry`: one entry of a table setting) in a nested config
    dict to `value`, unchecked (config_from_dict checks it); IcurtError for an unknown key."""
    section, _, name = key.partition(".")
    name, _, entry = name.partition(".")
    if section not in raw or name not in raw[section] or (entry and not isinstance(raw[section][name], dict)):
        raise IcurtError(f"unknown config key '{key}'; see `icurt config show` for all keys")
    if entry:
        raw[section][name] = {**raw[section][name], entry: value}
    else:
        raw[section][name] = value


def parse_override_value(text: str) -> Any:
    """TOML syntax when it parses (numbers, booleans, lists), the bare text otherwise."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def build_section(name: str, section_type: type, values: Any):
    if not isinstance(values, dict):
        raise IcurtError(f"config key '{name}' must be a [section] table")
    kwargs = {}
    for f in dataclasses.fields(section_type):
        key = f"{name}.{f.name}"
        if f.name not in values:
            raise IcurtError(f"config key '{key}' is missing; copy it from configs/default.toml")
        hint = typing.get_type_hints(section_type)[f.name]
        value = coerce(key, hint, values[f.name])
        check_bounds(key, value, f.metadata)
        kwargs[f.name] = value
    unknown = set(values) - {f.name for f in dataclasses.fields(section_type)}
    if unknown:
        raise IcurtError(f"unknown config key '{name}.{sorted(unknown)[0]}'; "
                         "see `icurt config show` for all keys")
    return section_type(**kwargs)


def coerce(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is dict:
        _, item_type = typing.get_args(hint)
        if not isinstance(value, dict) or not value:
            raise IcurtError(f"config key '{key}' must be a non-empty table of name = {item_type.__name__}, "
                             f"got {value!r}")
        return {str(name): coerce(f"{key}.{name}", item_type, v) for name, v in value.items()}
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise IcurtError(f"config key '{key}' must be a list of {item_type.__name__}, "
                             f"got {value!r}")
        if not value:
            raise IcurtError(f"config key '{key}' must not be empty")
        return [coerce(key, item_type, v) for v in value]
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


def check_bounds(key: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    """Bounds of a value, each list item or each table entry; a table's `choices` are its names."""
    lo, hi, choices = meta.get("min"), meta.get("max"), meta.get("choices")
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(choices or value))
        if unknown:
            raise IcurtError(f"config key '{key}' has no entry '{unknown[0]}'; entries are {', '.join(choices)}")
        for name, entry in value.items():
            check_bounds(f"{key}.{name}", entry, {"min": lo, "max": hi})
        return
    items = value if isinstance(value, list) else [value]
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
