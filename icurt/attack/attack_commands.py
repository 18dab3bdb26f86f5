"""`icurt attack [--from TUNE_ATTACK_RUN]`: stage 6, the sharded full attack."""

from __future__ import annotations

from icurt.config import Config


def add_commands(sub, common) -> None:
    attack = sub.add_parser("attack", parents=[common], help="stage 6: the tuned sparse attack on the whole "
                            "dataset, sharded over Ray actors (one per GPU, else per CPU slot)")
    attack.add_argument("--from", dest="from_run", metavar="RUN_ID",
                        help="the tune-attack run to use (default: the newest completed one)")
    attack.set_defaults(handler=_attack)


def _attack(args, cfg: Config) -> int:
    from icurt.attack.full import run
    from icurt.runs import RunStore

    store = RunStore.from_config(cfg)
    result = run(cfg, store.resolve("tune-attack", args.from_run), store=store)
    summary = result.meta.get("summary", {})
    print(f"attack run {result.run_id} written to {result.path}: {summary.get('successes', 0)} adversarial "
          f"examples from {summary.get('attacked', 0)} attacked of {summary.get('samples', 0)} samples")
    return 0
