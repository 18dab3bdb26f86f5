"""Shared machinery of tune-model and tune-attack: Ray Tune + OptunaSearch (TPE, study in
PostgreSQL) + ASHA on the trial's own step counter.

The plain functions (search-space helpers, trial resources, how a trial ends, the trials table,
the best trial) need no Ray and are unit-tested alone; `run_study` is the Ray edge.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from icurt.errors import IcurtError

log = logging.getLogger("icurt")

LOG2_PREFIX = "log2_"  # an Optuna parameter "log2_x" = k stands for the hyperparameter x = 2**k
FINISHED_STATES = ("COMPLETE", "PRUNED")
TRIALS_FILE, STUDY_FILE = "trials.parquet", "study.json"


@dataclass(frozen=True)
class StudyPlan:
    """Everything the Ray side needs to know about one tuning study."""

    stage: str                 # "tune-model" or "tune-attack"
    run_id: str
    metric: str
    mode: str                  # "min" or "max"
    step_attr: str             # the trial's own step counter: ASHA's time_attr and Optuna's step
    max_step: int              # a trial that reports this step has run its full budget
    grace_period: int
    reduction_factor: int
    num_trials: int            # finished (complete + pruned) trials the study must reach
    startup_trials: int
    seed: int
    max_concurrent_trials: int  # 0 → as many as the resources allow
    resources: dict            # Ray resources of one trial

    @property
    def study_name(self) -> str:
        return study_name(self.stage, self.run_id)


def study_name(stage: str, run_id: str) -> str:
    return f"icurt-{stage}-{run_id}"


# ---- search space -------------------------------------------------------------------------

def exponent_range(exponents: Sequence[int]):
    """Integer k in [low, high] for a hyperparameter 2**k (name its key with LOG2_PREFIX)."""
    from optuna.distributions import IntDistribution

    return IntDistribution(int(exponents[0]), int(exponents[1]))


def uniform(bounds: Sequence[float], log: bool = False):
    from optuna.distributions import FloatDistribution

    return FloatDistribution(float(bounds[0]), float(bounds[1]), log=log)


def choice(options: Sequence[str]):
    from optuna.distributions import CategoricalDistribution

    return CategoricalDistribution(tuple(options))


def decode_params(params: dict[str, Any]) -> dict[str, Any]:
    """Optuna parameters as hyperparameters: "log2_x": k becomes "x": 2**k."""
    decoded = {}
    for key, value in params.items():
        if key.startswith(LOG2_PREFIX):
            decoded[key[len(LOG2_PREFIX):]] = 2 ** int(value)
        else:
            decoded[key] = value
    return decoded


def hparam_names(space: dict[str, Any]) -> list[str]:
    return list(decode_params({key: 0 for key in space}))


def sampler_seed(seed: int, trials_in_study: int) -> int:
    """A resumed study must not replay the random start-up suggestions it already tried."""
    return seed + trials_in_study


# ---- resources ----------------------------------------------------------------------------

def trial_resources(section: str, device: str, cpus_per_trial: float, gpus_per_trial: float,
                    cluster_cpus: float, cluster_gpus: float) -> dict[str, float]:
    """Ray resources of one trial; IcurtError for a request the cluster can never meet (Ray would wait forever)."""
    if cpus_per_trial > cluster_cpus:
        raise IcurtError(f"{section}.cpus_per_trial is {cpus_per_trial} but the Ray cluster has "
                         f"{cluster_cpus:g} CPUs; lower it")
    if device == "cuda" and cluster_gpus <= 0:
        raise IcurtError("[ray].device is 'cuda' but the Ray cluster has no GPU; "
                         "set --set ray.device=auto or cpu, or join a cluster with GPUs")
    if cluster_gpus <= 0 or device == "cpu":
        return {"CPU": cpus_per_trial}
    if gpus_per_trial <= 0:
        if device == "cuda":
            raise IcurtError(f"[ray].device is 'cuda' but {section}.gpus_per_trial is 0; give each trial "
                             "a GPU share (e.g. 0.25)")
        return {"CPU": cpus_per_trial}
    if gpus_per_trial > cluster_gpus:
        raise IcurtError(f"{section}.gpus_per_trial is {gpus_per_trial} but the Ray cluster has "
                         f"{cluster_gpus:g} GPUs; lower it")
    if gpus_per_trial > 1 and not float(gpus_per_trial).is_integer():
        raise IcurtError(f"{section}.gpus_per_trial is {gpus_per_trial}; above 1 Ray needs a whole "
                         "number of GPUs")
    return {"CPU": cpus_per_trial, "GPU": gpus_per_trial}


# ---- how trials end -----------------------------------------------------------------------

def trial_end_state(errored: bool, value: float | None, step: int | None, max_step: int,
                    stopped_by_scheduler: bool) -> str:
    """Optuna state of a finished Ray trial: it ran its budget, ASHA stopped it, or it broke off.

    Ray's OptunaSearch marks every trial that reported a value COMPLETE, ASHA-stopped ones
    included; here those are PRUNED, and a trial cut short by anything else (an interrupted
    run) is FAIL, so a resumed study runs it again.
    """
    if errored or value is None or step is None or math.isnan(value):
        return "FAIL"
    if step >= max_step:
        return "COMPLETE"
    return "PRUNED" if stopped_by_scheduler else "FAIL"


def trials_frame(trials, space: dict[str, Any]):
    """One row per Optuna trial: number, state, objective, each hyperparameter, last step, seconds."""
    import pandas as pd

    names = hparam_names(space)
    rows = []
    for trial in trials:
        start, end = trial.datetime_start, trial.datetime_complete
        rows.append({
            "number": int(trial.number), "state": trial.state.name,
            "objective": float("nan") if trial.value is None else float(trial.value),
            **{name: None for name in names}, **decode_params(trial.params),
            "last_step": -1 if trial.last_step is None else int(trial.last_step),
            "duration_s": (end - start).total_seconds() if start and end else float("nan"),
        })
    columns = ["number", "state", "objective", *names, "last_step", "duration_s"]
    return pd.DataFrame(rows, columns=columns).sort_values("number", ignore_index=True)


def best_trial_row(table, mode: str) -> dict[str, Any]:
    """The complete trial with the best objective (lowest for min, highest for max; first on ties)."""
    complete = table[(table["state"] == "COMPLETE") & table["objective"].notna()]
    if complete.empty:
        raise IcurtError("no trial of the study ran to completion, so there is no best trial; "
                         "see run.log, widen the search space or raise num_trials")
    index = complete["objective"].idxmin() if mode == "min" else complete["objective"].idxmax()
    return {key: plain(value) for key, value in complete.loc[index].to_dict().items()}


def trial_row(table, number: int | None, mode: str) -> dict[str, Any]:
    """Trial `number` of a trials table, or the best trial when `number` is None."""
    if number is None:
        return best_trial_row(table, mode)
    match = table[table["number"] == number]
    if match.empty:
        raise IcurtError(f"no trial {number} in this study; trials are numbered "
                         f"{int(table['number'].min())}..{int(table['number'].max())}")
    return {key: plain(value) for key, value in match.iloc[0].to_dict().items()}


def best_hparams_of(row: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a trials-table row, as plain Python values (ready for JSON)."""
    return {name: plain(row[name]) for name in hparam_names(space)}


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (JSON cannot write numpy types)."""
    return value.item() if hasattr(value, "item") else value


def describe_trial(run, number: int | None, mode: str, metric_label: str, space: dict[str, Any]) -> str:
    """A tuning run's trial `number` (the best when None): state, objective and hyperparameters."""
    row = trial_row(read_trials(run.path), number, mode)
    objective = row["objective"]
    lines = [f"{run.stage} run {run.run_id}, trial {row['number']}{' (best)' if number is None else ''}: "
             f"{row['state']}",
             f"  {metric_label} = {'n/a' if math.isnan(objective) else f'{objective:.6g}'}"]
    lines += [f"  {name} = {row[name]}" for name in hparam_names(space)]
    return "\n".join(lines)


def count_finished(states: Sequence[str]) -> int:
    return sum(state in FINISHED_STATES for state in states)


def storage_label(storage_url: str) -> str:
    """The storage URL with its password hidden, for study.json and logs."""
    from sqlalchemy.engine import make_url

    return make_url(storage_url).render_as_string(hide_password=True)


def write_study_files(folder: Path, study, space: dict[str, Any], storage_url: str):
    """trials.parquet and study.json for `study`; returns the trials table."""
    table = trials_frame(study.get_trials(deepcopy=False), space)
    table.to_parquet(folder / TRIALS_FILE, index=False)
    (folder / STUDY_FILE).write_text(json.dumps({
        "study_name": study.study_name, "storage": storage_label(storage_url),
        "direction": study.direction.name.lower(), "trials": len(table),
        "finished": count_finished(table["state"].tolist()),
    }, indent=2))
    return table


def read_trials(folder: Path):
    """The trials table a tuning run wrote."""
    import pandas as pd

    path = Path(folder) / TRIALS_FILE
    if not path.exists():
        raise IcurtError(f"{folder} holds no {TRIALS_FILE}; is it a tuning run?")
    return pd.read_parquet(path)


# ---- the Optuna study and the Ray Tune run --------------------------------------------------

def open_study(plan: StudyPlan, storage_url: str):
    """The plan's Optuna study (created or loaded); trials a killed driver left RUNNING become FAIL."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(storage_url)
    study = optuna.create_study(storage=storage, study_name=plan.study_name, load_if_exists=True,
                                direction="minimize" if plan.mode == "min" else "maximize")
    fail_running_trials(study)
    return study


def fail_running_trials(study) -> None:
    """Mark FAIL the trials no driver is running any more (cut off by an interruption)."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.warning("trial %d was cut off by an interruption; marking it failed", trial.number)
        study.tell(trial.number, state=TrialState.FAIL)


def run_study(plan: StudyPlan, trainable: Callable, space: dict[str, Any], storage_url: str,
              results_dir: Path, experiment_name: str):
    """Run trials until the study has plan.num_trials finished ones; returns the Optuna study.

    Raises IcurtError when the Tuner stops earlier (interrupted, or trials failing).
    """
    study = open_study(plan, storage_url)
    states = [t.state.name for t in study.get_trials(deepcopy=False)]
    remaining = plan.num_trials - count_finished(states)
    if remaining <= 0:
        log.info("study %s already has %d finished trials", plan.study_name, count_finished(states))
        return study
    log.info("study %s: %d finished, running %d more trial(s) with %s each", plan.study_name,
             count_finished(states), remaining, plan.resources)
    errors = _fit(plan, trainable, space, storage_url, results_dir, experiment_name, remaining,
                  sampler_seed(plan.seed, len(states)))
    fail_running_trials(study)  # an interrupted Tuner leaves its running trials RUNNING in the study
    finished = count_finished([t.state.name for t in study.get_trials(deepcopy=False)])
    if finished < plan.num_trials:
        cause = f"; first trial error: {str(errors[0]).strip().splitlines()[-1]}" if errors else ""
        raise IcurtError(f"tuning stopped with {finished} of {plan.num_trials} trials finished{cause}; "
                         f"continue it with `icurt {plan.stage} --resume {plan.run_id}`")
    return study


def run_study_keeping_trials(plan: StudyPlan, trainable: Callable, space: dict[str, Any],
                             storage_url: str, run_folder: Path, experiment_name: str):
    """run_study with results under run_folder/ray_results; if it fails, trials.parquet is still
    written for inspection before the error propagates (the run folder becomes .failed-<id>)."""
    try:
        return run_study(plan, trainable, space, storage_url, run_folder / "ray_results", experiment_name)
    except BaseException:
        try:
            import optuna

            write_study_files(run_folder, optuna.load_study(study_name=plan.study_name, storage=storage_url),
                              space, storage_url)
        except Exception as exc:  # the original error matters more than this one
            log.warning("could not write %s for the failed run: %s", TRIALS_FILE, type(exc).__name__)
        raise


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


def _fit(plan: StudyPlan, trainable, space, storage_url, results_dir, experiment_name, num_samples,
         seed) -> list:
    import optuna
    from ray import tune

    searcher, scheduler = _searcher_and_scheduler(plan, space, storage_url, seed)
    # reuse_actors: a trial slot keeps its worker; a fresh one per trial spends seconds importing torch
    tuner = tune.Tuner(
        tune.with_resources(trainable, plan.resources),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=plan.max_concurrent_trials or None,
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(Path(results_dir).resolve()), name=experiment_name,
                                  verbose=0),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        grid = tuner.fit()
    return list(grid.errors)


def _searcher_and_scheduler(plan: StudyPlan, space, storage_url: str, seed: int):
    """OptunaSearch that records ASHA-stopped trials as PRUNED and steps by plan.step_attr."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler
    from ray.tune.search.optuna import OptunaSearch

    stopped: set[str] = set()

    class RecordingASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP:
                stopped.add(trial.trial_id)
            return decision

    class StudySearch(OptunaSearch):
        def on_trial_result(self, trial_id, result):
            if trial_id in self._completed_trials or self.metric not in result:
                return
            _report(self._ot_trials[trial_id], result[self.metric], result[plan.step_attr])

        def on_trial_complete(self, trial_id, result=None, error=False):
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            value = (result or {}).get(self.metric)
            step = (result or {}).get(plan.step_attr)
            state = trial_end_state(error, value, step, plan.max_step, trial_id in stopped)
            if state != "FAIL":
                _report(ot_trial, value, step)
            ot_trial.set_user_attr("ray_trial_id", trial_id)  # finds its folder under ray_results/
            self._ot_study.tell(ot_trial, float(value) if state == "COMPLETE" else None,
                                state=optuna.trial.TrialState[state])
            self._completed_trials.add(trial_id)
            log.info("trial %d %s at %s %s: %s %.4g", ot_trial.number, state.lower(), plan.step_attr, step,
                     plan.metric, math.nan if value is None else value)

    # constant_liar: trials run side by side, so running ones count as bad until they finish
    sampler = optuna.samplers.TPESampler(n_startup_trials=plan.startup_trials, seed=seed,
                                         constant_liar=True)
    searcher = StudySearch(space, metric=plan.metric, mode=plan.mode, sampler=sampler,
                           study_name=plan.study_name,
                           storage=optuna.storages.RDBStorage(storage_url))
    scheduler = RecordingASHA(time_attr=plan.step_attr, metric=plan.metric, mode=plan.mode,
                              max_t=plan.max_step, grace_period=min(plan.grace_period, plan.max_step),
                              reduction_factor=plan.reduction_factor)
    return searcher, scheduler


def _report(ot_trial, value: float, step: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a step reported twice is ignored by Optuna, with a warning
        ot_trial.report(float(value), int(step))

