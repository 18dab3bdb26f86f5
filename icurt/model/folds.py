"""Stratified k-fold splits of a label vector (shared by tune-model and train)."""

from __future__ import annotations

import numpy as np

from icurt.errors import IcurtError


def check_foldable(labels: np.ndarray, num_folds: int) -> None:
    """IcurtError unless every class has at least `num_folds` samples (and there are two classes)."""
    labels = np.asarray(labels)
    counts = {int(c): int((labels == c).sum()) for c in (0, 1)}
    if num_folds < 2:
        raise IcurtError(f"num_folds is {num_folds}; cross-validation needs at least 2 folds")
    short = {c: n for c, n in counts.items() if n < num_folds}
    if short:
        cls, n = next(iter(short.items()))
        name = "died" if cls == 1 else "survived"
        raise IcurtError(f"the dataset has {n} sample(s) of class {cls} ({name}) but {num_folds} folds "
                         "need at least one per fold; use fewer folds or a larger cohort")


def stratified_folds(labels: np.ndarray, num_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train_idx, val_idx) per fold, each class spread evenly over the folds, shuffled by `seed`.

    The same split as scikit-learn's StratifiedKFold(shuffle=True, random_state=seed), which the
    reference study used, so fold k here is fold k there.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    check_foldable(labels, num_folds)
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    return [(train.astype(np.int64), val.astype(np.int64))
            for train, val in splitter.split(np.zeros(len(labels)), labels)]
