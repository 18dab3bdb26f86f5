"""Processes a command records, so that a later command can tell whether they still live and end
those that a killed command left behind. A process is named by its pid and its start time, so a
pid that the system has since given to another process is never mistaken for it."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import psutil

log = logging.getLogger("icurt")


@dataclass(frozen=True)
class ProcessId:
    pid: int
    started: float  # psutil's create_time(), seconds since the epoch

    @classmethod
    def of(cls, process: psutil.Process) -> "ProcessId":
        return cls(process.pid, process.create_time())

    @classmethod
    def this(cls) -> "ProcessId":
        return cls.of(psutil.Process())

    def as_dict(self) -> dict:
        return asdict(self)


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists (a zombie counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def still_running(process: ProcessId) -> psutil.Process | None:
    """The recorded process if it still runs (same pid, same start time), else None."""
    try:
        found = psutil.Process(process.pid)
        if abs(found.create_time() - process.started) < 0.05 and found.status() != psutil.STATUS_ZOMBIE:
            return found
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return None


def descendants(pid: int) -> list[psutil.Process]:
    """Every living child, grandchild... of process `pid`."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def processes_mentioning(text: str) -> list[psutil.Process]:
    """This user's processes whose command line contains `text` (e.g. a Ray session's folder)."""
    found = []
    for process in psutil.process_iter(["cmdline", "uids"]):
        try:
            if process.info["uids"] and process.info["uids"].real != psutil.Process().uids().real:
                continue
            if any(text in part for part in process.info["cmdline"] or ()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def end_processes(processes: list[psutil.Process], grace_s: float = 5.0) -> int:
    """SIGTERM these processes, SIGKILL those still alive after `grace_s`; returns how many ended."""
    alive = []
    for process in processes:
        try:
            process.terminate()
            alive.append(process)
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            log.warning("cannot end process %d (no permission)", process.pid)
    _, still = psutil.wait_procs(alive, timeout=grace_s)
    for process in still:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(still, timeout=grace_s)
    return len(alive)
