"""One progress line per long stage, as the field's tools show it (tqdm), on a terminal only: where
stderr is a file or a pipe (CI, a scheduler's log) the bar is off and icurt's timestamped lines
stay the whole record."""

from __future__ import annotations

import sys


def progress_bar(total: int, what: str, unit: str):
    """A tqdm bar on stderr of `total` `unit`s labelled `what`, off unless stderr is a terminal;
    it disappears when closed (the stage's own summary line follows)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit=unit, disable=None, leave=False, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


def progress_callback(total: int, what: str, unit: str):
    """A Ray Tune callback moving a progress_bar one step per finished trial."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def setup(self, **info):
            self.bar = progress_bar(total, what, unit)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.bar.update(1)

        on_trial_error = on_trial_complete

        def on_experiment_end(self, trials, **info):
            self.bar.close()

    return TrialProgress()
