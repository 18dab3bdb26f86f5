"""Synthetic MIMIC-III skeleton: patients → admissions (1–3) → ICU stays (1–2), severity and death.

Everything is drawn for whole arrays at once. Times are int64 seconds since the Unix epoch, in the
years 2100–2200 as MIMIC-III's shifted dates are; tables get TIMESTAMP(0) columns at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

MINUTE, HOUR, DAY = 60, 3_600, 86_400
YEAR_2100 = 4_102_444_800  # 2100-01-01 00:00:00
DAYS_PER_YEAR = 365.242
MORTALITY_SLOPE = 2.1  # log-odds per unit severity: oracle AUROC ≈ 0.88 at a 10 % death rate
MIN_QUALIFYING_AGE = 18.0
MIN_QUALIFYING_ICU_DAYS = 2.0  # 48 h observation window (≥ 1 day LOS follows)
NEONATE, CHILD, ADULT, ELDERLY = 0, 1, 2, 3
AGE_GROUP_WEIGHTS = (0.04, 0.01, 0.89, 0.06)
SHORT_STAY_FRACTION = 0.15
NO_CHARTEVENTS_FRACTION = 0.02
ICU_DEATH_FRACTION = 0.65
MAX_POST_ICU_DAYS = 30


@dataclass(frozen=True)
class Skeleton:
    """Row-aligned arrays for patients, admissions and stays (the index is the row position)."""

    patients: pd.DataFrame     # subject_id, group, gender, dob, first_admittime, dod...
    admissions: pd.DataFrame   # hadm_id, patient, admittime, dischtime, deathtime, died, severity...
    stays: pd.DataFrame        # icustay_id, admission, patient, intime, outtime, severity, qualifying...
    intercept: float


def within_group_rank(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2 … within each run of equal, contiguous group ids."""
    return exclusive_cumsum_within(np.ones(groups.size, dtype=np.int64), groups)


def exclusive_cumsum_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Sum of the earlier values of the same contiguous group (0 for a group's first row)."""
    if values.size == 0:
        return values.copy()
    running = np.cumsum(values) - values
    starts = np.r_[0, np.flatnonzero(np.diff(groups)) + 1]
    return running - np.repeat(running[starts], np.diff(np.r_[starts, groups.size]))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def mortality_intercept(severity: np.ndarray, rate: float) -> float:
    """The intercept a with mean(sigmoid(a + b·s)) = rate over the given severities (bisection)."""
    if severity.size == 0:
        return float(np.log(rate / (1 - rate)))
    low, high = -30.0, 30.0
    for _ in range(80):
        middle = (low + high) / 2
        if sigmoid(middle + MORTALITY_SLOPE * severity).mean() < rate:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def oracle_auroc(truth: pd.DataFrame, qualifying: np.ndarray, column: str = "oracle_probability") -> float:
    """AUROC of a truth column (the oracle's probability by default) against death on the
    qualifying stays (NaN if one class)."""
    died = truth["died"].to_numpy()[qualifying]
    if died.size == 0 or died.min() == died.max():
        return float("nan")
    return float(roc_auc_score(died, truth[column].to_numpy()[qualifying]))


def draw_skeleton(n_stays: int, rng: np.random.Generator, mortality_rate: float) -> Skeleton:
    """Draw more patients than needed, decide deaths, drop admissions after a death, keep n_stays."""
    patients = _draw_patients(n_stays, rng)
    admissions = _draw_admissions(patients, rng)
    stays = _draw_stays(admissions, rng)
    _place_in_time(patients, admissions, stays, rng)
    stays["qualifying"] = qualifying_stays(patients, admissions, stays)
    intercept = mortality_intercept(stays["severity"].to_numpy()[stays["qualifying"].to_numpy()],
                                    mortality_rate)
    admissions["died"] = rng.random(len(admissions)) < sigmoid(
        intercept + MORTALITY_SLOPE * admissions["severity"].to_numpy())
    patients, admissions, stays = _keep_until_death(patients, admissions, stays, n_stays)
    _discharge(admissions, stays, rng)
    _deaths_of_patients(patients, admissions, rng)
    return Skeleton(patients, admissions, stays, intercept)


def qualifying_stays(patients: pd.DataFrame, admissions: pd.DataFrame, stays: pd.DataFrame) -> np.ndarray:
    """Adult at admission, ICU stay ≥ 48 h, admission with chartevents: the stays a study keeps."""
    admission = stays["admission"].to_numpy()
    admittime = admissions["admittime"].to_numpy()[admission]
    dob = patients["dob"].to_numpy()[stays["patient"].to_numpy()]
    age = (admittime - dob) / (DAYS_PER_YEAR * DAY)
    los_days = (stays["outtime"].to_numpy() - stays["intime"].to_numpy()) / DAY
    return ((age >= MIN_QUALIFYING_AGE) & (los_days >= MIN_QUALIFYING_ICU_DAYS)
            & admissions["has_chartevents_data"].to_numpy()[admission].astype(bool))


def _draw_patients(n: int, rng: np.random.Generator) -> pd.DataFrame:
    group = rng.choice(4, n, p=AGE_GROUP_WEIGHTS)
    age = np.select([group == NEONATE, group == CHILD, group == ELDERLY],
                    [np.zeros(n), rng.uniform(1, 18, n), np.full(n, 300.0)],
                    np.clip(rng.normal(63, 16, n), 18.2, 89.5))
    n_admissions = np.where(group == NEONATE, 1, rng.choice([1, 2, 3], n, p=[0.72, 0.18, 0.10]))
    return pd.DataFrame({"group": group, "age_at_first": age, "n_admissions": n_admissions,
                         "male": rng.random(n) < 0.56})


def _draw_admissions(patients: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    patient = np.repeat(np.arange(len(patients)), patients["n_admissions"].to_numpy())
    n = patient.size
    neonate = patients["group"].to_numpy()[patient] == NEONATE
    emergency = ~neonate & (rng.random(n) < 0.78)
    straight_from_ed = emergency & (rng.random(n) < 0.55)
    pre_icu_s = np.select([neonate, straight_from_ed],
                          [rng.uniform(0.1, 2, n) * HOUR, rng.uniform(0.3, 6, n) * HOUR],
                          np.minimum(2 * HOUR + rng.exponential(30 * HOUR, n), 10 * DAY))
    return pd.DataFrame({
        "patient": patient, "sequence": within_group_rank(patient), "neonate": neonate,
        "emergency": emergency, "pre_icu_s": np.round(pre_icu_s).astype(np.int64),
        "n_stays": np.where(rng.random(n) < 0.12, 2, 1),
        "severity": rng.standard_normal(n),
        "metavision": rng.random(n) < 0.45,
        "has_chartevents_data": (rng.random(n) >= NO_CHARTEVENTS_FRACTION).astype(np.int16),
        "gap_before_days": 20 + rng.exponential(300, n),
    })


def _draw_stays(admissions: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    admission = np.repeat(np.arange(len(admissions)), admissions["n_stays"].to_numpy())
    n = admission.size
    long_days = 2.0 + np.minimum(np.exp(rng.normal(np.log(1.6), 0.85, n)), 38.0)
    los_days = np.where(rng.random(n) < SHORT_STAY_FRACTION, rng.uniform(0.25, 1.98, n), long_days)
    sequence = within_group_rank(admission)
    ward_gap_s = np.where(sequence == 0, admissions["pre_icu_s"].to_numpy()[admission],
                          rng.uniform(12 * HOUR, 5 * DAY, n))
    return pd.DataFrame({
        "admission": admission, "patient": admissions["patient"].to_numpy()[admission],
        "sequence": sequence, "los_s": np.round(los_days * DAY).astype(np.int64),
        "gap_before_s": np.round(ward_gap_s).astype(np.int64),
        "severity": admissions["severity"].to_numpy()[admission],
    })


def _place_in_time(patients, admissions, stays, rng) -> None:
    """Admit times per patient, stays inside their admission, dates of birth (in place)."""
    span = stays["gap_before_s"].to_numpy() + stays["los_s"].to_numpy()
    stay_admission = stays["admission"].to_numpy()
    # the admission reserves MAX_POST_ICU_DAYS after its last stay, so times never depend on deaths
    icu_span = np.bincount(stay_admission, weights=span, minlength=len(admissions)).astype(np.int64)
    reserved = icu_span + MAX_POST_ICU_DAYS * DAY + np.round(
        admissions["gap_before_days"].to_numpy() * DAY).astype(np.int64)
    patient = admissions["patient"].to_numpy()
    # from 2102 so that outpatient labs up to two years before the first admission stay after 2100
    minutes = rng.integers(0, 93 * 365 * DAY // MINUTE, len(patients))
    first_admit = YEAR_2100 + 2 * 365 * DAY + minutes * MINUTE
    admittime = first_admit[patient] + _round_to_minute(exclusive_cumsum_within(reserved, patient))
    admissions["admittime"] = admittime
    intime = admittime[stay_admission] + exclusive_cumsum_within(span, stay_admission) \
        + stays["gap_before_s"].to_numpy()
    stays["intime"] = intime
    stays["outtime"] = intime + stays["los_s"].to_numpy()
    first_day = first_admit - first_admit % DAY
    age = patients["age_at_first"].to_numpy()
    dob = first_day - np.round(age * DAYS_PER_YEAR).astype(np.int64) * DAY
    elderly = patients["group"].to_numpy() == ELDERLY
    dob[elderly] = _minus_300_years(first_day[elderly])
    patients["dob"] = dob
    patients["first_admittime"] = first_admit


def _minus_300_years(day_seconds: np.ndarray) -> np.ndarray:
    """The same calendar day 300 years earlier (Y and Y−300 agree on leap years for 2100–2199)."""
    days = (day_seconds // DAY).astype("datetime64[D]")
    year_start = days.astype("datetime64[Y]").astype("datetime64[D]")
    earlier_start = (days.astype("datetime64[Y]") - np.timedelta64(300, "Y")).astype("datetime64[D]")
    return (earlier_start + (days - year_start)).astype("datetime64[s]").astype(np.int64)


def _round_to_minute(seconds: np.ndarray) -> np.ndarray:
    return seconds - seconds % MINUTE


def _keep_until_death(patients, admissions, stays, n_stays):
    """Drop admissions after a patient's death, then keep the first n_stays stays."""
    deaths_before = exclusive_cumsum_within(admissions["died"].to_numpy().astype(np.int64),
                                            admissions["patient"].to_numpy())
    alive_admission = deaths_before == 0
    keep_stay = alive_admission[stays["admission"].to_numpy()]
    keep_stay &= np.cumsum(keep_stay) <= n_stays
    stays = stays[keep_stay].reset_index(drop=True)
    keep_admission = np.zeros(len(admissions), dtype=bool)
    keep_admission[stays["admission"].to_numpy()] = True
    keep_patient = np.zeros(len(patients), dtype=bool)
    keep_patient[admissions["patient"].to_numpy()[keep_admission]] = True
    new_admission = np.cumsum(keep_admission) - 1
    new_patient = np.cumsum(keep_patient) - 1
    admissions = admissions[keep_admission].reset_index(drop=True)
    patients = patients[keep_patient].reset_index(drop=True)
    admissions["patient"] = new_patient[admissions["patient"].to_numpy()]
    stays["admission"] = new_admission[stays["admission"].to_numpy()]
    stays["patient"] = new_patient[stays["patient"].to_numpy()]
    admissions["n_stays"] = np.bincount(stays["admission"].to_numpy(), minlength=len(admissions))
    patients["subject_id"] = np.arange(len(patients), dtype=np.int64) + 10_001
    admissions["hadm_id"] = np.arange(len(admissions), dtype=np.int64) + 100_001
    stays["icustay_id"] = np.arange(len(stays), dtype=np.int64) + 200_001
    admissions["subject_id"] = patients["subject_id"].to_numpy()[admissions["patient"].to_numpy()]
    stays["hadm_id"] = admissions["hadm_id"].to_numpy()[stays["admission"].to_numpy()]
    stays["subject_id"] = patients["subject_id"].to_numpy()[stays["patient"].to_numpy()]
    return patients, admissions, stays


def _discharge(admissions, stays, rng) -> None:
    """dischtime after the last stay; the dead leave at their deathtime, most of them in the ICU."""
    n = len(admissions)
    last_out = np.zeros(n, dtype=np.int64)
    np.maximum.at(last_out, stays["admission"].to_numpy(), stays["outtime"].to_numpy())
    died = admissions["died"].to_numpy()
    in_icu = died & (rng.random(n) < ICU_DEATH_FRACTION)
    post_days = np.where(died, rng.exponential(4, n), rng.exponential(3, n))
    post_s = np.where(in_icu, 0, np.round(np.minimum(post_days, MAX_POST_ICU_DAYS - 1) * DAY) + 2 * HOUR)
    dischtime = _round_to_minute(last_out + post_s.astype(np.int64) + MINUTE - 1)
    admissions["dischtime"] = dischtime
    admissions["deathtime"] = np.where(died, dischtime, -1)


def _deaths_of_patients(patients, admissions, rng) -> None:
    """dod from the in-hospital death, or (for a quarter of survivors) a later death outside."""
    n = len(patients)
    death_day = np.full(n, -1, dtype=np.int64)
    dead_adm = admissions["died"].to_numpy()
    hosp_day = admissions["deathtime"].to_numpy()[dead_adm]
    death_day[admissions["patient"].to_numpy()[dead_adm]] = hosp_day - hosp_day % DAY
    patients["dod_hosp"] = death_day.copy()
    last_disch = np.zeros(n, dtype=np.int64)
    np.maximum.at(last_disch, admissions["patient"].to_numpy(), admissions["dischtime"].to_numpy())
    later = (death_day < 0) & (rng.random(n) < 0.25)
    later_day = last_disch + np.round(rng.exponential(400, n) * DAY + DAY).astype(np.int64)
    death_day[later] = later_day[later] - later_day[later] % DAY
    patients["dod"] = death_day
    patients["dod_ssn"] = np.where(rng.random(n) < 0.8, death_day, -1)

