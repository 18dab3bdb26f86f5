"""Signals in tests that run `icurt` in a child process."""

import re
import signal

# what `icurt` says and does when a stop signal ends it: exit code, the one line's first words, the
# reason its run keeps in run.json (icurt/cli.py, icurt/runs.py, icurt/termination.py)
STOPPED = {signal.SIGINT: (130, "interrupted", "interrupted (Ctrl-C or SIGINT)"),
           signal.SIGTERM: (143, "terminated (SIGTERM)", "terminated (SIGTERM)")}
STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM]


def sigint_as_a_terminal_gives_it():
    """preexec_fn for a child that a test interrupts: SIGINT at its default, even when the test run
    was started in the background by a shell (which makes every child ignore SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kept_line(signum, stage: str, run_id: str, folder, resumable: bool) -> str:
    """The one line `icurt` ends with when `signum` stopped a run of `stage` (kept in `folder`)."""
    then = f"continue it with `icurt {stage} --resume {run_id}`" if resumable else "`icurt runs --failed` lists it"
    return f"icurt: {STOPPED[signum][1]}; {stage} run {run_id} is kept as {folder} ({then})"


def assert_one_clean_line(err: str, signum) -> None:
    """Exactly one `icurt:` line on stderr, the last one, naming the stop; no traceback, no Ray
    crash (SIGABRT and its C++ stack dump), no second report of the failure."""
    lines = err.strip().splitlines()
    said = [line for line in lines if line.startswith("icurt:")]
    assert said == [lines[-1]] and said[0].startswith(f"icurt: {STOPPED[signum][1]}"), err[-3000:]
    assert "Traceback" not in err and "SIGABRT" not in err and " failed:" not in err, err[-3000:]
    assert not [line for line in lines if re.match(r"\s*\*\*\* ", line)], err[-3000:]
