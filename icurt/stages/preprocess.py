"""Stage 2, `icurt preprocess`: a query run → features (N, 48, 19) in [0, 1], in-hospital-mortality
labels and stay ids (Modin on Ray, or pandas). The steps are icurt/preprocess/build.py's."""

from __future__ import annotations

from icurt.config import Config
from icurt.runs import Run, RunStore

STAGE = "preprocess"


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, engine: str | None = None) -> Run:
    """Preprocess a query run (the newest by default) with `engine` (default [preprocess].engine)."""
    from icurt.preprocess.build import build_dataset, query_files
    from icurt.preprocess.engine import make_engine
    from icurt.resume import input_run as resolve_input

    query_run = resolve_input(store, STAGE, input_run)
    engine = engine or cfg.preprocess.engine
    files = query_files(query_run.path, cfg.preprocess)
    with store.create(STAGE, cfg, inputs=[query_run], extra_meta={"engine": engine, "dataset": query_run.meta.get("dataset")}) as writer:
        timings = build_dataset(cfg, files, make_engine(engine, cfg), writer.path)
        writer.update_meta(step_seconds=timings)
    return writer.run


def show(run: Run, cfg: Config) -> str:
    from icurt.preprocess.inspect import describe

    return describe(run)
