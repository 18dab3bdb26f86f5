"""The `icurt` command. One subcommand per row of the stage table (`--from` plus the row's options,
one handler), `icurt show <stage>` for looking inside a run, and config, runs, db, run and demo.

Handlers take `(args, cfg)` and return an exit code. Heavy imports (torch, ray, modin) happen
inside handlers so `icurt --help` stays fast.

Left whole at ~360 lines: one job, the command line (the parser the stage table generates, handlers
of a few lines, main()'s one-line errors); the logic of every command lives elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from importlib import metadata
from pathlib import Path

from icurt.config import Config, config_to_toml, config_value, load_config, named_config_path, with_overrides
from icurt.config_toml import dict_to_toml
from icurt.db.commands import add_dataset_option, with_dataset
from icurt.dsn import RedactingFilter, redact_dsn
from icurt.errors import IcurtError
from icurt.stage_table import STAGE_NAMES, STAGES, Option, Stage, stage as stage_row
from icurt.termination import EXIT_CODE as TERMINATED_EXIT, REASON as TERMINATED, handle_sigterm, is_termination

log = logging.getLogger("icurt")


class Parser(argparse.ArgumentParser):
    """argparse with a usage mistake said in one line, like every other user error (exit code 2);
    its subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {redact_dsn(message)} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None:   # said by the command that got them, not by `icurt`
            self.error("unrecognized arguments: " + " ".join(extras))
        return namespace, extras


def common_options(with_config_file: bool = True) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration")
    if with_config_file:
        group.add_argument("--config", metavar="FILE", help="a TOML file layered over configs/default.toml "
                           "(`demo` and `reference` name the shipped configs/demo.toml and "
                           "configs/reference.toml)")
    group.add_argument("--set", dest="overrides", metavar="SECTION.KEY=VALUE", action="append",
                       default=[], help="override one setting, typed by the schema (repeatable)")
    group.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    group.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    group.add_argument("-v", "--verbose", action="store_true", help="also every evaluated epoch's scores and "
                       "every finished tuning trial (always in the run's run.log)")
    return common


def build_parser() -> argparse.ArgumentParser:
    from icurt.db.commands import add_commands as add_db_commands
    from icurt.runs_command import add_runs_command

    parser = Parser(
        prog="icurt", description="Ray-distributed ICU deep learning on MIMIC-III: "
        + " → ".join(STAGE_NAMES) + ".")
    # the installed distribution's version: importing it from the package's __init__ would close a
    # circle (icurt -> icurt.api -> icurt.cli -> icurt)
    parser.add_argument("--version", action="version", version=f"icurt {metadata.version('icurt')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_options()
    _add_config_commands(sub, common)
    add_runs_command(sub, common)
    add_db_commands(sub, common)
    for row in STAGES:
        _add_stage_command(sub, common, row)
    _add_show_command(sub)
    _add_pipeline_commands(sub, common)
    return parser


def _add_option(parser: argparse.ArgumentParser, option: Option) -> None:
    if option.type is None:
        parser.add_argument(option.flag, dest=option.dest, action="store_true", help=option.help)
    else:
        parser.add_argument(option.flag, dest=option.dest, type=option.type, metavar=option.metavar,
                            choices=option.choices, help=option.help)


def _add_stage_command(sub, common, row: Stage) -> None:
    parser = sub.add_parser(row.name, parents=[common], help=row.summary, description=row.summary)
    if row.input:
        parser.add_argument("--from", dest="from_run", metavar="RUN",
                            help=f"the {row.input} run to read (default: the newest completed one)")
    for option in row.options:
        _add_option(parser, option)
    parser.set_defaults(handler=_run_stage, stage_row=row)


def run_for(store, stage: str, run_id: str, command: str):
    """The completed run `run_id` of `stage`, which `command` (e.g. "icurt train --from") takes; an
    id that names a run of another stage is an IcurtError saying which stage it belongs to."""
    try:
        return store.get(stage, run_id)
    except IcurtError as missing:
        try:
            other = store.find(run_id)
        except IcurtError:
            raise missing from None
        raise IcurtError(f"run '{run_id}' is a {other.stage} run; `{command}` takes a {stage} run "
                         f"(`icurt runs {stage}` lists them)") from None


def resolve_from(store, row: Stage, run_id: str | None):
    """The `--from` run of a stage: a completed run of its input stage (None: the stage's default)."""
    return None if run_id is None else run_for(store, row.input, run_id, f"icurt {row.name} --from")


def _run_stage(args, cfg: Config) -> int:
    from icurt.runs import RunStore

    row: Stage = args.stage_row
    store = RunStore.from_config(cfg)
    input_run = resolve_from(store, row, getattr(args, "from_run", None))
    options = {o.dest: getattr(args, o.dest) for o in row.options if getattr(args, o.dest) is not None}
    run = row.function("run")(cfg, input_run, store=store, **options)
    print(row.function("show")(run, cfg))
    print(f"{row.name} run {run.run_id} written to {run.path}")
    return 0


def _add_show_command(sub) -> None:
    show = sub.add_parser("show", help="look inside a completed run of a stage (never writes to it)",
                          description="look inside a completed run of a stage (never writes to it)")
    stages = show.add_subparsers(dest="show_stage", metavar="STAGE", required=True)
    common = common_options()
    for row in STAGES:
        parser = stages.add_parser(row.name, parents=[common], help=row.show_summary,
                                   description=f"{row.name}: {row.show_summary}")
        parser.add_argument("run_id", nargs="?", metavar="RUN", help=f"the {row.name} run (default: the newest)")
        parser.add_argument("--settings", dest="show_settings", action="store_true",
                            help="print the settings the run was made with (its config.toml, passwords "
                            "redacted) instead")
        for option in row.show_options:
            _add_option(parser, option)
        parser.set_defaults(handler=_show, stage_row=row)


def _show(args, cfg: Config) -> int:
    from icurt.runs import RunStore

    row: Stage = args.stage_row
    store = RunStore.from_config(cfg)
    run = store.latest(row.name) if args.run_id is None else run_for(store, row.name, args.run_id,
                                                                       f"icurt show {row.name}")
    if args.show_settings:
        print(run.file("config.toml").read_text(), end="")
        return 0
    options = {o.dest: getattr(args, o.dest) for o in row.show_options if getattr(args, o.dest) is not None}
    print(row.function("show")(run, cfg, **options))
    return 0


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


def _add_pipeline_commands(sub, common) -> None:
    text = ("run every stage on the configured database, reusing completed stages whose input and settings "
            "are unchanged")
    run = sub.add_parser("run", parents=[common], help=text, description=f"{text}: {' → '.join(STAGE_NAMES)}")
    run.add_argument("--fresh", action="store_true", help="rerun every stage")
    _add_go_on(run, "run")
    run.set_defaults(handler=_run_all)
    text = ("the whole study on this machine: embedded PostgreSQL, a synthetic MIMIC-III cohort, every stage, "
            "an HTML report")
    demo = sub.add_parser("demo", parents=[common], help=text,
                          description=f"{text} (config: configs/demo.toml unless --config names another)")
    demo.add_argument("--stays", type=int, help="synthetic ICU stays (default: [synth].stays of demo.toml)")
    demo.add_argument("--fresh", action="store_true", help="rebuild the cohort and rerun every stage")
    _add_go_on(demo, "demo")
    add_dataset_option(demo, "the cohort in this release's schema, queried with its SQL (default [db].dataset)")
    demo.set_defaults(handler=_demo, config_default="demo")


def _add_go_on(parser, command: str) -> None:
    parser.add_argument("--go-on", action="store_true", help="train and attack the tuned model even when its "
                        "best trial learned nothing (by default the study stops after tune-model then)")
    parser.set_defaults(how_to_go_on=f"icurt {command} --go-on")


def _run_all(args, cfg: Config) -> int:
    from icurt.pipeline import run_pipeline

    _print_outcome(run_pipeline(cfg, fresh=args.fresh, go_on=args.go_on, how_to_go_on=args.how_to_go_on), cfg)
    return 0


def _demo(args, cfg: Config) -> int:
    from icurt.db.connection import resolve_dsn
    from icurt.db.synth.cohort import check_cohort_request
    from icurt.db.synth.state import ensure_synthetic_cohort
    from icurt.pipeline import run_pipeline

    stays = cfg.synth.stays if args.stays is None else args.stays
    check_cohort_request(stays, cfg.synth.seed)
    cfg = with_dataset(with_overrides(cfg, ["db.dsn="]), args.dataset)  # the demo always runs on the embedded server
    started = time.perf_counter()
    log.info("demo: embedded PostgreSQL at %s", resolve_dsn(cfg))
    ensure_synthetic_cohort(cfg, stays=stays, seed=cfg.synth.seed, fresh=args.fresh)
    _print_outcome(run_pipeline(cfg, fresh=args.fresh, go_on=args.go_on, how_to_go_on=args.how_to_go_on), cfg)
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0


def _print_outcome(runs: dict, cfg: Config) -> None:
    """The last stage's headline and, when the attack was tuned, what its tuning score means."""
    last = STAGES[-1]
    if "tune-attack" in runs:
        print(_tuning_score_line(runs["tune-attack"]))
    if last.name in runs:
        print(last.function("show")(runs[last.name], cfg))


def _tuning_score_line(run) -> str:
    from icurt.attack.tuned import read_tuned

    tuned = read_tuned(run)
    unchanged = "the share of (hour, feature) cells it leaves unchanged"
    meaning = {"sparsity": unchanged,
               "max_num_nonzero_perts": "1 if it changes fewer than [tune_attack].n_critical cells, else 0",
               "sparse_small": f"{unchanged} divided by its L1 size (sum of |change|, scaled units)",
               "sparse_small_max": f"{unchanged} divided by its largest change (scaled units)"}
    return (f"tune-attack run {run.run_id}: best trial {tuned.trial}, score {tuned.score:.4g} = the sum, "
            f"over the tuning samples the attack flipped, of objective '{tuned.objective_name}' of each "
            f"one's best example: {meaning.get(tuned.objective_name, 'see icurt/attack/objectives.py')}; "
            "higher is sparser and smaller")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted (not the stream of the moment it
    was made), so a replaced stderr (pytest's capture, a redirect) never receives a closed stream."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _for_the_console(record: logging.LogRecord) -> bool:
    """Records logged with run_log.FILE_ONLY (a run's failure, said once by main) stay in run.log."""
    return getattr(record, "console", True)


def _not_a_detail(record: logging.LogRecord) -> bool:
    """Records logged with run_log.VERBOSE (per-epoch scores) reach the console only with -v."""
    return not getattr(record, "verbose", False)


def configure_logging(debug: bool, quiet: bool, verbose: bool = False) -> None:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    handler.addFilter(RedactingFilter())
    handler.addFilter(_for_the_console)
    if not (verbose or debug):
        handler.addFilter(_not_a_detail)
    log.handlers = [h for h in log.handlers if not isinstance(h, logging.StreamHandler)
                    or isinstance(h, logging.FileHandler)] + [handler]
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler.setLevel(level)   # the console's own: a run's run.log lowers the logger's level to INFO
    log.setLevel(level)
    log.propagate = False


def load_cli_config(args) -> Config:
    path = getattr(args, "config", None) or getattr(args, "config_default", None)
    if path and "/" not in path and not path.endswith(".toml"):
        name, path = path, named_config_path(path)
        if not path.exists():
            if Path(name).is_dir():
                raise IcurtError(f"config file {name} is a folder; pass a TOML file to --config")
            raise IcurtError(f"no shipped config named '{name}'; pass a TOML file path")
    return load_config(path, getattr(args, "overrides", []))


def main(argv: list[str] | None = None) -> int:
    """Run one command. A user's error (a full disk included) is printed once, as one line, with exit
    code 2 (Ctrl-C: 130, SIGTERM: 143); output into a pipe its reader closed (`icurt runs | head -1`)
    ends quietly with exit code 1; an embedded PostgreSQL server the failed command started is
    stopped again."""
    from icurt.db.server import starts_so_far
    from icurt.files import check_data_root, disk_full, disk_full_line
    from icurt.ray_job import check_data_root_in_job

    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    configure_logging(debug, getattr(args, "quiet", False), getattr(args, "verbose", False))
    servers = starts_so_far()  # a server started before this command (in this process) is not its own
    try:
        handle_sigterm()   # before it, a SIGTERM ends the process as usual: no run exists yet
        cfg = load_cli_config(args)
        check_data_root(cfg.paths.data)
        check_data_root_in_job(cfg.paths.data)
        code = int(args.handler(args, cfg) or 0)
        sys.stdout.flush()   # here, so that a closed pipe is met inside this try, not at exit
        return code
    except BrokenPipeError:
        _stop_what_this_command_started(servers)
        return _quiet_after_a_closed_pipe()
    except IcurtError as exc:
        _stop_what_this_command_started(servers)
        if debug:
            raise
        print(f"icurt: error: {redact_dsn(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:   # Ctrl-C, or SIGTERM (icurt.termination.Terminated)
        _stop_what_this_command_started(servers)
        terminated = is_termination(exc)
        print(_interrupted_line(getattr(exc, "icurt_failed_run", None), terminated), file=sys.stderr)
        return TERMINATED_EXIT if terminated else 130
    except BaseException as exc:
        _stop_what_this_command_started(servers)
        full = disk_full(exc)
        if full is None or debug or not isinstance(exc, Exception):
            raise
        print(f"icurt: error: {disk_full_line(full)}", file=sys.stderr)
        return 2


def _quiet_after_a_closed_pipe() -> int:
    """The reader of stdout has gone: point stdout at /dev/null so that Python's own flush at exit
    meets no closed pipe either (the recipe of Python's signal docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):   # a stdout without a file descriptor (captured): nothing to redirect
        pass
    return 1


def _interrupted_line(kept: tuple | None, terminated: bool = False) -> str:
    """The one line of a Ctrl-C or a SIGTERM: the run kept and, where the stage can, how to continue it."""
    what = TERMINATED if terminated else "interrupted"
    if not kept:
        return f"icurt: {what}"
    stage_name, run_id, folder = kept
    resumable = any(option.flag == "--resume" for option in stage_row(stage_name).options)
    then = (f"continue it with `icurt {stage_name} --resume {run_id}`" if resumable
            else "`icurt runs --failed` lists it")
    return f"icurt: {what}; {stage_name} run {run_id} is kept as {folder} ({then})"


def _stop_what_this_command_started(mark: int) -> None:
    from icurt.db.server import stop_started_since

    try:
        for server in stop_started_since(mark):
            log.info("stopped the embedded PostgreSQL this command had started (data kept in %s)", server.pgdata)
    except Exception as exc:  # the command's own error is the one to report
        log.debug("could not stop the embedded PostgreSQL: %s", exc)


if __name__ == "__main__":
    sys.exit(main())
