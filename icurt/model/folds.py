"""Cross-validation folds (shared by tune-model and train): stratified, and by default grouped by
patient so that no subject_id is on both sides of a fold.

`split = "patient"`: scikit-learn's StratifiedGroupKFold(shuffle=True, random_state=seed) with
subject_id as the group. Its greedy assignment can leave a fold more than one stay of a class
away from that class's even share n_c / k (measured: 1.3 stays on an 8,000-stay synthetic
cohort); single-stay patients of that class are then moved from the fold with the most to the fold
with the fewest, until every fold holds n_c / k ± 1 stays of every class. A dataset without
subject_ids (made by hand) counts each stay as its own patient, with a warning.
`split = "stay"`: scikit-learn's StratifiedKFold(shuffle=True, random_state=seed), the reference
study's split: fold k here is fold k there.

The inner split (`inner_split`) divides a training fold the same way into a part to fit on and a
validation part to choose the checkpoint on: the first of `inner_folds` folds of the training
fold is the inner validation part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from icurt.errors import IcurtError

log = logging.getLogger("icurt")
SPLITS = ("patient", "stay")
Fold = tuple[np.ndarray, np.ndarray]     # (train rows, validation rows), int64 dataset indices
CLASS_NAMES = {0: "survivors", 1: "deaths"}   # label 1 = in-hospital death


def check_foldable(labels: np.ndarray, num_folds: int, what: str = "the dataset",
                   groups: np.ndarray | None = None, setting: str = "num_folds") -> None:
    """IcurtError unless every class has at least `num_folds` samples (and there are two classes)
    and, with `groups` (subject_id per sample: folds grouped by patient), at least `num_folds`
    patients: else a fold would hold none of that class, and its AUROC would be undefined.
    `setting` names the config key in the message (e.g. "train.num_folds")."""
    labels = np.asarray(labels)
    counts = {int(c): int((labels == c).sum()) for c in (0, 1)}
    if num_folds < 2:
        raise IcurtError(f"num_folds is {num_folds}; cross-validation needs at least 2 folds")
    short = {c: n for c, n in counts.items() if n < num_folds}
    if short:
        cls, n = next(iter(short.items()))
        name = "died" if cls == 1 else "survived"
        raise IcurtError(f"{what} has {n} sample(s) of class {cls} ({name}) but {num_folds} folds "
                         "need at least one per fold; use fewer folds or a larger cohort")
    if groups is None:
        return
    groups = np.asarray(groups)
    for cls in (1, 0):
        patients = len(np.unique(groups[labels == cls]))
        if patients < num_folds:
            raise _too_few_patients(setting, num_folds, what, counts[cls], cls, patients)


def _too_few_patients(setting: str, num_folds: int, what: str, stays: int, cls: int, patients: int,
                      outcome: str = "") -> IcurtError:
    noun = "deaths" if cls == 1 else "survivals"
    fix = (f"use at most {patients} folds (the folds keep each patient's stays together), or split = \"stay\""
           if patients >= 2 else "folds by patient need them in 2 patients or more: use split = \"stay\" or a "
           "larger cohort")
    return IcurtError(f"{setting} is {num_folds} but {what}'s {stays} {noun} are in {patients} "
                      f"patient{'s' * (patients != 1)}{outcome}; {fix}")


def stratified_folds(labels: np.ndarray, num_folds: int, seed: int) -> list[Fold]:
    """(train_idx, val_idx) per fold, stratified by ICU stay: StratifiedKFold(shuffle=True,
    random_state=seed), the reference study's split, so fold k here is fold k there."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    check_foldable(labels, num_folds)
    splitter = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    return [(train.astype(np.int64), val.astype(np.int64))
            for train, val in splitter.split(np.zeros(len(labels)), labels)]


def patient_folds(labels: np.ndarray, subject_ids: np.ndarray, num_folds: int, seed: int,
                  what: str = "the cohort", setting: str = "num_folds", every_fold: bool = True,
                  unbalanced: list | None = None) -> list[Fold]:
    """(train_idx, val_idx) per fold with every patient's stays on one side, stratified: each fold
    holds n_c / num_folds ± 1 stays of each class c (see the module docstring). IcurtError when a
    class sits in fewer patients than folds (check_foldable), unless `every_fold` is False (a caller
    that uses one fold checks that one). A class that cannot be balanced (too few single-stay
    patients to move) is a warning, or appended to `unbalanced` as (class, counts) when given."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels, groups = np.asarray(labels), np.asarray(subject_ids)
    check_foldable(labels, num_folds, what, groups if every_fold else None, setting)
    splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    for k, (_, val) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold_of[val] = k
    left = _balance_classes(fold_of, labels, groups, num_folds)
    if unbalanced is not None:
        unbalanced.extend(left)
    for c, counts in left if unbalanced is None else ():
        log.warning("folds: the %s of %s could not be balanced to ±1 stay per fold (%s per fold): too few "
                    "patients with a single stay to move", CLASS_NAMES[c], what, ", ".join(map(str, counts)))
    rows = np.arange(len(labels), dtype=np.int64)
    return [(rows[fold_of != k], rows[fold_of == k]) for k in range(num_folds)]


def _balance_classes(fold_of: np.ndarray, labels: np.ndarray, groups: np.ndarray, k: int) -> list:
    """Move single-stay patients between folds until each class is within ±1 of its even share
    (in place). A move changes one class's counts only, so classes are balanced one at a time.
    Returns (class, stays per fold) of each class it could not balance."""
    _, index, stays_per_group = np.unique(groups, return_inverse=True, return_counts=True)
    single = stays_per_group[index] == 1
    left = []
    for c in (0, 1):
        share = (labels == c).sum() / k
        while True:
            counts = np.bincount(fold_of[labels == c], minlength=k)
            high, low = int(np.argmax(counts)), int(np.argmin(counts))
            if counts[high] <= share + 1 and counts[low] >= share - 1:
                break
            movable = np.flatnonzero(single & (labels == c) & (fold_of == high))
            if not movable.size or counts[high] - counts[low] < 2:
                left.append((c, counts.tolist()))
                break
            fold_of[movable[0]] = low
    return left


def make_folds(labels: np.ndarray, subject_ids: np.ndarray | None, num_folds: int, seed: int,
               split: str, what: str = "the cohort", setting: str = "num_folds") -> list[Fold]:
    """The folds of `split` ("patient" or "stay"); without subject_ids each stay is its own patient.
    IcurtError (naming `setting`, the config key of `num_folds`) when a class has fewer stays, or
    under "patient" sits in fewer patients, than folds."""
    if split == "stay":
        return stratified_folds(labels, num_folds, seed)
    if split != "patient":
        raise IcurtError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return patient_folds(labels, patient_ids(subject_ids, len(labels)), num_folds, seed, what, setting)


def patient_ids(subject_ids: np.ndarray | None, n: int) -> np.ndarray:
    """subject_ids, or (with a warning) one made-up patient per stay when the dataset has none."""
    if subject_ids is not None:
        return np.asarray(subject_ids)
    log.warning("folds: the dataset records no subject_id (made by hand or by an older icurt); each stay "
                "counts as its own patient, so stays of one patient may fall on both sides of a fold")
    return -np.arange(1, n + 1, dtype=np.int64)


def inner_split(train_idx: np.ndarray, labels: np.ndarray, subject_ids: np.ndarray | None, inner_folds: int,
                seed: int, split: str, setting: str = "inner_folds", unbalanced: list | None = None) -> Fold:
    """(fit rows, inner validation rows) of a training fold: the first of `inner_folds` folds of
    `split` over the training fold is the inner validation part (dataset indices, int64).
    IcurtError (naming `setting`, the config key of `inner_folds`) when a class has fewer stays
    than inner folds or, grouped by patient, the inner validation part holds none of a class (its
    patients fewer than the folds), where the checkpoint could not be chosen."""
    train_idx = np.asarray(train_idx, dtype=np.int64)
    labels = np.asarray(labels)[train_idx]
    what = "a training fold"
    check_foldable(labels, inner_folds, what=what)
    groups = None if subject_ids is None else np.asarray(subject_ids)[train_idx]
    if split != "patient":
        fit, val = make_folds(labels, groups, inner_folds, seed, split, what, setting)[0]
        return train_idx[fit], train_idx[val]
    groups = patient_ids(groups, len(labels))
    fit, val = patient_folds(labels, groups, inner_folds, seed, what, setting, every_fold=False,
                             unbalanced=unbalanced)[0]
    for cls in (1, 0):
        if not (labels[val] == cls).any():
            raise _too_few_patients(setting, inner_folds, what, int((labels == cls).sum()), cls,
                                    len(np.unique(groups[labels == cls])), ", none in its inner validation part")
    return train_idx[fit], train_idx[val]


@dataclass(frozen=True)
class FoldRows:
    """One fold of a train run, as dataset indices (int64): the model fits on `fit`, its checkpoint
    is chosen on `choice`, its metrics are reported on `held_out`. Under the reference rule
    (checkpoint_split = "held_out") `choice` is `held_out` and `fit` the whole training fold."""

    fit: np.ndarray
    choice: np.ndarray
    held_out: np.ndarray

    @property
    def chooses_on_held_out(self) -> bool:
        return np.array_equal(self.choice, self.held_out)


def fold_rows(folds: list[Fold], labels: np.ndarray, patients: np.ndarray, checkpoint_split: str,
              inner_folds: int, seed: int, split: str, setting: str = "inner_folds") -> list[FoldRows]:
    """Each outer fold's FoldRows: with checkpoint_split "inner", its training fold split by
    `inner_split` (seed + 1 + fold index); with "held_out", the checkpoint chosen on the held-out fold."""
    if checkpoint_split == "held_out":
        return [FoldRows(train, val, val) for train, val in folds]
    if checkpoint_split != "inner":
        raise IcurtError(f"checkpoint_split must be inner or held_out, got {checkpoint_split!r}")
    out, unbalanced = [], []
    for k, (train, val) in enumerate(folds):
        left: list = []
        fit, choice = inner_split(train, labels, patients, inner_folds, seed + 1 + k, split, setting, left)
        out.append(FoldRows(fit, choice, val))
        unbalanced.append(bool(left))
    if any(unbalanced):
        log.warning("folds: the inner split (fit / inner validation) of %d of %d training folds could not "
                    "balance a class to ±1 stay per inner fold: too few patients with a single stay to move; "
                    "the outer folds are not affected", sum(unbalanced), len(folds))
    return out
