"""Signals in tests that run `icurt` in a child process."""

import signal


def sigint_as_a_terminal_gives_it():
    """preexec_fn for a child that a test interrupts: SIGINT at its default, even when the test run
    was started in the background by a shell (which makes every child ignore SIGINT)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
