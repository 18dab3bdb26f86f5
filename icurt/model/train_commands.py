"""`icurt train [--from TUNE_RUN] [--trial N]` and `icurt train-summary [RUN]`."""

from __future__ import annotations

from icurt.config import Config


def add_commands(sub, common) -> None:
    train = sub.add_parser("train", parents=[common], help="stage 4: k-fold cross-validation of the "
                           "tuned LSTM on Ray Train, the best checkpoint per fold, mean ± sd of metrics")
    train.add_argument("--from", dest="from_run", metavar="RUN_ID",
                       help="the tune-model run whose hyperparameters to train (default: the newest)")
    train.add_argument("--trial", type=int, metavar="N",
                       help="use trial N of that run (its trials.parquet) instead of its best trial")
    train.set_defaults(handler=_train)
    summary = sub.add_parser("train-summary", parents=[common], help="print a train run's best checkpoint "
                             "per fold and mean ± sd of every metric (also written to its summary.txt)")
    summary.add_argument("run_id", nargs="?", metavar="RUN",
                         help="the train run (default: the newest completed one)")
    summary.set_defaults(handler=_train_summary)


def _train(args, cfg: Config) -> int:
    from icurt.model.crossval import run
    from icurt.model.summary import SUMMARY_TXT
    from icurt.runs import RunStore

    store = RunStore.from_config(cfg)
    result = run(cfg, tune_run=store.resolve("tune-model", args.from_run), trial=args.trial, store=store)
    print(result.file(SUMMARY_TXT).read_text(), end="")
    print(f"train run {result.run_id} written to {result.path}")
    return 0


def _train_summary(args, cfg: Config) -> int:
    from icurt.model.summary import write_summary_text
    from icurt.runs import RunStore

    run = RunStore.from_config(cfg).resolve("train", args.run_id)
    print(f"train run {run.run_id}")
    print(write_summary_text(run.path), end="")
    return 0
