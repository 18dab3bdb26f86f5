"""SIGTERM (`kill`, `ray job stop`, Kubernetes, SLURM) as an interruption, like Ctrl-C.

Python's default ends the process on SIGTERM at once, and ray.init replaces any handler with Ray's
own, which tears the local Ray down under the running driver and exits (the run then reads "asked
to exit (code 1)", often after a SIGABRT with Ray's C++ stack dump). icurt's handler raises
`Terminated`, a KeyboardInterrupt, so every stage stops as it does on Ctrl-C: its run is kept as
.failed-<id> with the reason "terminated (SIGTERM)" and the command prints one line and exits
with 128 + 15 = 143. `icurt.cli.main` installs the handler; `keeping_sigterm_handler` puts it back
after ray.init (icurt/ray_runtime.py); inside a Ray Tune run icurt/tune_interrupt.py takes over.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

REASON = "terminated (SIGTERM)"
EXIT_CODE = 128 + signal.SIGTERM
_received = threading.Event()   # Ray's ray.get/ray.wait turn Terminated into a plain KeyboardInterrupt


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""


def raise_terminated(signum=signal.SIGTERM, frame=None):
    """The SIGTERM handler: remember the signal and raise Terminated."""
    _received.set()
    raise Terminated


def note_sigterm() -> None:
    """Remember that SIGTERM arrived (a handler that stops Ray Tune first raises later)."""
    _received.set()


def is_termination(exc: BaseException) -> bool:
    """Whether `exc` is the interruption a SIGTERM caused (Terminated, or a KeyboardInterrupt raised
    after SIGTERM arrived)."""
    return isinstance(exc, Terminated) or (isinstance(exc, KeyboardInterrupt) and _received.is_set())


def handle_sigterm() -> None:
    """SIGTERM raises Terminated in this process from now on, and an earlier SIGTERM is forgotten (a
    command starts); a SIGTERM the process ignores stays ignored, and outside the main thread (where
    no handler can be set) the handler stays as it is."""
    _received.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, raise_terminated)


@contextmanager
def keeping_sigterm_handler() -> Iterator[None]:
    """Around a call that replaces the SIGTERM handler (ray.init): icurt's handler, or an ignored
    SIGTERM, is put back after it (any other handler is left to the call)."""
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        ours = before is raise_terminated or before is signal.SIG_IGN
        if ours and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, before)
