"""The stages: one thin orchestrator per stage (query.py … analyze.py) and, here, the stage table
they are run by (it lives in icurt/stage_table.py, below the run store; its names are imported from
here too) and run_stage(), which runs one stage as the CLI does."""

from __future__ import annotations

from icurt.runs import RunStore
from icurt.stage_table import (  # noqa: F401
    INPUT_STAGE, RESUME, STAGE_NAMES, STAGES, TRIAL, TUNING, Option, Stage, config_values, extend_option,
    settings_read, stage,
)


def run_stage(name: str, cfg, input_run=None, *, store=None, **options):
    """Run stage `name` as `icurt <name>` does; `store` defaults to the config's data root."""
    return stage(name).function("run")(cfg, input_run, store=store or RunStore.from_config(cfg), **options)
