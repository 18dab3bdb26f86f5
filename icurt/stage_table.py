"""THE stage table: every stage of the study in pipeline order, and what everything else derives
from it (the run store's stages and lineage, `icurt run`, the CLI's stage and `show` commands,
the Ray job entrypoint). Plain data below the run store and the stages: it imports no stage module
(a row finds its module by name when it runs); icurt/stages/__init__.py hands it on.

Each row names the module of its thin orchestrator, `icurt/stages/<name>.py`, which defines

    run(cfg, input_run: Run | None, *, store: RunStore, **options) -> Run   (None = newest input)
    show(run: Run, cfg, **show_options) -> str                              (read-only)

`reads` lists the config sections (or single `section.key`s) whose values shape the stage's
output: a stage's reuse key in `icurt run` and what `--resume` compares. [paths], [db] (but the
schema) and [ray] only place the work and never shape a result. A row with a `source` reads data
from outside the run store (query: the database); its module then also defines

    source_fingerprint(cfg) -> dict | None      (cheap; None when the source cannot be read)
    describe_source(fingerprint) -> str

and its runs record the fingerprint in run.json ("source"): `icurt run` reuses a run only while
the source's fingerprint is still the one it recorded.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any, Callable

from icurt.errors import IcurtError


@dataclass(frozen=True)
class Option:
    """A command-line option of a stage (or of its `show`); `dest` is its keyword in run()/show()."""

    flag: str                      # e.g. "--engine"
    help: str
    type: Callable | None = str    # None: a flag without a value (store_true)
    metavar: str | None = None
    choices: tuple | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Stage:
    name: str                  # command and run folder name
    input: str | None          # the stage whose run it reads
    reads: tuple[str, ...]     # config sections / section.keys that shape its output
    summary: str               # one line for `icurt --help`
    options: tuple[Option, ...] = ()
    show_options: tuple[Option, ...] = ()
    show_summary: str = ""
    source: str | None = None  # what it reads outside the run store, e.g. "database" (see above)

    @property
    def module(self) -> str:
        return "icurt.stages." + self.name.replace("-", "_")

    def function(self, name: str = "run") -> Callable:
        return getattr(importlib.import_module(self.module), name)


RESUME = Option("--resume", "continue the interrupted run RUN (kept as .failed-RUN) without losing "
                "what it finished", metavar="RUN")


def extend_option(section: str) -> Option:
    """--extend of the tuning stage whose settings are config section `section`."""
    return Option("--extend", "continue the study of the completed run RUN in a new run, until it has "
                  f"[{section}].num_trials finished trials in all (RUN stays as it was)", metavar="RUN")


TRIAL = Option("--trial", "trial number N of the study (see its trials.parquet) instead of the best",
               type=int, metavar="N")
TUNING = ("tune_model", "tune_attack")

STAGES: tuple[Stage, ...] = (
    Stage("query", None, ("query", "db.schema", "db.dataset", "db.hosp_schema", "db.icu_schema"),
          "stage 1: run the four MIMIC-III or MIMIC-IV queries (read-only) into the Parquet files of a query run",
          options=(Option("--csv", "also write a CSV file beside each Parquet file", type=None),),
          show_summary="rows, query and write seconds per query", source="database"),
    Stage("preprocess", "query", ("preprocess",),
          "stage 2: a query run → (N, 48, 19) features and in-hospital-mortality labels (Modin on Ray)",
          options=(Option("--engine", "dataframe engine (default: [preprocess].engine)",
                          choices=("modin", "pandas")),),
          show_summary="samples, labels, distributions and per-feature values"),
    Stage("tune-model", "preprocess", ("tune_model", "model", "train.precision"),
          "stage 3: tune the BiLSTM's hyperparameters with Ray Tune + Optuna (TPE, study in "
          "PostgreSQL) + ASHA",
          options=(RESUME, extend_option("tune_model")), show_options=(TRIAL,),
          show_summary="a trial's hyperparameters and objective (the best by default)"),
    Stage("train", "tune-model", ("train", "model"),
          "stage 4: k-fold cross-validation of the tuned BiLSTM on Ray Train; per-fold and mean ± sd "
          "metrics",
          options=(Option("--trial", "train trial N of the tune-model run instead of its best",
                          type=int, metavar="N"), RESUME),
          show_summary="the best checkpoint per fold and mean ± sd of every metric"),
    Stage("tune-attack", "train", ("tune_attack", "attack_method"),
          "stage 5: tune the sparse attack's hyperparameters with Ray Tune + Optuna + ASHA",
          options=(Option("--fold", "attack fold K's model (default: [tune_attack].fold_choice)", type=int,
                          metavar="K"), RESUME, extend_option("tune_attack")),
          show_options=(TRIAL,),
          show_summary="a trial's attack hyperparameters and score (the best by default)"),
    Stage("attack", "tune-attack", ("attack", "attack_method"),
          "stage 6: the tuned sparse attack on the dataset, batches sharded over Ray actors",
          options=(RESUME,),
          show_summary="samples attacked, adversarial examples, the attack's settings"),
    Stage("fragility", "attack", ("fragility", "attack"),
          "stage 7: the attack again under L0 and clinical-unit L∞ budgets — how little it takes to "
          "flip the model",
          options=(RESUME,),
          show_summary="the headline number and the success rate per budget and direction"),
    Stage("analyze", "fragility", ("analyze", "profile"),
          "stage 8: success, sparsity, susceptibility by measurement and hour, fragility curves; PNG "
          "plots and one HTML report",
          show_summary="the headline table and the report's path"),
)
STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)
INPUT_STAGE: dict[str, str | None] = {s.name: s.input for s in STAGES}
_BY_NAME = {s.name: s for s in STAGES}


def stage(name: str) -> Stage:
    """The row of stage `name`; IcurtError for a name that is not a stage."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise IcurtError(f"unknown stage '{name}'; stages are: {', '.join(STAGE_NAMES)}") from None


def settings_read(cfg_values: dict[str, Any], row: Stage) -> dict[str, Any]:
    """The values of `row.reads` in a config given as a nested dict (a Config or a config.toml)."""
    found = {}
    for item in row.reads:
        section, _, key = item.partition(".")
        values = cfg_values.get(section, {}) or {}
        found[item] = values.get(key) if key else values
    return found


def config_values(cfg) -> dict[str, Any]:
    """A Config as the nested dict settings_read expects (what config.toml holds, unredacted)."""
    return dataclasses.asdict(cfg)
