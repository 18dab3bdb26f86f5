"""The synthetic cohort in MIMIC-IV's schema: the MIMIC-III-shaped tables generate_cohort draws,
translated row for row into MIMIC-IV v2.2+'s seven tables (icurt.db.schema_iv), so one seed gives
the same patients, stays and measurements in both releases.

What the translation changes, as the releases differ:
- ids move into MIMIC-IV's ranges (subject_id 10,000,001…, hadm_id 20,000,001…, stay_id
  30,000,001…), in the same order;
- MIMIC-IV has no date of birth: anchor_year = the year of the patient's first admission and
  anchor_age = the whole years of age then (91 for the over-89s, whose MIMIC-III DOB is shifted
  ~300 years); the query's age is anchor_age + year(admittime) - anchor_year, so a later
  admission's age is in whole calendar years (it can differ from MIMIC-III's fractional age);
- CareVue chart items become their MetaVision twins (MIMIC-IV charts MetaVision only), with the
  twin's unit; the values are unchanged. Rows MIMIC-III flags error = 1 and rows without an ICU
  stay are left out (MIMIC-IV's chartevents has no error column and a NOT NULL stay_id);
- lab rows get a labevent_id, a specimen_id per draw (subject, charttime) and the reference range;
  the blood-gas specimen item 50800 becomes 52033;
- category texts (admission type, locations, race, care units, language) take MIMIC-IV's words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from icurt.db.schema import column_names
from icurt.db.synth.items import CHART_ITEMS, LAB_ITEMS, SPECIMEN_ITEMID

MIMIC_IV = "mimic-iv"
# first id in MIMIC-III's synthetic numbering → first id in MIMIC-IV's (icurt.db.synth.skeleton)
ID_OFFSETS = {"subject_id": 10_000_000 - 10_000, "hadm_id": 20_000_000 - 100_000,
              "stay_id": 30_000_000 - 200_000}
SPECIMEN_ITEMID_IV = 52033
OVER_89_AGE = 91
CAREVUE_TWINS = {211: 220045, 51: 220050, 6701: 220050, 455: 220179, 442: 220179, 8368: 220051,
                 8441: 220180, 8440: 220180, 52: 220052, 456: 220181, 443: 220181, 618: 220210,
                 615: 224690, 676: 223762, 678: 223761, 646: 220277, 811: 225664, 807: 225664,
                 3744: 220621}
ADMISSION_TYPES = {"NEWBORN": "OBSERVATION ADMIT", "EMERGENCY": "EW EMER.", "ELECTIVE": "ELECTIVE",
                   "URGENT": "URGENT"}
ADMISSION_LOCATIONS = {"EMERGENCY ROOM ADMIT": "EMERGENCY ROOM", "TRANSFER FROM HOSP/EXTRAM":
                       "TRANSFER FROM HOSPITAL", "CLINIC REFERRAL/PREMATURE": "CLINIC REFERRAL",
                       "PHYS REFERRAL/NORMAL DELI": "PHYSICIAN REFERRAL"}
DISCHARGE_LOCATIONS = {"DEAD/EXPIRED": "DIED", "HOME": "HOME", "HOME HEALTH CARE": "HOME HEALTH CARE",
                       "SNF": "SKILLED NURSING FACILITY", "REHAB/DISTINCT PART HOSP": "REHAB",
                       "LONG TERM CARE HOSPITAL": "CHRONIC/LONG TERM ACUTE CARE",
                       "SHORT TERM HOSPITAL": "ACUTE HOSPITAL"}
INSURANCES = {"Medicare": "Medicare", "Medicaid": "Medicaid", "Private": "Other", "Government": "Other",
              "Self Pay": "Other"}
LANGUAGES = {"ENGL": "ENGLISH", "SPAN": "SPANISH", "RUSS": "RUSSIAN", "PTUN": "PORTUGUESE"}
RACES = {"UNKNOWN/NOT SPECIFIED": "UNKNOWN"}
CAREUNITS = {"MICU": "Medical Intensive Care Unit (MICU)", "SICU": "Surgical Intensive Care Unit (SICU)",
             "CCU": "Coronary Care Unit (CCU)", "CSRU": "Cardiac Vascular Intensive Care Unit (CVICU)",
             "TSICU": "Trauma SICU (TSICU)", "NICU": "Neonatal Intensive Care Unit (NICU)"}
YEAR_GROUPS = ("2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019")
DAYS_PER_YEAR = 365.242


def mimic4_ids(ids, column: str) -> np.ndarray:
    """MIMIC-III synthetic ids (subject_id, hadm_id, icustay_id → stay_id) in MIMIC-IV's numbering."""
    key = "stay_id" if column == "icustay_id" else column
    return np.asarray(ids, dtype=np.int64) + ID_OFFSETS[key]


def to_mimic4(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The seven MIMIC-III frames of a synthetic cohort as MIMIC-IV's seven (columns as in
    icurt.db.schema_iv, in CSV order)."""
    out = {
        "patients": _patients(tables["patients"], tables["admissions"]),
        "admissions": _admissions(tables["admissions"]),
        "d_labitems": _d_labitems(),
        "labevents": _labevents(tables["labevents"]),
        "icustays": _icustays(tables["icustays"]),
        "d_items": _d_items(),
        "chartevents": _chartevents(tables["chartevents"]),
    }
    return {name: frame[column_names(name, MIMIC_IV)] for name, frame in out.items()}


def anchor_ages(dob: np.ndarray, first_admittime: np.ndarray) -> np.ndarray:
    """Whole years of age at the first admission (datetime64 arrays); 91 for the over-89s."""
    years = (first_admittime - dob) / np.timedelta64(1, "D") / DAYS_PER_YEAR
    return np.where(years > 89, OVER_89_AGE, np.floor(years)).astype(np.int16)


def _mapped(values: pd.Series, mapping: dict) -> pd.Series:
    return values.astype(object).map(lambda v: mapping.get(v, v) if v is not None and v == v else None)


def _patients(patients: pd.DataFrame, admissions: pd.DataFrame) -> pd.DataFrame:
    first_admit = admissions.groupby("subject_id")["admittime"].min()
    first = first_admit.reindex(patients["subject_id"]).to_numpy()
    anchor_year = first.astype("datetime64[Y]").astype(np.int64) + 1970
    subject = patients["subject_id"].to_numpy(np.int64)
    return pd.DataFrame({
        "subject_id": mimic4_ids(subject, "subject_id").astype(np.int32),
        "gender": patients["gender"].astype(str),
        "anchor_age": anchor_ages(patients["dob"].to_numpy(), first),
        "anchor_year": anchor_year.astype(np.int16),
        "anchor_year_group": np.array(YEAR_GROUPS)[subject % len(YEAR_GROUPS)],
        "dod": pd.arrays.ArrowExtensionArray(pa.array(patients["dod"].to_numpy().astype("datetime64[D]"),
                                                       type=pa.date32(), mask=patients["dod"].isna().to_numpy())),
    })


def _admissions(admissions: pd.DataFrame) -> pd.DataFrame:
    n = len(admissions)
    return pd.DataFrame({
        "subject_id": mimic4_ids(admissions["subject_id"], "subject_id").astype(np.int32),
        "hadm_id": mimic4_ids(admissions["hadm_id"], "hadm_id").astype(np.int32),
        "admittime": admissions["admittime"], "dischtime": admissions["dischtime"],
        "deathtime": admissions["deathtime"],
        "admission_type": _mapped(admissions["admission_type"], ADMISSION_TYPES),
        "admit_provider_id": [f"P{k % 9000 + 1000:04d}" for k in range(n)],
        "admission_location": _mapped(admissions["admission_location"], ADMISSION_LOCATIONS),
        "discharge_location": _mapped(admissions["discharge_location"], DISCHARGE_LOCATIONS),
        "insurance": _mapped(admissions["insurance"], INSURANCES),
        "language": _mapped(admissions["language"], LANGUAGES),
        "marital_status": admissions["marital_status"].astype(object),
        "race": _mapped(admissions["ethnicity"], RACES),
        "edregtime": admissions["edregtime"], "edouttime": admissions["edouttime"],
        "hospital_expire_flag": admissions["hospital_expire_flag"],
    })


def _icustays(icustays: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "subject_id": mimic4_ids(icustays["subject_id"], "subject_id").astype(np.int32),
        "hadm_id": mimic4_ids(icustays["hadm_id"], "hadm_id").astype(np.int32),
        "stay_id": mimic4_ids(icustays["icustay_id"], "stay_id").astype(np.int32),
        "first_careunit": _mapped(icustays["first_careunit"], CAREUNITS),
        "last_careunit": _mapped(icustays["last_careunit"], CAREUNITS),
        "intime": icustays["intime"], "outtime": icustays["outtime"], "los": icustays["los"],
    })


def _chartevents(chart: pd.DataFrame) -> pd.DataFrame:
    keep = (chart["error"].fillna(0).to_numpy() != 1) & chart["icustay_id"].notna().to_numpy()
    chart = chart[keep]
    itemid = chart["itemid"].to_numpy(np.int64)
    twin = np.arange(max(max(CHART_ITEMS), max(CAREVUE_TWINS)) + 1)
    twin[list(CAREVUE_TWINS)] = list(CAREVUE_TWINS.values())
    itemid = twin[itemid]
    units = sorted({item.valueuom for item in CHART_ITEMS.values()})
    unit_of = np.full(twin.size, -1)
    unit_of[list(CHART_ITEMS)] = [units.index(item.valueuom) for item in CHART_ITEMS.values()]
    return pd.DataFrame(copy=False, data={
        "subject_id": mimic4_ids(chart["subject_id"], "subject_id").astype(np.int32),
        "hadm_id": mimic4_ids(chart["hadm_id"], "hadm_id").astype(np.int32),
        "stay_id": mimic4_ids(chart["icustay_id"].to_numpy(np.int64), "stay_id").astype(np.int32),
        "caregiver_id": chart["cgid"].to_numpy(),
        "charttime": chart["charttime"].to_numpy(), "storetime": chart["storetime"].to_numpy(),
        "itemid": itemid.astype(np.int32), "value": chart["value"].array, "valuenum": chart["valuenum"].to_numpy(),
        "valueuom": pd.Categorical.from_codes(unit_of[itemid], units),
        "warning": chart["warning"].array,
    })


def _labevents(labs: pd.DataFrame) -> pd.DataFrame:
    itemid = labs["itemid"].to_numpy(np.int64)
    low, high = (np.full(itemid.max(initial=0) + 1, np.nan) for _ in range(2))
    for lab in LAB_ITEMS:
        if lab.normal and lab.itemid < low.size:
            low[lab.itemid], high[lab.itemid] = lab.normal
    nothing = pd.arrays.ArrowExtensionArray(pa.nulls(len(labs), pa.string()))
    return pd.DataFrame(copy=False, data={
        "labevent_id": labs["row_id"].to_numpy(),
        "subject_id": mimic4_ids(labs["subject_id"], "subject_id").astype(np.int32),
        "hadm_id": (labs["hadm_id"].astype("Int64") + ID_OFFSETS["hadm_id"]).astype("Int32").array,
        "specimen_id": (labs.groupby(["subject_id", "charttime"], sort=True).ngroup().to_numpy() + 1).astype(np.int32),
        "itemid": np.where(itemid == SPECIMEN_ITEMID, SPECIMEN_ITEMID_IV, itemid).astype(np.int32),
        "order_provider_id": nothing,
        "charttime": labs["charttime"].to_numpy(), "storetime": labs["charttime"].to_numpy(),
        "value": labs["value"].array, "valuenum": labs["valuenum"].to_numpy(),
        "valueuom": labs["valueuom"].array, "ref_range_lower": low[itemid], "ref_range_upper": high[itemid],
        "flag": labs["flag"].array,
        "priority": pd.Categorical.from_codes(np.zeros(len(labs), dtype=np.int8), ["ROUTINE"]),
        "comments": nothing,
    })


def _d_labitems() -> pd.DataFrame:
    items = sorted(LAB_ITEMS, key=lambda item: item.itemid)
    return pd.DataFrame({
        "itemid": np.array([SPECIMEN_ITEMID_IV if i.itemid == SPECIMEN_ITEMID else i.itemid for i in items],
                           dtype=np.int32),
        "label": [i.label for i in items], "fluid": [i.fluid for i in items],
        "category": [i.category for i in items],
    }).sort_values("itemid", ignore_index=True)


def _d_items() -> pd.DataFrame:
    items = sorted((i for i in CHART_ITEMS.values() if i.dbsource == "metavision"), key=lambda i: i.itemid)
    return pd.DataFrame({
        "itemid": np.array([i.itemid for i in items], dtype=np.int32), "label": [i.label for i in items],
        "abbreviation": [i.abbreviation for i in items], "linksto": "chartevents",
        "category": [i.category for i in items], "unitname": [i.unitname for i in items],
        "param_type": "Numeric", "lownormalvalue": np.nan, "highnormalvalue": np.nan,
    })
