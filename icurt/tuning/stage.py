"""The one tuning stage that tune-model and tune-attack share: a Ray Tune + OptunaSearch (TPE,
study in PostgreSQL) + ASHA study over a search space, written into a run of the stage.

A stage brings only what differs (`TuningTask`): its search space, its Ray Tune trainable with the
data it needs, the metric it reports and the record of the best trial; everything else — the
resume check, the study's plan, running it until it has the planned finished trials, the trials
table and the best trial — happens here.

Extending a completed run (`--extend RUN`) writes a new run that continues RUN's Optuna study
until it has [section].num_trials finished trials; RUN itself stays as it was (a completed run is
never reopened), and the new run records `extends` and the study it adds to (`study_name`), so an
interrupted extension resumes into the same study.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from icurt.config import Config
from icurt.config_sections import TuningDriverConfig
from icurt.errors import IcurtError
from icurt.files import read_toml, write_json
from icurt.placement import Placement
from icurt.resume import changed_settings, flat_settings, input_run
from icurt.runs import Run, RunStore
from icurt.stage_table import config_values, stage as stage_row
from icurt.tuning.trials import StudyPlan, best_trial_row, count_finished, storage_label, write_study_files

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
    resume_ignores: tuple[str, ...] = ()  # settings an extended study may change without a warning
    prune: bool = True                # ASHA stops trials on intermediate results; False: none is stopped


def study_plan(task: TuningTask, run_id: str, study: str = "") -> StudyPlan:
    s = task.settings
    return StudyPlan(stage=task.stage, run_id=run_id, metric=task.metric, mode=task.mode,
                     step_attr=task.step_attr, max_step=task.max_step, grace_period=task.grace_period,
                     reduction_factor=s.asha_reduction_factor, num_trials=s.num_trials,
                     startup_trials=s.optuna_startup_trials, seed=s.seed,
                     max_concurrent_trials=s.max_concurrent_trials, resources=task.placement.resources,
                     prune=task.prune, study=study)


def tuning_input(store: RunStore, stage: str, given: Run | None, resume: str | None,
                 extend: str | None) -> Run:
    """The run a tuning stage reads: that of the run it resumes or extends (`given` must agree),
    else `given`, else the newest run of its input stage."""
    if resume and extend:
        raise IcurtError("--resume continues an interrupted run and --extend a completed one; pass one")
    if not extend:
        return input_run(store, stage, given, resume)
    input_stage = stage_row(stage).input
    input_id = extended_run(store, stage, extend).inputs.get(input_stage)
    if given is not None and given.run_id != input_id:
        raise IcurtError(f"{stage} run '{extend}' was tuned on {input_stage} run {input_id}, not "
                         f"{given.run_id}; drop --from when extending")
    return store.get(input_stage, input_id)


def extended_run(store: RunStore, stage: str, run_id: str) -> Run:
    """The completed run `--extend` names; IcurtError pointing an interrupted one to --resume."""
    if run_id in store.failed(stage):
        raise IcurtError(f"{stage} run '{run_id}' did not complete; continue it with "
                         f"`icurt {stage} --resume {run_id}`")
    return store.get(stage, run_id)


def _extension(cfg: Config, task: TuningTask, store: RunStore, extend: str, storage_url: str, ignore):
    """(study name, changed settings) of extending the completed run `extend`; IcurtError when its
    study already has [section].num_trials finished trials."""
    import optuna

    base = extended_run(store, task.stage, extend)
    study = base.meta.get("study_name") or study_plan(task, base.run_id).study_name  # older runs: by id
    section = task.stage.replace("-", "_")
    try:
        trials = optuna.load_study(study_name=study, storage=storage_url).get_trials(deepcopy=False)
    except KeyError:
        raise IcurtError(f"the Optuna study {study} of {task.stage} run '{extend}' is not in "
                         f"{storage_label(storage_url)}; it cannot be extended") from None
    finished = count_finished([t.state.name for t in trials])
    if finished >= task.settings.num_trials:
        raise IcurtError(f"{task.stage} run '{extend}' already has {finished} finished trials; ask for "
                         f"more with --set {section}.num_trials=N (N > {finished}, the total to reach)")
    started_with = read_toml(base.file("config.toml"))
    changed = changed_settings(flat_settings(started_with, task.stage),
                               flat_settings(config_values(cfg), task.stage), ignore)
    return study, changed


def tune_stage(cfg: Config, task: TuningTask, *, store: RunStore, storage_url: str, resume: str | None = None,
               extend: str | None = None) -> Run:
    """Run the task's study, kept in the Optuna storage `storage_url` (optuna_storage_url, checked
    before Ray starts), into a new run of its stage; with `resume`, continue the interrupted run;
    with `extend`, continue the study of that completed run in a new run. Returns it completed."""
    from ray import tune

    from icurt.tuning.study import run_study_keeping_trials

    section = task.stage.replace("-", "_")
    ignore = (f"{section}.num_trials", *task.resume_ignores)
    extra_meta, study, changed = dict(task.extra_meta), "", []
    if extend:
        study, changed = _extension(cfg, task, store, extend, storage_url, ignore)
        extra_meta["extends"] = extend
    elif resume:   # cfg holds the settings the run started with (the stage's settings_at_start)
        study = store.interrupted_meta(task.stage, resume).get("study_name", "")   # "" → by its run id
    trainable = tune.with_parameters(task.trainable, **task.data)
    with store.create(task.stage, cfg, inputs=[task.input_run], resume_id=resume,
                      extra_meta=extra_meta) as writer:
        if extend and changed:
            log.warning("extending %s run %s with changed settings (%s); its trials used the old values",
                        task.stage, extend, ", ".join(changed))
        plan = study_plan(task, writer.run_id, study)
        writer.update_meta(study_name=plan.study_name)
        experiment = f"tune-resume{writer.meta['resumed']}" if resume else "tune"
        log.info("%s: %d trials%s (study %s)", task.stage, task.settings.num_trials,
                 f" {task.what}" if task.what else "", plan.study_name)
        study = run_study_keeping_trials(plan, trainable, task.space, storage_url, writer.path, experiment)
        best = best_trial_row(write_study_files(writer.path, study, task.space, storage_url), task.mode)
        record = task.best_record(best)
        write_json(writer.path / task.best_file, record)
        log.info("best trial %d: %s %.4g", best["number"], task.metric, best["objective"])
    return writer.run
