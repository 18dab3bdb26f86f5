"""Cross-validation folds: stratified by stay (the reference), or grouped by patient with classes
balanced within ±1 stay, for the outer folds and the inner checkpoint-choice split."""

import numpy as np
import pytest

from icurt.errors import IcurtError
from icurt.model.folds import fold_rows, inner_split, make_folds, patient_folds, stratified_folds


def cohort_with_repeat_patients(n_patients=700, seed=0):
    """Patients with 1–5 stays (half of them one), deaths only in a patient's last stay (the dead
    do not come back), about 12 % of stays died: labels and subject_ids per stay."""
    rng = np.random.default_rng(seed)
    stays = rng.choice([1, 2, 3, 4, 5], n_patients, p=[0.5, 0.25, 0.13, 0.08, 0.04])
    subject = np.repeat(np.arange(n_patients) + 10_001, stays)
    last = np.r_[np.diff(subject) != 0, True]
    died = (last & (rng.random(len(subject)) < 0.25)).astype(np.int64)
    return died, subject


def assert_grouped_and_balanced(labels, subjects, folds, k):
    held = np.concatenate([val for _, val in folds])
    assert sorted(held.tolist()) == list(range(len(labels)))        # every stay held out exactly once
    for train, val in folds:
        assert set(subjects[train]).isdisjoint(subjects[val])       # no patient on both sides
        assert len(train) + len(val) == len(labels)
        for c in (0, 1):
            share = (labels == c).sum() / k                           # the class's proportional share
            assert abs((labels[val] == c).sum() - share) <= 1, (c, (labels[val] == c).sum(), share)


@pytest.mark.parametrize("seed,k", [(0, 5), (1, 5), (2, 3), (20240807, 5), (1234, 4)])
def test_patient_folds_never_split_a_patient_and_keep_classes_within_one_stay(seed, k):
    labels, subjects = cohort_with_repeat_patients(seed=seed)
    assert np.bincount(np.unique(subjects, return_counts=True)[1]).size > 3   # several stays per patient
    folds = patient_folds(labels, subjects, k, seed)
    assert_grouped_and_balanced(labels, subjects, folds, k)
    again = patient_folds(labels, subjects, k, seed)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))     # seeded


@pytest.mark.parametrize("seed", [0, 3])
def test_inner_splits_are_grouped_and_balanced_inside_each_training_fold(seed):
    labels, subjects = cohort_with_repeat_patients(seed=seed)
    outer = patient_folds(labels, subjects, 5, seed)
    for k, rows in enumerate(fold_rows(outer, labels, subjects, "inner", 4, seed, "patient")):
        train, val = outer[k]
        assert np.array_equal(np.sort(np.r_[rows.fit, rows.choice]), np.sort(train))
        assert np.array_equal(rows.held_out, val) and not rows.chooses_on_held_out
        for a, b in ((rows.fit, rows.choice), (rows.fit, rows.held_out), (rows.choice, rows.held_out)):
            assert set(subjects[a]).isdisjoint(subjects[b])
        for c in (0, 1):
            assert abs((labels[rows.choice] == c).sum() - (labels[train] == c).sum() / 4) <= 1
    reference = fold_rows(outer, labels, subjects, "held_out", 4, seed, "patient")
    assert all(r.chooses_on_held_out and np.array_equal(r.fit, t) for r, (t, _) in zip(reference, outer))


def test_split_stay_is_the_references_stratified_kfold():
    from sklearn.model_selection import StratifiedKFold

    labels, subjects = cohort_with_repeat_patients(seed=4)
    ours = make_folds(labels, subjects, 5, 20240807, "stay")
    theirs = StratifiedKFold(5, shuffle=True, random_state=20240807).split(np.zeros(len(labels)), labels)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(ours, theirs))
    # and it leaks: some patient has stays on both sides of some fold
    assert any(set(subjects[t]) & set(subjects[v]) for t, v in ours)


def test_without_subject_ids_each_stay_is_its_own_patient(caplog):
    labels, _ = cohort_with_repeat_patients(seed=5)
    folds = make_folds(labels, None, 5, 0, "patient")
    assert "each stay counts as its own patient" in caplog.text
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(len(labels)))


def test_stratified_folds_partition_and_balance():
    y = np.r_[np.zeros(47), np.ones(13)].astype(np.int64)
    folds = stratified_folds(y, 5, seed=20240807)
    vals = np.concatenate([val for _, val in folds])
    assert sorted(vals.tolist()) == list(range(60))          # each sample held out exactly once
    for train, val in folds:
        assert set(train).isdisjoint(val) and len(train) + len(val) == 60
        assert y[val].sum() in (2, 3)                          # 13 positives over 5 folds
    with pytest.raises(IcurtError, match="class 1"):
        stratified_folds(np.r_[np.zeros(20), np.ones(3)].astype(np.int64), 5, 0)


def test_too_few_deaths_for_the_inner_folds_is_a_user_error():
    labels = np.r_[np.zeros(40), np.ones(6)].astype(np.int64)
    train = np.r_[np.arange(30), 40, 41, 42]                   # 30 survivors and 3 deaths: < 5 inner folds
    with pytest.raises(IcurtError, match="a training fold has 3 sample"):
        inner_split(train, labels, None, 5, 0, "stay")


def test_a_class_in_fewer_patients_than_folds_is_refused_with_the_counts():
    # 159 deaths, all stays of patients 1, 2 and 3 (53 each); 200 survivors, one stay each
    labels = np.r_[np.ones(159), np.zeros(200)].astype(np.int64)
    subjects = np.r_[np.repeat([1, 2, 3], 53), np.arange(100, 300)]
    with pytest.raises(IcurtError, match=r"^train.num_folds is 5 but the cohort's 159 deaths are in 3 patients; "
                                         r"use at most 3 folds"):
        make_folds(labels, subjects, 5, 0, "patient", setting="train.num_folds")
    folds = make_folds(labels, subjects, 3, 0, "patient")
    assert sorted(len(np.unique(subjects[val][labels[val] == 1])) for _, val in folds) == [1, 1, 1]
    assert len(make_folds(labels, subjects, 5, 0, "stay")) == 5        # by stay, 159 deaths fill 5 folds
    with pytest.raises(IcurtError, match=r"the cohort's 200 survivals are in 2 patients"):
        make_folds(labels, np.r_[subjects[:159], np.resize([7, 8], 200)], 3, 0, "patient")


def test_the_inner_split_is_refused_when_its_validation_part_gets_no_death():
    """Grouped folds fill fold 0 first with the most one-sided patients: here the survivor with 20
    stays, so the 4 deaths (2 patients, 2 stays each) all go to inner folds 1 and 2 of 3."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.r_[np.ones(4), np.zeros(50)].astype(np.int64)
    subjects = np.r_[[1, 1, 2, 2], np.full(20, 7), np.arange(100, 130)]
    train = np.arange(54)
    _, first = next(StratifiedGroupKFold(3, shuffle=True, random_state=0).split(train, labels, subjects))
    assert labels[first].sum() == 0                          # what the refusal is about
    with pytest.raises(IcurtError, match=r"^train.inner_folds is 3 but a training fold's 4 deaths are in 2 "
                                         r"patients, none in its inner validation part; use at most 2 folds"):
        inner_split(train, labels, subjects, 3, 0, "patient", setting="train.inner_folds")
    with pytest.raises(IcurtError, match=r"^train.inner_folds is 2 but a training fold's 4 deaths are in 1 "
                                         r"patient, none in .*; folds by patient need them in 2 patients or more"):
        inner_split(train, labels, np.r_[[1, 1, 1, 1], subjects[4:]], 2, 0, "patient", setting="train.inner_folds")
    # deaths in one patient of 2 stays and another of 1: fold 0 of 2 holds one of them
    fit, val = inner_split(train[4:54:2].tolist() + [0, 1, 2], labels, np.r_[[1, 1, 2, 2], subjects[4:]], 2, 0,
                           "patient")
    assert labels[val].sum() >= 1 and labels[fit].sum() >= 1


def test_the_inner_splits_that_cannot_be_balanced_are_said_once_and_named(caplog):
    """10 patients with 3 stays each (deaths: patients 0-2; survivors 3-9), no single-stay patient
    to move. Training fold k leaves out patients p % 3 == k: fold 0 keeps 2 dying and 4 surviving
    patients, which 2 inner folds split evenly (3/3 and 6/6 stays); folds 1 and 2 keep 5 surviving
    patients (15 stays), which no split brings within ±1 of 7.5: one warning, "2 of 3"."""
    import logging

    from icurt.model.folds import fold_rows, patient_folds

    labels = np.repeat([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], 3)
    patients = np.repeat(np.arange(10), 3)
    folds = [(np.arange(30)[patients % 3 != k], np.arange(30)[patients % 3 == k]) for k in range(3)]
    with caplog.at_level(logging.WARNING, logger="icurt"):
        rows = fold_rows(folds, labels, patients, "inner", 2, 0, "patient")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(rows) == 3 and len(warnings) == 1
    assert "the inner split (fit / inner validation) of 2 of 3 training folds" in warnings[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="icurt"):
        patient_folds(labels, patients, 3, 0)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "of the cohort could not be balanced" in warnings[0]
