"""Ctrl-C or SIGTERM during a Ray Tune run (tuning studies, the train stage's folds) as an interruption.

Ray Tune takes SIGINT inside `tuner.fit()` as "stop the experiment" and returns normally, so a
caller sees trials that merely did not finish (or a fold without a checkpoint) and would report an
error instead of an interruption. Inside `sigint_stops_tune()` the first SIGINT or SIGTERM asks
Tune to stop through the SIGUSR1 handler Tune installs for that purpose (running trials end, none
start) and sets the yielded event, which records the signal; the caller tidies up (e.g. records
its trials) and calls `raise_if_interrupted`, so the run is kept as interrupted (or terminated)
and the command exits 130 (143) like every other stage. A second signal raises at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from icurt.termination import Terminated, note_sigterm

log = logging.getLogger("icurt")
SAID = {signal.SIGINT: ("interrupted", "Ctrl-C again"), signal.SIGTERM: ("terminated (SIGTERM)", "a second SIGTERM")}


class Interruption(threading.Event):
    """Set when a signal asked Ray Tune to stop; `signum` is that signal."""

    signum: int = signal.SIGINT


@contextmanager
def sigint_stops_tune() -> Iterator[Interruption]:
    """Within the block, SIGINT and SIGTERM stop Ray Tune gracefully and set the yielded event (see
    the module docstring); a signal the process ignores stays ignored. Outside the main thread
    (where no signal handler can be set) it only yields."""
    interrupted = Interruption()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return

    def on_signal(signum, frame):
        tune_listens = signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        if signum == signal.SIGTERM:
            note_sigterm()
        if interrupted.is_set() or not tune_listens:   # not inside tuner.fit(): stop here and now
            raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt
        interrupted.signum = signum
        interrupted.set()
        what, again = SAID[signum]
        log.warning("%s: stopping the running trials (%s stops at once)", what, again)
        os.kill(os.getpid(), signal.SIGUSR1)

    previous_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"   # Tune would take SIGINT from this handler
    # A command started in the background by a shell ignores SIGINT; so does every other stage then.
    previous = {signum: signal.getsignal(signum) for signum in SAID}
    for signum, handler in previous.items():
        signal.signal(signum, signal.SIG_IGN if handler is signal.SIG_IGN else on_signal)
    try:
        yield interrupted
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)   # None: set outside Python
        if previous_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous_env


def raise_if_interrupted(interrupted: Interruption) -> None:
    """KeyboardInterrupt (Terminated after a SIGTERM) when `interrupted` (from sigint_stops_tune) is set."""
    if interrupted.is_set():
        raise Terminated if interrupted.signum == signal.SIGTERM else KeyboardInterrupt
