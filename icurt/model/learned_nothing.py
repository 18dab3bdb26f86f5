"""Did tune-model's best trial learn anything? Checked right after tuning, before train and the
attack spend hours on a model that predicts the same P(died) for every ICU stay.

The trainer samples balanced batches (model/trainer.py), so a model that learns nothing converges
to P(died) = 0.5 for every stay, whose validation cross-entropy is ln 2 whatever the death rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

CHANCE_LOSS = math.log(2)   # cross-entropy of P(died) = 0.5 for every stay
CHANCE_MARGIN = 0.01        # a best loss within this of ln 2 is no better than chance
TIE = 1e-4                  # trials whose losses differ by less predict the same


def learned_nothing(objectives: Sequence[float]) -> str | None:
    """Why tune-model's best trial learned nothing, in one clause, or None when it learned something.

    objectives: the mean validation losses (cross-entropy, lower is better) of the complete trials
    with a finite loss. Learned nothing: the best loss is within CHANCE_MARGIN of ln 2 (the loss of
    P(died) = 0.5 for everyone), or at least half of 4 or more trials tie it (within TIE: they
    predict one value). Raises ValueError when no objective is given.
    """
    losses = [float(v) for v in objectives if math.isfinite(float(v))]
    if not losses:
        raise ValueError("no complete trial with a finite validation loss")
    best = min(losses)
    if best >= CHANCE_LOSS - CHANCE_MARGIN:
        return (f"its validation loss {best:.4f} is no better than the {CHANCE_LOSS:.4f} of predicting "
                f"P(died) = 0.5 for every stay")
    tied = sum(1 for v in losses if v - best <= TIE)
    if len(losses) >= 4 and 2 * tied >= len(losses):
        return (f"{tied} of {len(losses)} trials tie its validation loss {best:.4f}: they predict the same "
                f"for every stay")
    return None
