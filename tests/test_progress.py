"""The progress line (icurt/progress.py): on a terminal only, so logs, pipes and CI keep icurt's lines."""

import fcntl
import io
import os
import select
import struct
import sys
import termios

from icurt.progress import progress_bar


def test_the_bar_is_off_where_stderr_is_not_a_terminal(monkeypatch):
    captured = io.StringIO()
    monkeypatch.setattr(sys, "stderr", captured)
    bar = progress_bar(10, "attack", "sample")
    off = bar.disable
    bar.update(10)
    bar.close()
    assert off and captured.getvalue() == ""


def test_on_a_terminal_it_counts_what_is_done(monkeypatch):
    main, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a new pty is 0 × 0
    terminal = os.fdopen(child, "w")
    monkeypatch.setattr(sys, "stderr", terminal)
    bar = progress_bar(8, "attack", "sample")
    bar.update(3)
    bar.refresh()
    terminal.flush()
    readable, _, _ = select.select([main], [], [], 10)
    shown = os.read(main, 4096).decode() if readable else ""
    shown_at_all = not bar.disable
    bar.close()
    terminal.close()
    os.close(main)
    assert shown_at_all and "attack" in shown and "3/8" in shown
