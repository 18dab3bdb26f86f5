"""The hospital tables of the synthetic cohort: patients, admissions and icustays, from the skeleton."""

from __future__ import annotations

import numpy as np
import pandas as pd

from icurt.db.synth.skeleton import DAY, HOUR, MINUTE, Skeleton


def timestamps(seconds: np.ndarray, nullable: bool = False) -> np.ndarray:
    """int64 epoch seconds → datetime64[s] (negative means NULL where nullable; pre-1970 DOBs are not)."""
    out = np.asarray(seconds, dtype=np.int64).astype("datetime64[s]")
    if nullable:
        out[np.asarray(seconds) < 0] = np.datetime64("NaT")
    return out


def pick(rng: np.random.Generator, n: int, options: dict) -> pd.Categorical:
    """n draws from {label: weight}; a None label is a NULL."""
    labels = list(options)
    weights = np.array([options[label] for label in labels], dtype=float)
    codes = rng.choice(len(labels), n, p=weights / weights.sum())
    categories = [label for label in labels if label is not None]
    remap = np.array([categories.index(label) if label is not None else -1 for label in labels])
    return pd.Categorical.from_codes(remap[codes], categories=categories)


def patients_frame(sk: Skeleton) -> pd.DataFrame:
    p = sk.patients
    n = len(p)
    return pd.DataFrame({
        "row_id": np.arange(1, n + 1, dtype=np.int32), "subject_id": p["subject_id"].to_numpy(np.int32),
        "gender": pd.Categorical.from_codes(p["male"].to_numpy().astype(np.int8), ["F", "M"]),
        "dob": timestamps(p["dob"].to_numpy()), "dod": timestamps(p["dod"].to_numpy(), True),
        "dod_hosp": timestamps(p["dod_hosp"].to_numpy(), True),
        "dod_ssn": timestamps(p["dod_ssn"].to_numpy(), True),
        "expire_flag": (p["dod"].to_numpy() >= 0).astype(np.int32),
    })


ETHNICITIES = {"WHITE": .70, "BLACK/AFRICAN AMERICAN": .09, "UNKNOWN/NOT SPECIFIED": .07,
               "HISPANIC OR LATINO": .03, "ASIAN": .03, "OTHER": .03, "UNABLE TO OBTAIN": .02,
               "PATIENT DECLINED TO ANSWER": .01, "WHITE - RUSSIAN": .01,
               "HISPANIC/LATINO - PUERTO RICAN": .01}
DIAGNOSES = {"SEPSIS": .12, "PNEUMONIA": .1, "CONGESTIVE HEART FAILURE": .08,
             "CORONARY ARTERY DISEASE": .1, "GASTROINTESTINAL BLEED": .07, "INTRACRANIAL HEMORRHAGE": .06,
             "ALTERED MENTAL STATUS": .05, "ACUTE RENAL FAILURE": .04, "CHEST PAIN": .05,
             "S/P FALL": .04, "AORTIC STENOSIS": .04, "RESPIRATORY FAILURE": .05, "OTHER": .2}


def admissions_frame(sk: Skeleton, rng: np.random.Generator) -> pd.DataFrame:
    a = sk.admissions
    n = len(a)
    neonate, emergency = a["neonate"].to_numpy(), a["emergency"].to_numpy()
    kind = np.where(neonate, 0, np.where(emergency, 1, np.where(rng.random(n) < 0.75, 2, 3)))
    location = np.where(emergency, rng.choice(3, n, p=[.6, .25, .15]), 3)
    er_admit = location == 0
    admittime = a["admittime"].to_numpy()
    discharge = pick(rng, n, {"HOME": .35, "HOME HEALTH CARE": .25, "SNF": .2,
                              "REHAB/DISTINCT PART HOSP": .12, "LONG TERM CARE HOSPITAL": .05,
                              "SHORT TERM HOSPITAL": .03})
    discharge = discharge.add_categories(["DEAD/EXPIRED"])
    discharge[a["died"].to_numpy()] = "DEAD/EXPIRED"
    ethnicity = pick(rng, len(sk.patients), ETHNICITIES)[a["patient"].to_numpy()]
    diagnosis = pick(rng, n, DIAGNOSES).add_categories(["NEWBORN"])
    diagnosis[neonate] = "NEWBORN"
    return pd.DataFrame({
        "row_id": np.arange(1, n + 1, dtype=np.int32), "subject_id": a["subject_id"].to_numpy(np.int32),
        "hadm_id": a["hadm_id"].to_numpy(np.int32), "admittime": timestamps(admittime),
        "dischtime": timestamps(a["dischtime"].to_numpy()),
        "deathtime": timestamps(a["deathtime"].to_numpy(), True),
        "admission_type": pd.Categorical.from_codes(kind, ["NEWBORN", "EMERGENCY", "ELECTIVE", "URGENT"]),
        "admission_location": pd.Categorical.from_codes(location, [
            "EMERGENCY ROOM ADMIT", "TRANSFER FROM HOSP/EXTRAM", "CLINIC REFERRAL/PREMATURE",
            "PHYS REFERRAL/NORMAL DELI"]),
        "discharge_location": discharge,
        "insurance": pick(rng, n, {"Medicare": .5, "Private": .33, "Medicaid": .1, "Government": .04,
                                   "Self Pay": .03}),
        "language": pick(rng, n, {"ENGL": .55, "SPAN": .04, "RUSS": .02, "PTUN": .01, None: .38}),
        "religion": pick(rng, n, {"CATHOLIC": .35, "NOT SPECIFIED": .2, "PROTESTANT QUAKER": .13,
                                  "JEWISH": .09, "UNOBTAINABLE": .07, "OTHER": .05, None: .11}),
        "marital_status": pick(rng, n, {"MARRIED": .45, "SINGLE": .25, "WIDOWED": .13, "DIVORCED": .06,
                                        "SEPARATED": .01, None: .1}),
        "ethnicity": ethnicity,
        "edregtime": timestamps(np.where(er_admit, admittime - np.round(rng.uniform(1, 8, n) * HOUR)
                                         .astype(np.int64), -1), True),
        "edouttime": timestamps(np.where(er_admit, admittime + rng.integers(0, 90, n) * MINUTE, -1), True),
        "diagnosis": diagnosis,
        "hospital_expire_flag": a["died"].to_numpy().astype(np.int16),
        "has_chartevents_data": a["has_chartevents_data"].to_numpy(np.int16),
    })


CAREUNITS = ("MICU", "SICU", "CCU", "CSRU", "TSICU", "NICU")


def icustays_frame(sk: Skeleton, rng: np.random.Generator) -> pd.DataFrame:
    s = sk.stays
    n = len(s)
    metavision = sk.admissions["metavision"].to_numpy()[s["admission"].to_numpy()]
    neonate = sk.admissions["neonate"].to_numpy()[s["admission"].to_numpy()]
    first_unit = np.where(neonate, 5, rng.choice(5, n, p=[.35, .15, .15, .2, .15]))
    moved = ~neonate & (rng.random(n) < 0.1)
    last_unit = np.where(moved, (first_unit + rng.integers(1, 5, n)) % 5, first_unit)
    first_ward = rng.integers(1, 60, n).astype(np.int16)
    intime, outtime = s["intime"].to_numpy(), s["outtime"].to_numpy()
    return pd.DataFrame({
        "row_id": np.arange(1, n + 1, dtype=np.int32), "subject_id": s["subject_id"].to_numpy(np.int32),
        "hadm_id": s["hadm_id"].to_numpy(np.int32), "icustay_id": s["icustay_id"].to_numpy(np.int32),
        "dbsource": pd.Categorical.from_codes(metavision.astype(np.int8), ["carevue", "metavision"]),
        "first_careunit": pd.Categorical.from_codes(first_unit, CAREUNITS),
        "last_careunit": pd.Categorical.from_codes(last_unit, CAREUNITS),
        "first_wardid": first_ward,
        "last_wardid": np.where(moved, rng.integers(1, 60, n), first_ward).astype(np.int16),
        "intime": timestamps(intime), "outtime": timestamps(outtime),
        "los": np.round((outtime - intime) / DAY, 4),
    })
