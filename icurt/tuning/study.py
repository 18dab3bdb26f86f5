"""The Ray edge of tuning: one Optuna study (TPE, in PostgreSQL) run by Ray Tune with
OptunaSearch + ASHA on the trial's own step counter, until it has the planned finished trials.
A trial an interruption cut off is run again, with its own parameters, when the study continues."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable

from icurt.errors import IcurtError
from icurt.run_log import VERBOSE
from icurt.tune_interrupt import raise_if_interrupted, sigint_stops_tune
from icurt.tuning.trials import (CUT_OFF, FAIL_REASON, RERUN_OF, TRIALS_FILE, StudyPlan, cut_off, finished,
                                 sampler_seed, trial_end_state, trials_to_rerun, write_study_files)

log = logging.getLogger("icurt")
STORAGE_LOCK = "icurt-optuna-storage"   # advisory lock held while a storage's tables may be created


def open_study(plan: StudyPlan, storage_url: str):
    """The plan's Optuna study (created or loaded); trials a killed driver left RUNNING become FAIL."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = create_storage(storage_url)
    study = optuna.create_study(storage=storage, study_name=plan.study_name, load_if_exists=True,
                                direction="minimize" if plan.mode == "min" else "maximize")
    fail_running_trials(study)
    return study


def create_storage(storage_url: str):
    """Optuna's RDBStorage at `storage_url` (a PostgreSQL SQLAlchemy URL). A fresh database gets its
    tables from one process at a time: the storage is opened under a PostgreSQL advisory lock, so
    tuning runs started together on a fresh database never race on creating them (IntegrityError);
    one raised by a creator outside icurt is retried once, when the tables exist."""
    import optuna
    import sqlalchemy

    engine = sqlalchemy.create_engine(storage_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(hashtext(:key))"), {"key": STORAGE_LOCK})
            try:
                return optuna.storages.RDBStorage(storage_url)
            except sqlalchemy.exc.IntegrityError:
                return optuna.storages.RDBStorage(storage_url)
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(hashtext(:key))"), {"key": STORAGE_LOCK})
    finally:
        engine.dispose()


def fail_running_trials(study) -> None:
    """Mark FAIL, and CUT_OFF, the trials no driver is running any more (cut off by an interruption)."""
    from optuna.trial import Trial, TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log.warning("trial %d was cut off by an interruption; marking it failed", trial.number)
        Trial(study, trial._trial_id).set_user_attr(CUT_OFF, True)
        study.tell(trial.number, state=TrialState.FAIL)


def rerun_cut_off_trials(study, limit: int) -> int:
    """Enqueue (at most `limit` of) the cut-off trials not yet run again, each with its own
    parameters, so the next trials the study's searcher asks for are these (Optuna serves enqueued
    trials first); the cut-off trial stays FAIL, which TPE does not learn from. Returns how many."""
    queued = trials_to_rerun(study.get_trials(deepcopy=False))[:max(limit, 0)]
    for trial in queued:
        log.info("trial %d was cut off by an interruption; running its parameters again", trial.number)
        study.enqueue_trial(trial.params, user_attrs={RERUN_OF: trial.number})
    return len(queued)


def run_study(plan: StudyPlan, trainable: Callable, space: dict[str, Any], storage_url: str,
              results_dir: Path, experiment_name: str):
    """Run trials until the study has plan.num_trials finished ones; returns the Optuna study.

    Raises KeyboardInterrupt when Ctrl-C stopped it (its trials recorded first), IcurtError when the
    Tuner stops earlier for another reason (trials failing).
    """
    study = open_study(plan, storage_url)
    done, trials = finished_trials(study), len(study.get_trials(deepcopy=False))
    remaining = plan.num_trials - done
    if remaining <= 0:
        log.info("study %s already has %d finished trials", plan.study_name, done)
        return study
    log.info("study %s: %d finished, running %d more trial(s) with %s each", plan.study_name,
             done, remaining, plan.resources)
    rerun_cut_off_trials(study, remaining)
    with sigint_stops_tune() as interrupted:
        errors = _fit(plan, trainable, space, storage_url, results_dir, experiment_name, remaining,
                      sampler_seed(plan.seed, trials))
    fail_running_trials(study)  # an interrupted Tuner leaves its running trials RUNNING in the study
    raise_if_interrupted(interrupted)
    done = finished_trials(study)
    if done < plan.num_trials:
        cause = f"; first trial error: {str(errors[0]).strip().splitlines()[-1]}" if errors else ""
        raise IcurtError(f"tuning stopped with {done} of {plan.num_trials} trials finished{cause}; "
                         f"continue it with `icurt {plan.stage} --resume {plan.run_id}`")
    return study


def finished_trials(study) -> int:
    """Trials of the study that count towards its budget (trials.finished)."""
    return sum(finished(t.state.name, t.user_attrs.get(FAIL_REASON)) for t in study.get_trials(deepcopy=False))


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


def _fit(plan: StudyPlan, trainable, space, storage_url, results_dir, experiment_name, num_samples,
         seed) -> list:
    import optuna
    from ray import tune

    from icurt.progress import progress_callback

    searcher, scheduler = _searcher_and_scheduler(plan, space, storage_url, seed)
    # reuse_actors: a trial slot keeps its worker; a fresh one per trial spends seconds importing torch
    tuner = tune.Tuner(
        tune.with_resources(trainable, plan.resources),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples,
                                    max_concurrent_trials=plan.max_concurrent_trials or None,
                                    reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(Path(results_dir).resolve()), name=experiment_name,
                                  verbose=0, callbacks=[progress_callback(num_samples, plan.stage, "trial")]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        grid = tuner.fit()
    return list(grid.errors)


def scheduler(plan: StudyPlan, stopped: set[str]):
    """ASHA on plan.step_attr, adding the trials it stops to `stopped`; with plan.prune False a
    FIFO scheduler that stops none."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

    if not plan.prune:
        return FIFOScheduler()

    class RecordingASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP:
                stopped.add(trial.trial_id)
            return decision

    return RecordingASHA(time_attr=plan.step_attr, metric=plan.metric, mode=plan.mode, max_t=plan.max_step,
                         grace_period=min(plan.grace_period, plan.max_step), reduction_factor=plan.reduction_factor)


def _searcher_and_scheduler(plan: StudyPlan, space, storage_url: str, seed: int):
    """OptunaSearch that records ASHA-stopped trials as PRUNED and steps by plan.step_attr."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    stopped: set[str] = set()

    class StudySearch(OptunaSearch):
        def on_trial_result(self, trial_id, result):
            if trial_id in self._completed_trials or self.metric not in result or result.get(FAIL_REASON):
                return
            _report(self._ot_trials[trial_id], result[self.metric], result[plan.step_attr])

        def on_trial_complete(self, trial_id, result=None, error=False):
            if trial_id in self._completed_trials or trial_id not in self._ot_trials:
                return
            ot_trial = self._ot_trials[trial_id]
            value = (result or {}).get(self.metric)
            step = (result or {}).get(plan.step_attr)
            reason = (result or {}).get(FAIL_REASON)
            state = "FAIL" if reason else trial_end_state(error, value, step, plan.max_step, trial_id in stopped)
            if not reason and cut_off(error, value, step, plan.max_step, trial_id in stopped):
                ot_trial.set_user_attr(CUT_OFF, True)   # a resumed study runs its parameters again
            if state != "FAIL":
                _report(ot_trial, value, step)
            if reason:   # a trial that diverged: FAIL, counted as finished (rerunning it would diverge again)
                ot_trial.set_user_attr(FAIL_REASON, str(reason))
                log.warning("trial %d failed: %s", ot_trial.number, reason)
            ot_trial.set_user_attr("ray_trial_id", trial_id)  # finds its folder under ray_results/
            self._ot_study.tell(ot_trial, float(value) if state == "COMPLETE" else None,
                                state=optuna.trial.TrialState[state])
            self._completed_trials.add(trial_id)
            log.info("trial %d %s at %s %s: %s %.4g", ot_trial.number, state.lower(), plan.step_attr, step,
                     plan.metric, math.nan if value is None else value, extra=VERBOSE)

    # constant_liar: trials run side by side, so running ones count as bad until they finish
    sampler = optuna.samplers.TPESampler(n_startup_trials=plan.startup_trials, seed=seed,
                                         constant_liar=True)
    searcher = StudySearch(space, metric=plan.metric, mode=plan.mode, sampler=sampler,
                           study_name=plan.study_name,
                           storage=optuna.storages.RDBStorage(storage_url))
    return searcher, scheduler(plan, stopped)


def _report(ot_trial, value: float, step: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a step reported twice is ignored by Optuna, with a warning
        ot_trial.report(float(value), int(step))

