"""`icurt run`: every stage of the table in order, picking up from the last one that can be reused.

A stage's newest completed run is reused when it was built from the run chosen for the stage
before and the settings it reads (its `reads` in the stage table) are unchanged, and, for a stage
that reads a source outside the run store (query: the database), while that source's fingerprint
is the one the run recorded; from the first stage that cannot be reused onward, every stage runs
again. `fresh=True` reruns everything.
"""

from __future__ import annotations

import logging
import time

from icurt.config import Config
from icurt.errors import IcurtError
from icurt.files import read_toml
from icurt.runs import Run, RunStore
from icurt.stage_table import STAGES, Stage, config_values, settings_read

log = logging.getLogger("icurt")


def reusable_run(row: Stage, cfg: Config, input_run: Run | None, store: RunStore) -> Run | None:
    """The newest completed run of `row` built from `input_run` with today's settings (and, for a
    row with a source, today's source fingerprint), if any; says why when the source changed."""
    wanted = settings_read(config_values(cfg), row)
    candidates = [run for run in store.list(row.name) if _built_like(run, row, input_run, wanted)]
    if not row.source or not candidates:
        return candidates[0] if candidates else None
    source = row.function("source_fingerprint")(cfg)
    for run in candidates:
        if source is not None and run.meta.get("source") == source:
            return run
    newest = candidates[0]
    if "source" not in newest.meta:
        log.info("%s: run %s recorded no fingerprint of the %s (an older icurt made it); running %s again",
                 row.name, newest.run_id, row.source, row.name)
    else:
        log.info("%s: the %s changed since run %s (now %s); running %s again", row.name, row.source,
                 newest.run_id, row.function("describe_source")(source), row.name)
    return None


def _built_like(run: Run, row: Stage, input_run: Run | None, wanted: dict) -> bool:
    """Whether `run` was built from `input_run` with the settings `wanted` (a run whose config.toml
    is missing or damaged is not reused)."""
    if row.input and (input_run is None or run.inputs.get(row.input) != input_run.run_id):
        return False
    try:
        return settings_read(read_toml(run.file("config.toml")), row) == wanted
    except (OSError, IcurtError) as exc:
        log.warning("%s: run %s is not reused: %s", row.name, run.run_id, exc)
        return False


def reuse_plan(cfg: Config, store: RunStore, fresh: bool = False,
               stages: tuple[Stage, ...] = STAGES) -> dict[str, Run | None]:
    """Per stage, the run `icurt run` would reuse, or None where it would run the stage (and so
    every stage after it)."""
    plan: dict[str, Run | None] = {}
    input_run = _first_input(stages[0], store)
    for row in stages:
        plan[row.name] = input_run = None if fresh else reusable_run(row, cfg, input_run, store)
        fresh = fresh or input_run is None
    return plan


def _first_input(row: Stage, store: RunStore) -> Run | None:
    """The input of the first stage run: the newest run of its input stage (none for query)."""
    return store.latest(row.input) if row.input else None


def run_pipeline(cfg: Config, store: RunStore | None = None, fresh: bool = False,
                 stages: tuple[Stage, ...] = STAGES, go_on: bool = True,
                 how_to_go_on: str = "icurt run --go-on") -> dict[str, Run]:
    """Run (or reuse) every stage in `stages`; return the run chosen for each. With `go_on` False
    it stops after a tune-model run whose best trial learned nothing (IcurtError naming
    `how_to_go_on`), before train and the attack spend hours on that model; with True it warns."""
    store = store or RunStore.from_config(cfg)
    plan = reuse_plan(cfg, store, fresh, stages)
    chosen: dict[str, Run] = {}
    input_run = _first_input(stages[0], store)
    for number, row in enumerate(stages, start=1):
        if plan[row.name] is not None:
            log.info("[%d/%d] %s: reusing run %s (same input and settings)", number, len(stages), row.name,
                     plan[row.name].run_id)
            chosen[row.name] = plan[row.name]
        else:
            log.info("[%d/%d] %s: starting", number, len(stages), row.name)
            started = time.perf_counter()
            chosen[row.name] = row.function("run")(cfg, input_run, store=store)
            log.info("[%d/%d] %s: run %s done in %.1f s", number, len(stages), row.name,
                     chosen[row.name].run_id, time.perf_counter() - started)
        input_run = chosen[row.name]
        if row.name == "tune-model":
            _check_learned_something(input_run, go_on, how_to_go_on)
    return chosen


def _check_learned_something(tune_run: Run, go_on: bool, how_to_go_on: str) -> None:
    from icurt.stages.tune_model import learned_nothing_in

    why = learned_nothing_in(tune_run)
    if why and go_on:
        log.warning("tune-model run %s: the best trial learned nothing (%s); going on as asked",
                    tune_run.run_id, why)
    elif why:
        raise IcurtError(f"tune-model run {tune_run.run_id}: the best trial learned nothing ({why}), so the "
                         f"study stops before train; widen [tune_model]'s ranges (learning_rate, optimizers) or "
                         f"raise num_trials and run again, or train this model anyway with `{how_to_go_on}`")
