"""`icurt runs`: completed runs with their lineage; failed, killed and running ones (`--failed`);
deleting the failed and killed ones (`icurt runs prune`)."""

from __future__ import annotations

from icurt.config import Config
from icurt.errors import IcurtError
from icurt.stage_table import STAGE_NAMES


def add_runs_command(sub, common) -> None:
    runs = sub.add_parser("runs", parents=[common], help="list runs, newest first, with their lineage "
                          "(`icurt runs prune` deletes failed ones)",
                          description="`icurt runs [STAGE]` lists completed runs; `--failed` lists failed, "
                          "killed and running ones; `icurt runs prune [STAGE]` deletes the failed and killed "
                          "ones (never a run still being written).")
    runs.add_argument("words", nargs="*", metavar="[prune] [STAGE]",
                      help=f"`prune` to delete failed runs; a stage ({', '.join(STAGE_NAMES)}) for its runs only")
    runs.add_argument("--failed", action="store_true", help="list failed, killed and running runs instead")
    runs.add_argument("--all", action="store_true", help="list completed runs, then failed, killed and running ones")
    runs.set_defaults(handler=_runs)


def _runs(args, cfg: Config) -> int:
    from icurt.runs import RunStore
    from icurt.stage_table import stage as stage_row

    words = list(args.words)
    prune = bool(words) and words[0] == "prune"
    words = words[1:] if prune else words
    if len(words) > 1:
        raise IcurtError(f"`icurt runs` takes at most one stage, got {' '.join(words)}")
    stage = stage_row(words[0]).name if words else None
    store = RunStore.from_config(cfg)
    if prune:
        gone = store.prune(stage)
        for run in gone:
            print(f"deleted {run.stage} run {run.run_id} ({run.state})")
        print(f"{len(gone)} failed or killed run(s) deleted under {store.root}" if gone else
              f"nothing to prune under {store.root}" + (f" for {stage}" if stage else ""))
        return 0
    if not args.failed:
        _print_completed(store, stage)
    if args.failed or args.all:
        _print_unfinished(store, stage)
    return 0


def _print_completed(store, stage: str | None) -> None:
    """Completed runs, newest first, with their lineage; one whose run.json cannot be read is
    marked `damaged` in its place instead of failing the listing."""
    found = store.list(stage) + store.damaged(stage)
    if not found:
        unfinished = len(store.unfinished(stage))
        print(f"no completed runs under {store.root}" + (f" for {stage}" if stage else "")
              + (f" ({unfinished} failed or running: `icurt runs --failed`)" if unfinished else ""))
    for run in sorted(found, key=lambda r: r.run_id, reverse=True):
        if getattr(run, "state", "") == "damaged":
            print(f"{run.stage:<12} {run.run_id}  damaged: {run.error}")
            continue
        lineage = " ← ".join(f"{r.stage} {r.run_id}" for r in store.lineage(run)[1:])
        print(f"{run.stage:<12} {run.run_id}  {run.meta.get('finished', '')}"
              + (f"  from {lineage}" if lineage else ""))


def _print_unfinished(store, stage: str | None) -> None:
    from icurt.stage_table import RESUME, stage as stage_row

    found = store.unfinished(stage)
    if not found:
        print(f"no failed or running runs under {store.root}" + (f" for {stage}" if stage else ""))
    for run in found:
        why = run.error or ("its process is gone" if run.state == "killed" else "")
        resumable = (RESUME in stage_row(run.stage).options and run.state != "running"
                     and "--resume" not in why)   # a tuning error already says how to resume
        print(f"{run.stage:<12} {run.run_id}  {run.state:<7}  {why}"
              + (f"  (`icurt {run.stage} --resume {run.run_id}` continues it)" if resumable else ""))
