"""Ctrl-C during a Ray Tune run (tuning studies, the train stage's folds) as an interruption.

Ray Tune takes SIGINT inside `tuner.fit()` as "stop the experiment" and returns normally, so a
caller sees trials that merely did not finish (or a fold without a checkpoint) and would report an
error instead of an interruption. Inside `sigint_stops_tune()` the first SIGINT asks Tune to stop
through the SIGUSR1 handler Tune installs for that purpose (running trials end, none start) and
sets the yielded event; the caller tidies up (e.g. records its trials) and calls
`raise_if_interrupted`, so the run is kept as interrupted and the command exits 130 like every
other stage. A second SIGINT raises KeyboardInterrupt at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger("icurt")


@contextmanager
def sigint_stops_tune() -> Iterator[threading.Event]:
    """Within the block, SIGINT stops Ray Tune gracefully and sets the yielded event (see the module
    docstring); a SIGINT the process ignores stays ignored. Outside the main thread (where no signal
    handler can be set) it only yields."""
    interrupted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    # A command started in the background by a shell ignores SIGINT; so does every other stage then.
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN

    def on_sigint(signum, frame):
        tune_listens = signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        if interrupted.is_set() or not tune_listens:   # not inside tuner.fit(): stop here and now
            raise KeyboardInterrupt
        interrupted.set()
        log.warning("interrupted: stopping the running trials (Ctrl-C again to stop at once)")
        os.kill(os.getpid(), signal.SIGUSR1)

    previous_env = os.environ.get("TUNE_DISABLE_SIGINT_HANDLER")
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"   # Tune would take SIGINT from this handler
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN if ignored else on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)
        if previous_env is None:
            os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)
        else:
            os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = previous_env


def raise_if_interrupted(interrupted: threading.Event) -> None:
    """KeyboardInterrupt when `interrupted` (from sigint_stops_tune) is set."""
    if interrupted.is_set():
        raise KeyboardInterrupt
