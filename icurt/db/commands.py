"""`icurt db ...`: the embedded server, the synthetic cohort and the CSV loader."""

from __future__ import annotations

from icurt.config import Config
from icurt.dsn import redact_dsn


def add_commands(sub, common) -> None:
    text = "the PostgreSQL database: embedded server, synthetic cohort, CSV loader"
    db = sub.add_parser("db", help=text, description=text)
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    for name, handler, text in [
        ("start", _start, "start the embedded server (reused when it is already up)"),
        ("status", _status, "say whether the database is reachable"),
        ("stop", _stop, "stop the embedded server"),
    ]:
        db_sub.add_parser(name, parents=[common], help=text, description=text).set_defaults(handler=handler)
    text = "print the database URL (password masked)"
    url = db_sub.add_parser("url", parents=[common], help=text, description=text)
    url.add_argument("--optuna", action="store_true", help="the SQLAlchemy URL of the Optuna storage instead "
                     "(what optuna-dashboard takes)")
    url.add_argument("--show-password", action="store_true", help="print the password instead of ***")
    url.set_defaults(handler=_url)
    text = "fill the schema with a synthetic MIMIC-III- or MIMIC-IV-shaped cohort (replaces the schema)"
    synth = db_sub.add_parser("synth", parents=[common], help=text, description=text)
    synth.add_argument("--stays", type=int, help="number of ICU stays (default [synth].stays)")
    synth.add_argument("--seed", type=int, help="random seed (default [synth].seed)")
    add_dataset_option(synth, "write the cohort in this release's schema: mimic-iii into [db].schema, "
                       "mimic-iv into [db].hosp_schema and [db].icu_schema (default [db].dataset)")
    synth.set_defaults(handler=_synth)
    text = "build the schema from PhysioNet's MIMIC-III or MIMIC-IV CSV files (.csv or .csv.gz)"
    load = db_sub.add_parser("load-csv", parents=[common], help=text, description=text)
    load.add_argument("folder", help="MIMIC-III: folder holding ADMISSIONS.csv(.gz), PATIENTS..., ICUSTAYS..., "
                      "CHARTEVENTS..., LABEVENTS..., D_ITEMS..., D_LABITEMS...; MIMIC-IV: the release folder "
                      "holding hosp/ and icu/ (loaded into [db].hosp_schema and [db].icu_schema)")
    load.set_defaults(handler=_load_csv)


def add_dataset_option(parser, text: str) -> None:
    from icurt.config_sections import DATASETS

    parser.add_argument("--dataset", choices=DATASETS, help=text)


def with_dataset(cfg: Config, dataset: str | None) -> Config:
    """cfg with [db].dataset set to `dataset` (unchanged when None)."""
    from icurt.config import with_overrides

    return cfg if dataset is None else with_overrides(cfg, [f"db.dataset={dataset}"])


def _synth(args, cfg: Config) -> int:
    from icurt.db.synth.cohort import run_synth

    cfg = with_dataset(cfg, args.dataset)
    run_synth(cfg, stays=cfg.synth.stays if args.stays is None else args.stays,
              seed=cfg.synth.seed if args.seed is None else args.seed)
    return 0


def _load_csv(args, cfg: Config) -> int:
    from icurt.db.load_csv import load_csv

    load_csv(cfg, args.folder)
    return 0


def _start(args, cfg: Config) -> int:
    from icurt.db.connection import resolve_dsn

    if cfg.db.dsn:
        print(f"a DSN is configured ({redact_dsn(cfg.db.dsn)}); the embedded server is not used")
        return _status(args, cfg)
    print(f"embedded PostgreSQL running at {resolve_dsn(cfg)}")
    return 0


def _status(args, cfg: Config) -> int:
    from icurt.db.connection import connect
    from icurt.db.server import embedded_server

    if cfg.db.dsn:
        conn = connect(cfg.db.dsn, timeout_s=cfg.db.connect_timeout_s)
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            version = cur.fetchone()[0]
        conn.close()
        print(f"reachable: PostgreSQL {version} at {redact_dsn(cfg.db.dsn)}")
        return 0
    status = embedded_server(cfg.paths.data, cfg.db.embedded_port).status()
    if status.running:
        print(f"embedded PostgreSQL running (pid {status.pid}) at {status.url}, data in {status.pgdata}")
        return 0
    print(f"embedded PostgreSQL not running (data in {status.pgdata}); `icurt db start` starts it")
    return 1


def _stop(args, cfg: Config) -> int:
    from icurt.db.server import embedded_server

    server = embedded_server(cfg.paths.data, cfg.db.embedded_port)
    if server.stop():
        print(f"embedded PostgreSQL stopped (data kept in {server.pgdata})")
    else:
        print(f"no embedded PostgreSQL is running under {server.root}; nothing to stop")
    return 0


def _url(args, cfg: Config) -> int:
    from icurt.db.connection import embedded_optuna_dsn, sqlalchemy_url
    from icurt.db.server import embedded_server

    def shown(dsn: str) -> str:
        url = sqlalchemy_url(dsn) if args.optuna else dsn
        return url if args.show_password else redact_dsn(url)

    configured = (cfg.db.optuna_dsn or cfg.db.dsn) if args.optuna else cfg.db.dsn
    if configured:
        print(shown(configured))
        return 0
    status = embedded_server(cfg.paths.data, cfg.db.embedded_port).status()
    url = status.url and (embedded_optuna_dsn(status.url) if args.optuna else status.url)
    if not status.running:
        once_started = shown(url) if url else "(port chosen at start)"
        print(f"embedded PostgreSQL not running; its URL once started: {once_started}")
        return 1
    print(shown(url))
    return 0
