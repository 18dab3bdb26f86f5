"""Hand-built query runs: the four Parquet files of the query-run contract, tiny and known."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from icurt.runs import RunStore

T0 = pd.Timestamp("2150-01-01 00:00")
HOUR = pd.Timedelta(hours=1)
SOURCE_COLUMNS = {
    "pivoted_vital": ["icustay_id", "charttime", "heartrate", "sysbp", "diasbp", "meanbp", "resprate",
                      "tempc", "spo2", "glucose"],
    "pivoted_lab": ["icustay_id", "hadm_id", "subject_id", "charttime", "aniongap", "albumin", "bands",
                    "bicarbonate", "bilirubin", "creatinine", "chloride", "glucose", "hematocrit",
                    "hemoglobin", "lactate", "platelet", "potassium", "ptt", "inr", "pt", "sodium",
                    "bun", "wbc", "magnesium", "calcium"],
    "pivoted_bg": ["icustay_id", "hadm_id", "charttime", "specimen", "aado2", "baseexcess",
                   "bicarbonate", "totalco2", "carboxyhemoglobin", "chloride", "calcium", "glucose",
                   "hematocrit", "hemoglobin", "intubated", "lactate", "methemoglobin", "o2flow",
                   "fio2", "so2", "pco2", "peep", "ph", "po2", "potassium", "requiredo2", "sodium",
                   "temperature", "tidalvolume", "ventilationrate", "ventilator"],
}


def stay(icustay_id: int, *, intime=T0, los_icu=3.0, age=60.0, los_hospital=5.0, died=0,
         admit_before_h=24.0) -> dict:
    """One icustay_detail row; outtime = intime + los_icu days."""
    intime = pd.Timestamp(intime)
    admittime = intime - admit_before_h * HOUR
    return {"subject_id": icustay_id + 1000, "hadm_id": icustay_id + 5000, "icustay_id": icustay_id,
            "gender": "F", "dod": pd.NaT, "admittime": admittime,
            "dischtime": admittime + pd.Timedelta(days=los_hospital), "los_hospital": los_hospital,
            "admission_age": age, "age_years": min(age, 91.4), "ethnicity": "WHITE",
            "ethnicity_grouped": "white", "hospital_expire_flag": died, "hospstay_seq": 1,
            "first_hosp_stay": True, "intime": intime, "outtime": intime + pd.Timedelta(days=los_icu),
            "los_icu": los_icu, "icustay_seq": 1, "first_icu_stay": True}


def measurements(source: str, rows: list[tuple]) -> pd.DataFrame:
    """A pivoted_* frame from (icustay_id, hours after T0 or a Timestamp, column, value) rows."""
    records = []
    for icustay_id, when, column, value in rows:
        charttime = when if isinstance(when, pd.Timestamp) else T0 + when * HOUR
        records.append({"icustay_id": icustay_id, "charttime": charttime, column: value})
    frame = pd.DataFrame(records, columns=SOURCE_COLUMNS[source])
    for column in SOURCE_COLUMNS[source]:
        if column not in ("icustay_id", "charttime", "specimen"):
            frame[column] = frame[column].astype("float64")
    frame["icustay_id"] = frame["icustay_id"].astype("Int64")
    frame["charttime"] = frame["charttime"].astype("datetime64[us]")
    return frame


@pytest.fixture
def qr():
    """Builders for hand-made query runs: qr.stay(...), qr.write(cfg, stays, vital=..., ...), qr.T0."""

    def write(cfg, stays: list[dict], vital=(), lab=(), bg=(), drop=None):
        detail = pd.DataFrame(stays)
        for column in ("admittime", "dischtime", "intime", "outtime", "dod"):
            detail[column] = detail[column].astype("datetime64[us]")
        frames = {"icustay_detail": detail, "pivoted_vital": measurements("pivoted_vital", list(vital)),
                  "pivoted_lab": measurements("pivoted_lab", list(lab)),
                  "pivoted_bg": measurements("pivoted_bg", list(bg))}
        with RunStore.from_config(cfg).create("query", cfg) as w:
            for name, frame in frames.items():
                frame.drop(columns=(drop or {}).get(name, [])).to_parquet(w.path / f"{name}.parquet",
                                                                          index=False)
        return w.run

    return SimpleNamespace(stay=stay, measurements=measurements, write=write, T0=T0, HOUR=HOUR)
