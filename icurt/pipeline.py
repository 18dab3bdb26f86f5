"""All seven stages in order, picking up from the last completed stage when rerun.

A stage's newest completed run is reused when it was built from the run chosen for the stage
before and the config sections that shape it are unchanged; from the first stage that cannot
be reused onward, every stage runs again. `fresh=True` reruns everything.
"""

from __future__ import annotations

import importlib
import logging
import time
import tomllib
from dataclasses import asdict
from typing import Callable

from icurt.config import Config
from icurt.runs import INPUT_STAGE, STAGES, Run, RunStore

log = logging.getLogger("icurt")

STAGE_ENTRY = {
    "query": "icurt.db.query",
    "preprocess": "icurt.preprocess.stage",
    "tune-model": "icurt.model.tune",
    "train": "icurt.model.crossval",
    "tune-attack": "icurt.attack.tune",
    "attack": "icurt.attack.full",
    "analyze": "icurt.analysis.stage",
}
# The config sections whose values shape each stage's output (beyond its input run).
STAGE_SECTIONS = {
    "query": ("query",),
    "preprocess": ("preprocess",),
    "tune-model": ("tune_model",),
    "train": ("train",),
    "tune-attack": ("tune_attack",),
    "attack": ("attack", "tune_attack"),
    "analyze": ("analyze",),
}


def stage_function(stage: str) -> Callable[..., Run]:
    return importlib.import_module(STAGE_ENTRY[stage]).run


def run_stage(stage: str, cfg: Config, input_run: Run | None, store: RunStore) -> Run:
    fn = stage_function(stage)
    if stage == "query":
        return fn(cfg, store=store)
    return fn(cfg, input_run, store=store)


def reusable_run(stage: str, cfg: Config, input_run: Run | None, store: RunStore) -> Run | None:
    """The newest completed run of `stage` built from `input_run` with today's settings, if any."""
    wanted = {section: asdict(getattr(cfg, section)) for section in STAGE_SECTIONS[stage]}
    if stage == "query":
        wanted["db.schema"] = cfg.db.schema
    for run in store.list(stage):
        parent = INPUT_STAGE[stage]
        if parent and (input_run is None or run.inputs.get(parent) != input_run.run_id):
            continue
        snapshot = tomllib.loads(run.file("config.toml").read_text())
        found = {section: snapshot.get(section) for section in STAGE_SECTIONS[stage]}
        if stage == "query":
            found["db.schema"] = snapshot.get("db", {}).get("schema")
        if found == wanted:
            return run
    return None


def run_pipeline(cfg: Config, store: RunStore | None = None, fresh: bool = False,
                 stages: tuple[str, ...] = STAGES) -> dict[str, Run]:
    """Run (or reuse) every stage in `stages`; return the run chosen for each."""
    store = store or RunStore.from_config(cfg)
    chosen: dict[str, Run] = {}
    rerun_from_here = fresh
    for number, stage in enumerate(stages, start=1):
        parent = INPUT_STAGE[stage]
        input_run = chosen.get(parent) if parent else None
        if parent and input_run is None:
            input_run = store.latest(parent)
        previous = None if rerun_from_here else reusable_run(stage, cfg, input_run, store)
        if previous is not None:
            log.info("[%d/%d] %s: reusing run %s (same input and settings)", number, len(stages),
                     stage, previous.run_id)
            chosen[stage] = previous
            continue
        rerun_from_here = True
        log.info("[%d/%d] %s: starting", number, len(stages), stage)
        started = time.perf_counter()
        chosen[stage] = run_stage(stage, cfg, input_run, store)
        log.info("[%d/%d] %s: run %s done in %.1f s", number, len(stages), stage,
                 chosen[stage].run_id, time.perf_counter() - started)
    return chosen
