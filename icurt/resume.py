"""Which input run a stage reads, and resuming an interrupted run of a stage.

`input_run` is the one way a stage picks its input: the run given (`--from`), else the newest
completed run of its input stage, or, when resuming, the input the interrupted run started from.
What a stage's settings are is the stage table's `reads`; a resumed run finishes with the settings
it started with (a tuning study's num_trials aside: that one may grow), and a warning names those
of today's that differ.
"""

from __future__ import annotations

import logging
from typing import Any

from icurt.errors import IcurtError
from icurt.files import read_toml
from icurt.stage_table import config_values, settings_read, stage as stage_row

log = logging.getLogger("icurt")


def changed_settings(started_with: dict[str, Any], now: dict[str, Any], ignore=("num_trials",)) -> list[str]:
    """Settings (`ignore` aside) whose value differs from the one a run started with."""
    return sorted(key for key, value in now.items() if key not in ignore and started_with.get(key) != value)


def flat_settings(cfg_values: dict[str, Any], stage: str) -> dict[str, Any]:
    """The stage's settings as {"section.key": value}."""
    flat = {}
    for item, value in settings_read(cfg_values, stage_row(stage)).items():
        if isinstance(value, dict):
            flat.update({f"{item}.{key}": v for key, v in value.items()})
        else:
            flat[item] = value
    return flat


def _started_with(store, stage: str, resume_id: str) -> dict[str, Any]:
    snapshot = store.interrupted_folder(stage, resume_id) / "config.toml"
    return read_toml(snapshot) if snapshot.is_file() else {}


def settings_changed_since(store, stage: str, resume_id: str, cfg, ignore=()) -> list[str]:
    """The settings of `stage` that differ from those the interrupted run `resume_id` started with."""
    return changed_settings(flat_settings(_started_with(store, stage, resume_id), stage),
                            flat_settings(config_values(cfg), stage), ignore)


def settings_at_start(store, stage: str, resume_id: str, cfg, keep: tuple[str, ...] = ()):
    """`cfg` with the settings of `stage` (its row's `reads`) the interrupted run `resume_id` started
    with, so that what it finishes matches what it finished; a one-line warning names those that
    differ from today's. The `section.key` settings in `keep` (e.g. a study's num_trials) stay
    today's. IcurtError when the run recorded no config."""
    from dataclasses import replace

    from icurt.config import section_from_dict

    started = _started_with(store, stage, resume_id)
    if not started:
        raise IcurtError(f"{stage} run '{resume_id}' kept no config.toml; start a new run instead of --resume")
    today = config_values(cfg)
    changed = changed_settings(flat_settings(started, stage), flat_settings(today, stage), keep)
    if changed:
        log.warning("resuming %s run %s with the settings it started with; today's differ in %s", stage,
                    resume_id, ", ".join(changed))
    for item in stage_row(stage).reads:
        section, _, key = item.partition(".")
        values = started.get(section, {})
        if key:   # a setting the run did not record (it predates the setting) stays today's
            values = {**today[section], key: values.get(key, today[section][key])}
        kept = (k.partition(".") for k in keep)
        values = {**values, **{name: today[section][name] for sec, _, name in kept if sec == section}}
        cfg = replace(cfg, **{section: section_from_dict(section, values)})
    if "profile" in started:   # the run keeps the profile it was started under
        cfg = replace(cfg, profile=section_from_dict("profile", started["profile"]))
    return cfg


def resumed_input(store, stage: str, resume_id: str, given=None):
    """The input Run that the interrupted run `resume_id` was started from; `given` must agree."""
    input_stage = stage_row(stage).input
    input_id = store.interrupted_meta(stage, resume_id).get("inputs", {}).get(input_stage)
    if not input_id:
        raise IcurtError(f"{stage} run '{resume_id}' records no {input_stage} input; start a new run")
    if given is not None and given.run_id != input_id:
        raise IcurtError(f"{stage} run '{resume_id}' was started from {input_stage} run {input_id}, not "
                         f"{given.run_id}; drop --from when resuming")
    return store.get(input_stage, input_id)


def input_run(store, stage: str, given=None, resume: str | None = None):
    """The run `stage` reads: the resumed run's own input, else `given`, else the newest one."""
    if resume:
        return resumed_input(store, stage, resume, given)
    return given if given is not None else store.latest(stage_row(stage).input)
