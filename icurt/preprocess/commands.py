"""`icurt preprocess [--from QUERY_RUN] [--engine modin|pandas]` and `icurt inspect preprocess [RUN]`."""

from __future__ import annotations

from icurt.config import Config


def add_commands(sub, common) -> None:
    pre = sub.add_parser("preprocess", parents=[common], help="stage 2: a query run → (N, 48, 19) "
                         "features and mortality labels (Modin on Ray by default)")
    pre.add_argument("--from", dest="from_", metavar="QUERY_RUN",
                     help="the query run to read (default: the newest)")
    pre.add_argument("--engine", choices=("modin", "pandas"),
                     help="dataframe engine (default: [preprocess].engine)")
    pre.set_defaults(handler=_preprocess)
    inspect = _inspect_parser(sub)
    show = inspect.add_parser("preprocess", parents=[common], help="samples, labels, distributions "
                              "and per-feature values of a preprocess run")
    show.add_argument("run", nargs="?", metavar="RUN", help="preprocess run id (default: the newest)")
    show.set_defaults(handler=_inspect)


def _inspect_parser(sub):
    """The `inspect` subcommand's sub-parsers, shared with other stages that add their own."""
    parser = sub.choices.get("inspect")
    if parser is None:
        parser = sub.add_parser("inspect", help="look inside a run of a stage")
        parser._icurt_actions = parser.add_subparsers(dest="inspect_stage", metavar="STAGE",
                                                      required=True)
    return parser._icurt_actions


def _preprocess(args, cfg: Config) -> int:
    from icurt.preprocess.stage import run
    from icurt.runs import RunStore

    store = RunStore.from_config(cfg)
    result = run(cfg, query_run=store.resolve("query", args.from_), engine=args.engine, store=store)
    print(f"preprocess run {result.run_id} written to {result.path}")
    return 0


def _inspect(args, cfg: Config) -> int:
    from icurt.preprocess.inspect import describe
    from icurt.runs import RunStore

    print(describe(RunStore.from_config(cfg).resolve("preprocess", args.run)))
    return 0
