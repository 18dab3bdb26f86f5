"""`icurt tune-model` (stage 3) and `icurt show-hparams`."""

from __future__ import annotations

from icurt.config import Config


def add_commands(sub, common) -> None:
    tune = sub.add_parser("tune-model", parents=[common], help="stage 3: tune the LSTM's hyperparameters "
                          "with Ray Tune + Optuna (TPE, study in PostgreSQL) + ASHA")
    tune.add_argument("--from", dest="from_run", metavar="RUN_ID",
                      help="the preprocess run to tune on (default: the newest completed one)")
    tune.add_argument("--resume", metavar="RUN_ID", help="continue an interrupted tune-model run and its "
                      "Optuna study until it has [tune_model].num_trials finished trials")
    tune.set_defaults(handler=_tune_model)
    show = sub.add_parser("show-hparams", parents=[common], help="print a tune-model trial's "
                          "hyperparameters and objective (the best trial by default)")
    show.add_argument("run_id", nargs="?", metavar="RUN_ID", help="tune-model run (default: the newest)")
    show.add_argument("--trial", type=int, metavar="N", help="trial number (see trials.parquet)")
    show.set_defaults(handler=_show_hparams)


def _tune_model(args, cfg: Config) -> int:
    from icurt.model.tune import run
    from icurt.runs import RunStore

    store = RunStore.from_config(cfg)
    source = store.resolve("preprocess", args.from_run) if args.from_run else None
    result = run(cfg, source, resume_id=args.resume, store=store)
    print(f"tune-model run {result.run_id} written to {result.path}")
    return 0


def _show_hparams(args, cfg: Config) -> int:
    from icurt.model.tune import search_space
    from icurt.runs import RunStore
    from icurt.tuning import describe_trial

    run = RunStore.from_config(cfg).resolve("tune-model", args.run_id)
    print(describe_trial(run, args.trial, "min", "val_loss", search_space(cfg.tune_model)))
    return 0
