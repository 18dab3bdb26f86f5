"""A run's run.log: icurt's log records written beside the run, passwords redacted, a full disk
never turning a record into a traceback."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from icurt.dsn import RedactingFilter
from icurt.files import disk_full

FILE_ONLY = {"console": False}  # `extra=` of a log record meant for run.log, not the console
VERBOSE = {"verbose": True}     # `extra=` of a detail (one epoch's scores): run.log, and the console with -v
log = logging.getLogger("icurt")


class _RunLog(logging.FileHandler):
    """run.log. A record it cannot write for a full disk is dropped: logging would print its own
    traceback over the command's one line."""

    def handleError(self, record: logging.LogRecord) -> None:
        if disk_full(sys.exc_info()[1]) is None:
            super().handleError(record)


def attach_log(path: Path) -> logging.Handler:
    """Log icurt's records (INFO and up, passwords redacted) to run.log at `path` too."""
    handler = _RunLog(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler) -> None:
    """Stop logging to a run.log attach_log started, and close it."""
    log.removeHandler(handler)
    try:
        handler.close()
    except OSError:   # its last lines could not be flushed (a full disk): they are lost, not the run
        pass
