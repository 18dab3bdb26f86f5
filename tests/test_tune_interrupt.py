"""Ctrl-C or SIGTERM inside a Ray Tune run: the first SIGINT or SIGTERM goes to Tune's own stop
signal (SIGUSR1) and is remembered, a second one, or one while Tune is not listening, interrupts at
once (a SIGTERM as icurt.termination.Terminated). Real signals, no Ray: a SIGUSR1 handler stands in
for the one Tune installs in tuner.fit()."""

import os
import signal

import pytest

from icurt.termination import Terminated, handle_sigterm, is_termination
from icurt.tune_interrupt import raise_if_interrupted, sigint_stops_tune

STOPS = [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)]
IDS = ["SIGINT", "SIGTERM"]


@pytest.fixture
def sigusr1():
    """Restores SIGUSR1 and SIGTERM; SIGINT starts as Python's own handler (a test run started in the
    background by a shell would otherwise ignore it) and is restored too."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    handle_sigterm()   # forgets this test's SIGTERM (later KeyboardInterrupts in this process are Ctrl-Cs)
    for signum, handler in previous.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum,raised", STOPS, ids=IDS)
def test_the_first_signal_asks_tune_to_stop_and_the_second_interrupts(sigusr1, signum, raised):
    asked = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: asked.append(signum))
    before = signal.getsignal(signum)
    with pytest.raises(raised):
        with sigint_stops_tune() as interrupted:
            os.kill(os.getpid(), signum)
            assert asked == [signal.SIGUSR1] and interrupted.is_set()   # Tune's stop, no exception yet
            assert interrupted.signum == signum
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
            os.kill(os.getpid(), signum)                                # a second one: at once
            pytest.fail("the second signal did not interrupt")
    assert asked == [signal.SIGUSR1]
    assert signal.getsignal(signum) is before and "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ


@pytest.mark.parametrize("signum,raised", STOPS, ids=IDS)
def test_after_the_block_the_remembered_signal_is_an_interruption(sigusr1, signum, raised):
    signal.signal(signal.SIGUSR1, lambda signum, frame: None)
    with sigint_stops_tune() as interrupted:
        raise_if_interrupted(interrupted)          # nothing happened: no interruption
        os.kill(os.getpid(), signum)
    with pytest.raises(raised) as caught:
        raise_if_interrupted(interrupted)
    assert isinstance(caught.value, Terminated) == (signum == signal.SIGTERM)
    assert is_termination(KeyboardInterrupt()) == (signum == signal.SIGTERM)   # as ray.get re-raises it


@pytest.mark.parametrize("signum,raised", STOPS, ids=IDS)
def test_with_no_tune_listening_a_signal_interrupts_at_once(sigusr1, signum, raised):
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)   # SIGUSR1's default would end the process
    with pytest.raises(raised):
        with sigint_stops_tune() as interrupted:
            os.kill(os.getpid(), signum)
    assert not interrupted.is_set()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=IDS)
def test_a_process_that_ignores_a_signal_keeps_ignoring_it(sigusr1, signum):
    asked = []
    signal.signal(signal.SIGUSR1, lambda signum, frame: asked.append(signum))
    signal.signal(signum, signal.SIG_IGN)   # as a shell starts a background job (SIGINT)
    with sigint_stops_tune() as interrupted:
        os.kill(os.getpid(), signum)
        assert signal.getsignal(signum) is signal.SIG_IGN
    assert not interrupted.is_set() and asked == []
    assert signal.getsignal(signum) is signal.SIG_IGN
