"""Ctrl-C inside a Ray Tune run: the first SIGINT goes to Tune's own stop signal (SIGUSR1) and is
remembered, a second one, or one while Tune is not listening, interrupts at once. Real signals,
no Ray: a SIGUSR1 handler stands in for the one Tune installs in tuner.fit()."""

import os
import signal

import pytest

from icurt.tune_interrupt import raise_if_interrupted, sigint_stops_tune


@pytest.fixture
def sigusr1():
    """Restores SIGUSR1; SIGINT starts as Python's own handler (a test run started in the background
    by a shell would otherwise ignore it) and is restored too."""
    previous, previous_int = signal.getsignal(signal.SIGUSR1), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGUSR1, previous)
    signal.signal(signal.SIGINT, previous_int)


def test_the_first_sigint_asks_tune_to_stop_and_the_second_interrupts(sigusr1):
    asked = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: asked.append(signum))
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        with sigint_stops_tune() as interrupted:
            os.kill(os.getpid(), signal.SIGINT)
            assert asked == [signal.SIGUSR1] and interrupted.is_set()   # Tune's stop, no exception yet
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
            os.kill(os.getpid(), signal.SIGINT)                         # a second Ctrl-C: at once
            pytest.fail("the second SIGINT did not interrupt")
    assert asked == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGINT) is before and "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ


def test_after_the_block_the_remembered_sigint_is_an_interruption(sigusr1):
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    with sigint_stops_tune() as interrupted:
        raise_if_interrupted(interrupted)          # nothing happened: no interruption
        os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        raise_if_interrupted(interrupted)


def test_with_no_tune_listening_a_sigint_interrupts_at_once(sigusr1):
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)   # SIGUSR1's default would end the process
    with pytest.raises(KeyboardInterrupt):
        with sigint_stops_tune() as interrupted:
            os.kill(os.getpid(), signal.SIGINT)
    assert not interrupted.is_set()


def test_a_process_that_ignores_sigint_keeps_ignoring_it(sigusr1):
    asked = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: asked.append(signum))
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)   # as a shell starts a background job
    try:
        with sigint_stops_tune() as interrupted:
            os.kill(os.getpid(), signal.SIGINT)
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert not interrupted.is_set() and asked == []
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
