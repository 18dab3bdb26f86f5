"""`icurt run` (all seven stages on the configured database) and `icurt demo` (embedded, synthetic)."""

from __future__ import annotations

import logging
import time

from icurt.config import Config, with_overrides

log = logging.getLogger("icurt")


def add_commands(sub, common) -> None:
    run = sub.add_parser("run", parents=[common], help="run all seven stages on the configured "
                         "database, reusing completed stages whose input and settings are unchanged")
    run.add_argument("--fresh", action="store_true", help="rerun every stage")
    run.set_defaults(handler=_run)
    demo = sub.add_parser("demo", parents=[common], help="the whole study on this machine: embedded "
                          "PostgreSQL, a synthetic MIMIC-III cohort, all seven stages, an HTML report")
    demo.add_argument("--stays", type=int, help="synthetic ICU stays (default: [synth].stays of demo.toml)")
    demo.add_argument("--fresh", action="store_true", help="rebuild the cohort and rerun every stage")
    demo.set_defaults(handler=_demo)


def _run(args, cfg: Config) -> int:
    from icurt.pipeline import run_pipeline

    runs = run_pipeline(cfg, fresh=args.fresh)
    _print_outcome(runs)
    return 0


def demo_config(args) -> Config:
    """demo.toml (or the user's --config) with --set values; always the embedded server."""
    from icurt.cli import load_cli_config

    if not args.config:
        args.config = "demo"
    return with_overrides(load_cli_config(args), ["db.dsn="])


def _demo(args, _cfg: Config) -> int:
    from icurt.db.connection import resolve_dsn
    from icurt.db.synth_state import ensure_synthetic_cohort
    from icurt.pipeline import run_pipeline

    cfg = demo_config(args)
    started = time.perf_counter()
    log.info("demo: embedded PostgreSQL at %s", resolve_dsn(cfg))
    stays = args.stays or cfg.synth.stays
    ensure_synthetic_cohort(cfg, stays=stays, seed=cfg.synth.seed, fresh=args.fresh)
    runs = run_pipeline(cfg, fresh=args.fresh)
    _print_outcome(runs)
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


def _print_outcome(runs) -> None:
    analyze = runs.get("analyze")
    if analyze is None:
        return
    headline = analyze.file("headline.csv")
    if headline.exists():
        print(headline.read_text().strip())
    print(f"report: {analyze.file('report.html').resolve()}")
