"""A tuning study without Ray: its plan, how a trial ends, the trials table and the best trial."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from icurt.errors import IcurtError
from icurt.tuning.space import decode_params, hparam_names


FINISHED_STATES = ("COMPLETE", "PRUNED")   # and a FAIL with a fail_reason (it diverged): see finished()
TRIALS_FILE, STUDY_FILE = "trials.parquet", "study.json"
FAIL_REASON = "fail_reason"   # the Optuna user attribute (and trials-table column) of a trial that diverged
CUT_OFF = "cut_off"           # user attribute of a FAIL trial an interruption cut off: it runs again
RERUN_OF = "rerun_of"         # user attribute of the trial that runs a cut-off trial's parameters again


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
    prune: bool = True         # False: no scheduler stops a trial (every one runs its whole budget)
    study: str = ""            # the Optuna study; "" → the run's own, icurt-<stage>-<run_id>

    @property
    def study_name(self) -> str:
        """The study the run adds trials to: its own, or the one of the run it extends."""
        return self.study or study_name(self.stage, self.run_id)


def study_name(stage: str, run_id: str) -> str:
    return f"icurt-{stage}-{run_id}"


def sampler_seed(seed: int, trials_in_study: int) -> int:
    """A resumed study must not replay the random start-up suggestions it already tried."""
    return seed + trials_in_study


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


def cut_off(errored: bool, value: float | None, step: int | None, max_step: int, stopped_by_scheduler: bool) -> bool:
    """Whether a Ray trial that ended as trial_end_state says was cut off by an interruption (FAIL
    without an error of its own or a NaN): a resumed study runs its parameters again."""
    state = trial_end_state(errored, value, step, max_step, stopped_by_scheduler)
    return state == "FAIL" and not errored and (value is None or not math.isnan(value))


def trials_to_rerun(trials) -> list:
    """The cut-off Optuna trials (FAIL, marked CUT_OFF) that no trial runs again yet, by number;
    a trial enqueued to rerun one (WAITING until a searcher asks for it) carries RERUN_OF."""
    rerun = {t.user_attrs.get(RERUN_OF) for t in trials}
    return sorted((t for t in trials if t.state.name == "FAIL" and t.user_attrs.get(CUT_OFF)
                   and t.number not in rerun), key=lambda t: t.number)


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
            "fail_reason": trial.user_attrs.get(FAIL_REASON),
        })
    columns = ["number", "state", "objective", *names, "last_step", "duration_s", "fail_reason"]
    return pd.DataFrame(rows, columns=columns).sort_values("number", ignore_index=True)


def best_trial_row(table, mode: str) -> dict[str, Any]:
    """The complete trial with the best finite objective (lowest for min, highest for max; first on
    ties); a non-finite objective is never best."""
    import numpy as np

    complete = table[(table["state"] == "COMPLETE") & np.isfinite(table["objective"].astype(float))]
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


def readable(value: Any) -> Any:
    """A hyperparameter's value for people: a float to 4 significant digits, anything else as is."""
    return f"{value:.4g}" if isinstance(value, float) else value


def describe_trial(run, number: int | None, mode: str, metric_label: str, space: dict[str, Any]) -> str:
    """A tuning run's trial `number` (the best when None): state, objective and hyperparameters."""
    row = trial_row(read_trials(run.path), number, mode)
    objective = row["objective"]
    lines = [f"{run.stage} run {run.run_id}, trial {row['number']}{' (best)' if number is None else ''}: "
             f"{row['state']}",
             f"  {metric_label} = {'n/a' if math.isnan(objective) else f'{objective:.6g}'}"]
    if row.get("fail_reason"):
        lines.append(f"  fail reason: {row['fail_reason']}")
    lines += [f"  {name} = {readable(row[name])}" for name in hparam_names(space)]
    return "\n".join(lines)


def finished(state: str, fail_reason: str | None = None) -> bool:
    """A trial that counts towards the study's budget: it ran its course, ASHA stopped it, or it
    failed for a recorded reason (it diverged: rerunning it would diverge again). A FAIL without a
    reason was cut off (an interruption) and a resumed study runs it again."""
    return state in FINISHED_STATES or (state == "FAIL" and bool(fail_reason))


def count_finished(states: Sequence[str], fail_reasons: Sequence[str | None] | None = None) -> int:
    reasons = fail_reasons if fail_reasons is not None else [None] * len(states)
    return sum(finished(state, reason) for state, reason in zip(states, reasons))


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
        "finished": count_finished(table["state"].tolist(), table["fail_reason"].tolist()),
    }, indent=2))
    return table


def read_trials(folder: Path):
    """The trials table a tuning run wrote."""
    from icurt.files import read_parquet

    path = Path(folder) / TRIALS_FILE
    if not path.exists():
        raise IcurtError(f"{folder} holds no {TRIALS_FILE}; is it a tuning run?")
    return read_parquet(path)
