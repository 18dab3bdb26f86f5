"""icurt from Python (a Jupyter notebook, a script): configure, run a stage, open what it wrote.

    import icurt
    cfg = icurt.load_config("demo", synth__stays=400, train__epochs=5)
    icurt.synth_cohort(cfg)                          # `icurt db synth` (skipped when already there)
    query = icurt.run("query", cfg)                  # `icurt query`
    prep = icurt.run("preprocess", cfg, from_=query) # `icurt preprocess --from <query run>`
    prep.dataset().features.shape                    # (N, 48, 19)

`run()` calls the stage table's `run(cfg, input_run, *, store, **options)`, the very function
`icurt <stage>` calls (icurt/stages/__init__.py), and returns a view of the run it wrote
(icurt/views/): the stage's files opened as numpy arrays, pandas DataFrames, dicts, torch modules
and matplotlib figures. Settings are overridden as keywords `section__key=value` (Python values,
checked like a config file) or with `cfg.with_(...)`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from icurt.config import Config, load_config as _load_file, named_config_path
from icurt.errors import IcurtError
from icurt.runs import Run, RunStore
from icurt.stages import stage as stage_row
from icurt.views import RunView, view_of

log = logging.getLogger("icurt")
__all__ = ["load_config", "run", "run_all", "list_runs", "latest", "open_run", "synth_cohort", "stop_database",
           "RunView"]


def load_config(profile: str | Path = "default", /, **overrides: Any) -> Config:
    """The validated config: configs/default.toml, then the profile — "default", a shipped one
    ("demo", "reference") or a TOML file's path — then ICURT_DATA / ICURT_DSN / ICURT_OPTUNA_DSN
    from the environment, then `overrides` as keywords `section__key=value` (Python values, e.g.
    `train__epochs=5`, `fragility__l0_budgets=[1, 4]`). IcurtError for an unknown profile or key,
    or a value outside the setting's type or bounds."""
    return _load_file(_profile_path(profile)).with_(**overrides)


def _profile_path(profile: str | Path) -> Path | None:
    if profile == "default":
        return None
    path = Path(profile)
    if isinstance(profile, str) and "/" not in profile and not profile.endswith(".toml"):
        path = named_config_path(profile)
        if not path.exists():
            raise IcurtError(f"no shipped config named '{profile}'; pass a TOML file path")
    if not path.is_file():
        raise IcurtError(f"config file {path} does not exist")
    return path


def run(stage: str, cfg: Config, from_: RunView | Run | str | None = None, **options: Any) -> RunView:
    """Run one stage as `icurt <stage> [--from RUN] [--option ...]` does and return its run.

    `from_` is the input run (a view, a Run or a run id of the stage before; None: its newest
    completed run), `options` the stage's command-line options as keywords (e.g. engine="pandas",
    trial=3, fold=1, resume=RUN_ID). IcurtError for an unknown stage or option, an input run of
    another stage, and whatever the stage itself refuses."""
    from icurt.files import check_data_root

    row = stage_row(stage)
    known = {option.dest for option in row.options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise IcurtError(f"stage {stage} has no option {unknown[0]!r}; its options are: "
                         f"{', '.join(sorted(known)) or 'none'}")
    check_data_root(cfg.paths.data)
    _console_logging()
    store = RunStore.from_config(cfg)
    written = row.function("run")(cfg, _input_run(store, row, from_), store=store,
                                  **{k: v for k, v in options.items() if v is not None})
    return view_of(written, store, cfg)


def _input_run(store: RunStore, row, given) -> Run | None:
    if given is None:
        return None
    if row.input is None:
        raise IcurtError(f"stage {row.name} reads no input run; drop from_")
    if isinstance(given, RunView):
        given = given.run
    run_id = given.run_id if isinstance(given, Run) else str(given)
    from icurt.cli import run_for

    return run_for(store, row.input, run_id, f"icurt.run('{row.name}', from_=...)")


def run_all(cfg: Config, fresh: bool = False, go_on: bool = False) -> dict[str, RunView]:
    """Every stage in order as `icurt run` does, reusing completed runs whose input and settings are
    unchanged (`fresh=True`: rerun all); the run of each stage, by stage name. Like `icurt run` it
    stops (IcurtError) after a tune-model run whose best trial learned nothing unless `go_on`."""
    from icurt.files import check_data_root
    from icurt.pipeline import run_pipeline

    check_data_root(cfg.paths.data)
    _console_logging()
    store = RunStore.from_config(cfg)
    return {name: view_of(r, store, cfg) for name, r in run_pipeline(
        cfg, store, fresh, go_on=go_on, how_to_go_on="icurt.run_all(cfg, go_on=True)").items()}


def list_runs(stage: str | None = None, cfg: Config | None = None) -> list[RunView]:
    """The completed runs of `stage` (every stage when None) under cfg's data root (default:
    load_config()'s, i.e. ICURT_DATA or ./data), newest first, as `icurt runs` lists them."""
    cfg = cfg or load_config()
    store = RunStore.from_config(cfg)
    if stage is not None:
        stage_row(stage)
    return [view_of(r, store, cfg) for r in store.list(stage)]


def latest(stage: str, cfg: Config | None = None) -> RunView:
    """The newest completed run of `stage`; IcurtError when there is none."""
    cfg = cfg or load_config()
    store = RunStore.from_config(cfg)
    return view_of(store.latest(stage_row(stage).name), store, cfg)


def open_run(run_id: str, cfg: Config | None = None) -> RunView:
    """The completed run `run_id`, whatever its stage; IcurtError when there is none."""
    cfg = cfg or load_config()
    store = RunStore.from_config(cfg)
    return view_of(store.find(run_id), store, cfg)


def synth_cohort(cfg: Config, stays: int | None = None, seed: int | None = None, fresh: bool = False) -> bool:
    """Fill cfg's database schema with the synthetic MIMIC-III cohort as `icurt db synth` does
    (default [synth].stays and .seed), unless it already holds that cohort (`fresh=True`: rebuild);
    with no DSN configured this starts the embedded PostgreSQL under the data root. True when built."""
    from icurt.db.synth.state import ensure_synthetic_cohort

    _console_logging()
    return ensure_synthetic_cohort(cfg, stays=cfg.synth.stays if stays is None else stays,
                                   seed=cfg.synth.seed if seed is None else seed, fresh=fresh)


def stop_database(cfg: Config) -> bool:
    """Stop the embedded PostgreSQL under cfg's data root, as `icurt db stop` does (its data is
    kept); False when none was running."""
    from icurt.db.server import embedded_server

    return embedded_server(cfg.paths.data, cfg.db.embedded_port).stop()


def _console_logging() -> None:
    """Progress lines on stderr, as the command prints them, unless icurt's log already has a console."""
    if not any(type(h) is not logging.FileHandler for h in log.handlers):
        from icurt.cli import configure_logging

        configure_logging(debug=False, quiet=False)

