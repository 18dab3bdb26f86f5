"""The one tuning stage that tune-model and tune-attack share: a Ray Tune + OptunaSearch (TPE,
study in PostgreSQL) + ASHA study over a search space, written into a run of the stage.

A stage brings only what differs (`TuningTask`): its search space, its Ray Tune trainable with the
data it needs, the metric it reports and the record of the best trial; everything else — the
resume check, the study's plan, running it until it has the planned finished trials, the trials
table and the best trial — happens here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from icurt.config import Config, TuningDriverConfig
from icurt.files import write_json
from icurt.placement import Placement
from icurt.runs import Run, RunStore
from icurt.resume import settings_changed_since, warn_changed_settings
from icurt.tuning.trials import StudyPlan, best_trial_row, write_study_files

log = logging.getLogger("icurt")


@dataclass(frozen=True)
class TuningTask:
    """What one tuning stage brings to `tune_stage`."""

    stage: str                        # the stage table's name, e.g. "tune-model"
    settings: TuningDriverConfig      # its config section (trial budget, TPE, ASHA)
    space: dict[str, Any]             # Optuna distributions
    trainable: Callable               # Ray Tune function trainable(config, **data), reports `metric`
    data: dict[str, Any]              # the trainable's inputs, through the object store
    metric: str
    mode: str                         # "min" or "max"
    step_attr: str                    # the trial's own step counter (ASHA's time_attr)
    max_step: int                     # the step of a trial that ran its whole budget
    grace_period: int                 # ASHA's first rung, in steps
    placement: Placement              # Ray resources of one trial
    input_run: Run
    best_file: str
    best_record: Callable[[dict], dict]   # best trials-table row -> the best file's JSON
    what: str = ""                    # what is tuned on, for the log
    extra_meta: dict = field(default_factory=dict)
    resume_ignores: tuple[str, ...] = ()  # settings a resumed study may change without a warning
    prune: bool = True                # ASHA stops trials on intermediate results; False: none is stopped


def study_plan(task: TuningTask, run_id: str) -> StudyPlan:
    s = task.settings
    return StudyPlan(stage=task.stage, run_id=run_id, metric=task.metric, mode=task.mode,
                     step_attr=task.step_attr, max_step=task.max_step, grace_period=task.grace_period,
                     reduction_factor=s.asha_reduction_factor, num_trials=s.num_trials,
                     startup_trials=s.optuna_startup_trials, seed=s.seed,
                     max_concurrent_trials=s.max_concurrent_trials, resources=task.placement.resources,
                     prune=task.prune)


def tune_stage(cfg: Config, task: TuningTask, *, store: RunStore, resume: str | None = None) -> Run:
    """Run (or, with `resume`, continue) the task's study into a run of its stage; returns it completed."""
    from ray import tune

    from icurt.db.connection import optuna_storage_url
    from icurt.tuning.study import run_study_keeping_trials

    section = task.stage.replace("-", "_")
    changed = (settings_changed_since(store, task.stage, resume, cfg,
                                      ignore=(f"{section}.num_trials", *task.resume_ignores))
               if resume else [])
    storage_url = optuna_storage_url(cfg)
    trainable = tune.with_parameters(task.trainable, **task.data)
    with store.create(task.stage, cfg, inputs=[task.input_run], resume_id=resume,
                      extra_meta=task.extra_meta) as writer:
        warn_changed_settings(task.stage, changed)
        plan = study_plan(task, writer.run_id)
        experiment = f"tune-resume{writer.meta['resumed']}" if resume else "tune"
        log.info("%s: %d trials%s (study %s)", task.stage, task.settings.num_trials,
                 f" {task.what}" if task.what else "", plan.study_name)
        study = run_study_keeping_trials(plan, trainable, task.space, storage_url, writer.path, experiment)
        best = best_trial_row(write_study_files(writer.path, study, task.space, storage_url), task.mode)
        record = task.best_record(best)
        write_json(writer.path / task.best_file, record)
        log.info("best trial %d: %s %.4g", best["number"], task.metric, best["objective"])
    return writer.run
