"""One seed, both schemas: `icurt db synth` in MIMIC-III's schema and in MIMIC-IV's, each queried with
its own SQL and preprocessed, give the same dataset.npz. The differences the two releases impose
(icurt.db.synth.mimic_iv) are each named here: ids in MIMIC-IV's ranges, and ages in whole years
from anchor_year, which may move a stay across [preprocess].min_age."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from icurt.dataset import load_dataset
from icurt.db.synth.cohort import generate_cohort, in_mimic4
from icurt.db.synth.mimic_iv import ID_OFFSETS, to_mimic4
from icurt.stages import run_stage

STAYS, SEED = 300, 11


@pytest.fixture(scope="module")
def cohort():
    return generate_cohort(STAYS, SEED)


def _ages(cohort) -> pd.DataFrame:
    """Per stay: MIMIC-III's fractional age at admission and MIMIC-IV's whole-year age, by hand."""
    tables, iv = cohort.tables, to_mimic4(cohort.tables)
    stays = tables["icustays"][["icustay_id", "hadm_id", "subject_id"]]
    adm = tables["admissions"].set_index("hadm_id")["admittime"]
    dob = tables["patients"].set_index("subject_id")["dob"]
    admittime = adm.loc[stays["hadm_id"]].to_numpy()
    age_iii = (admittime - dob.loc[stays["subject_id"]].to_numpy()) / np.timedelta64(1, "D") / 365.242
    patients = iv["patients"].set_index("subject_id")
    subject_iv = stays["subject_id"].to_numpy() + ID_OFFSETS["subject_id"]
    year = admittime.astype("datetime64[Y]").astype(np.int64) + 1970
    age_iv = patients.loc[subject_iv, "anchor_age"].to_numpy() + year - patients.loc[subject_iv, "anchor_year"].to_numpy()
    return pd.DataFrame({"icustay_id": stays["icustay_id"], "iii": age_iii, "iv": age_iv})


def test_translation_keeps_every_stay_and_measurement(cohort):
    iii, iv = cohort.tables, in_mimic4(cohort).tables
    assert len(iv["icustays"]) == len(iii["icustays"]) == STAYS
    assert (iv["icustays"]["stay_id"].to_numpy() == iii["icustays"]["icustay_id"].to_numpy() + 29_800_000).all()
    assert len(iv["labevents"]) == len(iii["labevents"])
    dropped = (iii["chartevents"]["error"].fillna(0) == 1) | iii["chartevents"]["icustay_id"].isna()
    assert len(iv["chartevents"]) == len(iii["chartevents"]) - int(dropped.sum())
    assert iv["chartevents"]["itemid"].min() >= 220000          # MetaVision items only
    assert 50800 not in set(iv["labevents"]["itemid"]) and 52033 in set(iv["labevents"]["itemid"])
    # the first admission: MIMIC-IV's whole years are the floor of MIMIC-III's age (91 above 89)
    ages = _ages(cohort)
    first = iii["icustays"]["hadm_id"].isin(iii["admissions"].groupby("subject_id")["hadm_id"].min())
    expected = np.where(ages["iii"] > 89, 91, np.floor(ages["iii"]))
    assert (ages["iv"][first.to_numpy()] == expected[first.to_numpy()]).all()


def _dataset(make_config, tmp_path, name: str, *overrides: str):
    from icurt.db.synth.cohort import run_synth

    cfg = make_config("preprocess.engine=pandas", *overrides, data=tmp_path / name)
    run_synth(cfg, stays=STAYS, seed=SEED)
    run_stage("query", cfg)
    return load_dataset(run_stage("preprocess", cfg).path)


@pytest.mark.slow
def test_one_seed_both_schemas_give_the_same_dataset(make_config, tmp_path, cohort):
    iii = _dataset(make_config, tmp_path, "iii", "db.schema=t4_iii")
    iv = _dataset(make_config, tmp_path, "iv", "db.dataset=mimic-iv", "db.hosp_schema=t4_hosp",
                  "db.icu_schema=t4_icu")
    # Difference 1, MIMIC-IV's age rule (whole years from anchor_year): a stay whose adulthood
    # ([preprocess].min_age = 18) the two ages disagree on would be in one dataset only. None here.
    ages = _ages(cohort)
    disagree = ages[(np.minimum(ages["iii"], 91.4) >= 18) != (ages["iv"] >= 18)]
    assert disagree.empty, f"seed {SEED} has stays whose adulthood differs: {disagree}"
    # Difference 2, ids in MIMIC-IV's ranges, in the same order.
    np.testing.assert_array_equal(iv.stay_ids, iii.stay_ids + ID_OFFSETS["stay_id"])
    np.testing.assert_array_equal(iv.subject_ids, iii.subject_ids + ID_OFFSETS["subject_id"])
    np.testing.assert_array_equal(iv.hadm_ids, iii.hadm_ids + ID_OFFSETS["hadm_id"])
    # Everything else is the same.
    assert iv.feature_names == iii.feature_names
    np.testing.assert_array_equal(iv.labels, iii.labels)
    np.testing.assert_array_equal(iv.features, iii.features)
    np.testing.assert_array_equal(iv.measured, iii.measured)
    assert iv.normalisation == iii.normalisation
