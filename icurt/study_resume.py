"""Resuming an interrupted tuning run: its folder, its recorded input and what changed since."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from icurt.errors import IcurtError

log = logging.getLogger("icurt")


def interrupted_run_folder(store, stage: str, resume_id: str) -> Path:
    """The folder of the interrupted run `resume_id` of `stage` (IcurtError when there is none)."""
    from icurt.runs import FAILED_PREFIX, TMP_PREFIX

    for name in (f"{FAILED_PREFIX}{resume_id}", f"{TMP_PREFIX}{resume_id}"):
        if (store.stage_dir(stage) / name / "run.json").is_file():
            return store.stage_dir(stage) / name
    if (store.stage_dir(stage) / resume_id).is_dir():
        raise IcurtError(f"{stage} run '{resume_id}' already completed; start a new run instead of --resume")
    raise IcurtError(f"no interrupted {stage} run '{resume_id}' to resume under {store.root}; "
                     f"`icurt runs {stage} --all` lists failed runs")


def resumed_run_meta(store, stage: str, resume_id: str) -> dict:
    """run.json of the interrupted run `resume_id` of `stage`."""
    return json.loads((interrupted_run_folder(store, stage, resume_id) / "run.json").read_text())


def changed_settings(started_with: dict[str, Any], now: dict[str, Any], ignore=("num_trials",)) -> list[str]:
    """Settings (`ignore` aside) whose value differs from the one a study started with."""
    return sorted(key for key, value in now.items() if key not in ignore and started_with.get(key) != value)


def settings_changed_since(store, stage: str, resume_id: str, section: str, settings,
                           ignore=("num_trials",)) -> list[str]:
    """The [section] settings that differ from those the interrupted run `resume_id` started with."""
    import dataclasses
    import tomllib

    snapshot = interrupted_run_folder(store, stage, resume_id) / "config.toml"
    started_with = tomllib.loads(snapshot.read_text()).get(section, {}) if snapshot.is_file() else {}
    return changed_settings(started_with, dataclasses.asdict(settings), ignore)


def warn_changed_settings(section: str, changed: list[str]) -> None:
    if changed:
        log.warning("resuming with changed [%s] settings (%s); the earlier trials used the old values",
                    section, ", ".join(changed))


def resumed_input(store, stage: str, input_stage: str, resume_id: str, given=None):
    """The input Run that the interrupted run `resume_id` was started from; `given` must agree."""
    input_id = resumed_run_meta(store, stage, resume_id).get("inputs", {}).get(input_stage)
    if not input_id:
        raise IcurtError(f"{stage} run '{resume_id}' records no {input_stage} input; start a new run")
    if given is not None and given.run_id != input_id:
        raise IcurtError(f"{stage} run '{resume_id}' was started from {input_stage} run {input_id}, not "
                         f"{given.run_id}; drop --from when resuming")
    return store.get(input_stage, input_id)
