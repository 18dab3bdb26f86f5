"""The `icurt` command: one subcommand per stage, plus config, runs, db, run and demo.

Each package registers its own subcommands through `add_commands(sub, common)` in its
`commands` module; handlers take `(args, cfg)` and return an exit code. Heavy imports (torch,
ray, modin) happen inside handlers so `icurt --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from icurt import __version__
from icurt.config import Config, config_to_toml, config_value, dict_to_toml, load_config, named_config_path
from icurt.db.dsn import RedactingFilter, redact_dsn
from icurt.errors import IcurtError

COMMAND_MODULES = [  # in pipeline order, as `icurt --help` lists them
    "icurt.db.commands", "icurt.preprocess.commands", "icurt.model.tune_commands",
    "icurt.model.train_commands", "icurt.attack.tune_commands", "icurt.attack.attack_commands",
    "icurt.analysis.commands", "icurt.pipeline_commands",
]
log = logging.getLogger("icurt")


def common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration")
    group.add_argument("--config", metavar="FILE", help="a TOML file layered over configs/default.toml "
                       "(`demo` names the shipped configs/demo.toml)")
    group.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append",
                       default=[], help="override one setting, typed by the schema (repeatable)")
    group.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icurt", description="Ray-distributed ICU deep learning on MIMIC-III: query → preprocess → "
        "tune-model → train → tune-attack → attack → analyze.")
    parser.add_argument("--version", action="version", version=f"icurt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    _add_config_commands(sub, common)
    _add_runs_command(sub, common)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub, common)
    return parser


def _add_config_commands(sub, common) -> None:
    config = sub.add_parser("config", help="show the effective configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser("show", parents=[common], help="print the effective config as TOML "
                                 "(passwords redacted)")
    show.add_argument("key", nargs="?", help="a section or section.key to print alone")
    show.set_defaults(handler=_config_show)


def _config_show(args, cfg: Config) -> int:
    if not args.key:
        print(config_to_toml(cfg), end="")
        return 0
    value = config_value(cfg, args.key)
    if isinstance(value, dict):
        print(dict_to_toml({args.key: value}), end="")
    else:
        print(dict_to_toml({"_": {args.key.split(".")[-1]: value}}).split("\n", 1)[1].strip())
    return 0


def _add_runs_command(sub, common) -> None:
    from icurt.runs import STAGES

    runs = sub.add_parser("runs", parents=[common], help="list runs, newest first, with their lineage")
    runs.add_argument("stage", nargs="?", choices=STAGES, help="only this stage")
    runs.add_argument("--all", action="store_true", help="also list failed and interrupted runs")
    runs.set_defaults(handler=_runs)


def _runs(args, cfg: Config) -> int:
    from icurt.runs import STAGES, RunStore

    store = RunStore.from_config(cfg)
    found = store.list(args.stage)
    if not found:
        print(f"no completed runs under {store.root}" + (f" for {args.stage}" if args.stage else ""))
    for run in found:
        lineage = " ← ".join(f"{r.stage} {r.run_id}" for r in store.lineage(run)[1:])
        print(f"{run.stage:<12} {run.run_id}  {run.meta.get('finished', '')}"
              + (f"  from {lineage}" if lineage else ""))
    if args.all:
        for stage in [args.stage] if args.stage else STAGES:
            for run_id in store.failed(stage):
                print(f"{stage:<12} {run_id}  (failed or interrupted)")
    return 0


def configure_logging(debug: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    log.handlers = [h for h in log.handlers if not isinstance(h, logging.StreamHandler)
                    or isinstance(h, logging.FileHandler)] + [handler]
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    log.propagate = False


def load_cli_config(args) -> Config:
    path = getattr(args, "config", None)
    if path and "/" not in path and not path.endswith(".toml"):
        path = named_config_path(path)
        if not path.exists():
            raise IcurtError(f"no shipped config named '{args.config}'; pass a TOML file path")
    return load_config(path, getattr(args, "overrides", []))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    configure_logging(debug, getattr(args, "quiet", False))
    try:
        cfg = load_cli_config(args)
        return int(args.handler(args, cfg) or 0)
    except IcurtError as exc:
        if debug:
            raise
        print(f"icurt: error: {redact_dsn(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("icurt: interrupted; the run in progress was marked failed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
