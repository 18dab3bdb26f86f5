"""Runs that did not complete: a .failed- folder (the stage raised or was interrupted) or a .tmp-
folder (still being written, or left by a process that died), and the one line on why a run stopped.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from icurt.errors import IcurtError
from icurt.files import disk_full, disk_full_line, read_json
from icurt.processes import ProcessId, process_alive, still_running
from icurt.termination import REASON as TERMINATED, is_termination

TMP_PREFIX, FAILED_PREFIX = ".tmp-", ".failed-"


@dataclass(frozen=True)
class Unfinished:
    """A run that did not complete: failed, left by a process that died, or still running."""

    stage: str
    run_id: str
    path: Path
    state: str      # "failed", "killed" (its process is gone), "running", or "damaged" (a completed
                    # run whose run.json cannot be read: RunStore.damaged)
    error: str      # why it failed ("" when unknown)


def unfinished_run(stage: str, path: Path) -> Unfinished:
    """The run a .failed- or .tmp- folder `path` of `stage` holds (a damaged run.json: no error, its
    process taken as gone)."""
    failed = path.name.startswith(FAILED_PREFIX)
    run_id = path.name[len(FAILED_PREFIX if failed else TMP_PREFIX):]
    try:
        meta = read_json(path / "run.json")
    except (OSError, IcurtError):
        meta = {}
    meta = meta if isinstance(meta, dict) else {}
    if failed:
        state = "failed"
    else:
        state = "running" if writer_alive(meta) else "killed"
    return Unfinished(stage, run_id, path, state, str(meta.get("error", "")))


def writer_alive(meta: dict) -> bool:
    """Whether the process that is writing a .tmp- run still lives (on another host: assume it does)."""
    pid, started = meta.get("pid"), meta.get("pid_started")
    if not isinstance(pid, int):
        return False
    if meta.get("host") != socket.gethostname():
        return True
    return still_running(ProcessId(pid, started)) is not None if started else process_alive(pid)


def failure_reason(exc: BaseException) -> str:
    """One line on why a run stopped (SIGTERM, Ctrl-C, a full disk and a bare exception get words of
    their own)."""
    if is_termination(exc):
        return TERMINATED
    full = disk_full(exc)
    if full is not None:
        return disk_full_line(full)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C or SIGINT)"
    if isinstance(exc, SystemExit):
        return f"the process was asked to exit (code {exc.code})"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, IcurtError) and text else text or type(exc).__name__
