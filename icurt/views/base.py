"""What every run view has: the run's identity and files, its lineage, the config it was made with
and what `icurt show` prints of it. The stage's own values are in the subclasses."""

from __future__ import annotations

import tomllib
from pathlib import Path

from icurt.config import Config, config_from_dict
from icurt.runs import Run, RunStore


class RunView:
    """A completed run of any stage, opened for reading (it never writes to the run).

    `cfg` is the config it was opened with: `show()` formats with it, and `input`, `ancestor()`
    and `lineage()` open runs of the same data root."""

    def __init__(self, run: Run, store: RunStore, cfg: Config):
        self.run, self.store, self.cfg = run, store, cfg
        self._read: dict = {}

    def _once(self, key: str, read):
        """read() the first time, then what it returned (a completed run never changes)."""
        if key not in self._read:
            self._read[key] = read()
        return self._read[key]

    stage = property(lambda self: self.run.stage, doc="the stage's name, e.g. 'train'")
    run_id = property(lambda self: self.run.run_id, doc="the run's id, e.g. '20261130T101500123456-ab12'")
    path = property(lambda self: self.run.path, doc="the run's folder (absolute)")
    meta = property(lambda self: dict(self.run.meta), doc="run.json: status, times, inputs, profile")
    inputs = property(lambda self: self.run.inputs, doc="{input stage: run id} this run read")

    def __repr__(self) -> str:
        return f"<{self.stage} run {self.run_id}>"

    def _repr_pretty_(self, printer, cycle) -> None:   # IPython: a run shows what `icurt show` prints
        printer.text(repr(self) if cycle else f"{self!r}\n{self.show()}")

    def file(self, name: str) -> Path:
        return self.run.file(name)

    def files(self) -> list[str]:
        """The names of the files and folders in the run folder, sorted."""
        return sorted(p.name for p in self.path.iterdir())

    @property
    def input(self) -> "RunView | None":
        """The run this one was built from (None for a query run)."""
        parent = self.store.lineage(self.run)[1:2]
        return view_of(parent[0], self.store, self.cfg) if parent else None

    def ancestor(self, stage: str) -> "RunView":
        """The run of `stage` this run was built from (itself if it is of that stage); IcurtError
        when there is none."""
        return view_of(self.store.ancestor(self.run, stage), self.store, self.cfg)

    def lineage(self) -> list["RunView"]:
        """This run and every run it was built from, nearest first."""
        return [view_of(run, self.store, self.cfg) for run in self.store.lineage(self.run)]

    def config(self) -> Config:
        """The config the run was made with (its config.toml; database passwords redacted)."""
        return config_from_dict(tomllib.loads(self.file("config.toml").read_text()))

    def show(self, **options) -> str:
        """What `icurt show <stage> RUN` prints (its options as keywords, e.g. trial=3)."""
        from icurt.stages import stage as stage_row

        return stage_row(self.stage).function("show")(self.run, self.cfg, **options)


VIEWS = {
    "query": "data.QueryRunView", "preprocess": "data.PreprocessRunView",
    "tune-model": "tuning.TuneModelRunView", "train": "model.TrainRunView",
    "tune-attack": "tuning.TuneAttackRunView", "attack": "attack.AttackRunView",
    "fragility": "attack.FragilityRunView", "analyze": "analyze.AnalyzeRunView",
}


def view_class(stage: str) -> type[RunView]:
    """The view class of `stage` (imported on first use: torch loads only for the views that need it)."""
    import importlib

    module, name = VIEWS[stage].split(".")
    return getattr(importlib.import_module(f"icurt.views.{module}"), name)


def view_of(run: Run, store: RunStore, cfg: Config) -> RunView:
    """The view of `run` for its stage (VIEWS)."""
    return view_class(run.stage)(run, store, cfg)
