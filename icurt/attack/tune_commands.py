"""`icurt tune-attack` (stage 5) and `icurt show-attack-hparams`."""

from __future__ import annotations

from icurt.config import Config


def add_commands(sub, common) -> None:
    tune = sub.add_parser("tune-attack", parents=[common], help="stage 5: tune the sparse attack's "
                          "hyperparameters with Ray Tune + Optuna (TPE, study in PostgreSQL) + ASHA")
    tune.add_argument("--from", dest="from_run", metavar="RUN_ID",
                      help="the train run whose model is attacked (default: the newest completed one)")
    tune.add_argument("--fold", type=int, metavar="K", help="which fold's model (default [tune_attack].fold)")
    tune.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted tune-attack run and its "
                      "Optuna study until it has [tune_attack].num_trials finished trials")
    tune.set_defaults(handler=_tune_attack)
    show = sub.add_parser("show-attack-hparams", parents=[common], help="print a tune-attack trial's "
                          "hyperparameters and score (the best trial by default)")
    show.add_argument("run_id", nargs="?", metavar="RUN_ID", help="tune-attack run (default: the newest)")
    show.add_argument("--trial", type=int, metavar="N", help="trial number (see trials.parquet)")
    show.set_defaults(handler=_show_attack_hparams)


def _tune_attack(args, cfg: Config) -> int:
    from icurt.attack.tune import run
    from icurt.runs import RunStore

    store = RunStore.from_config(cfg)
    source = store.resolve("train", args.from_run) if args.from_run else None
    result = run(cfg, source, fold=args.fold, resume_id=args.resume, store=store)
    print(f"tune-attack run {result.run_id} written to {result.path}")
    return 0


def _show_attack_hparams(args, cfg: Config) -> int:
    import tomllib

    from icurt.attack.tune import search_space
    from icurt.runs import RunStore
    from icurt.tuning import describe_trial

    run = RunStore.from_config(cfg).resolve("tune-attack", args.run_id)
    objective = tomllib.loads(run.file("config.toml").read_text())["tune_attack"]["objective"]
    metric = f"score ({objective})"
    print(describe_trial(run, args.trial, "max", metric, search_space(cfg.tune_attack)))
    return 0
