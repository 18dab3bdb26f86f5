"""`icurt analyze [--from ATTACK_RUN]`: statistics, plots and the HTML report of an attack run."""

from __future__ import annotations

from icurt.config import Config


def add_commands(sub, common) -> None:
    analyze = sub.add_parser("analyze", parents=[common], help="stage 7: attack statistics, "
                             "susceptibility by feature and hour, PNG plots and one HTML report")
    analyze.add_argument("--from", dest="from_run", metavar="RUN_ID",
                         help="the attack run to analyse (default: the newest completed one)")
    analyze.set_defaults(handler=_analyze)


def _analyze(args, cfg: Config) -> int:
    import json

    import pandas as pd

    from icurt.analysis.report import headline_text
    from icurt.analysis.stage import run
    from icurt.runs import RunStore

    store = RunStore.from_config(cfg)
    result = run(cfg, attack_run=store.resolve("attack", args.from_run), store=store)
    rows = json.loads(result.file("headline.json").read_text())["rows"]
    print(headline_text(pd.DataFrame(rows)))
    print(f"report: {result.file('report.html').resolve()}")
    return 0
