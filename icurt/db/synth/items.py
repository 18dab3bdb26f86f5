"""What the synthetic cohort measures: physiological signals, MIMIC-III item ids, labels and units.

A *signal* is a per-stay quantity (baseline + severity drift + noise); chart and lab *items* are
the MIMIC-III rows that record it (several items may share a signal: lab and blood-gas potassium,
°C and °F temperature, CareVue and MetaVision heart rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Signal:
    """value = mean + between_sd·z_stay + effect·severity·drift(t) + wave·sin(…) + noise_sd·ε.

    On the log scale when `log`; clipped to [low, high].
    """

    mean: float
    between_sd: float
    noise_sd: float
    effect: float
    log: bool = False
    wave: float = 0.0
    low: float = -math.inf
    high: float = math.inf


_LN = math.log
# Effects are per unit of severity (s ~ N(0, 1)); each is under ~0.8 between-stay SDs so that no
# single feature, let alone a single measurement, gives the outcome away.
SIGNALS: dict[str, Signal] = {
    "heartrate": Signal(86, 13, 6, 6, wave=4, low=30, high=220),
    "sysbp": Signal(119, 16, 9, -7, wave=5, low=55, high=230),
    "diasbp": Signal(61, 10, 7, -4, wave=3, low=25, high=150),
    "meanbp": Signal(80, 11, 7, -5, wave=3, low=35, high=170),
    "resprate": Signal(19, 4, 3, 1.8, wave=1, low=5, high=60),
    "tempc": Signal(36.9, 0.45, 0.3, 0.15, wave=0.2, low=33, high=41.5),
    "spo2": Signal(97, 1.6, 1.3, -0.9, low=70, high=100),
    "glucose": Signal(135, 28, 22, 6, low=35, high=600),
    "sodium": Signal(139, 3.5, 1.2, -0.5, low=115, high=165),
    "potassium": Signal(4.1, 0.4, 0.3, 0.1, low=2.2, high=7.5),
    "chloride": Signal(104, 4, 1.5, 0.3, low=80, high=130),
    "bicarbonate": Signal(24.5, 3, 1.3, -1.5, low=6, high=45),
    "aniongap": Signal(13.5, 2.5, 1.2, 1.2, low=4, high=35),
    "bun": Signal(_LN(22), 0.5, 0.08, 0.18, log=True, low=2, high=250),
    "creatinine": Signal(_LN(1.1), 0.45, 0.07, 0.16, log=True, low=0.2, high=15),
    "magnesium": Signal(2.0, 0.25, 0.12, 0.03, low=0.8, high=4.5),
    "albumin": Signal(3.1, 0.5, 0.15, -0.18, low=1.0, high=5.5),
    "platelet": Signal(_LN(200), 0.45, 0.06, -0.14, log=True, low=5, high=1200),
    "hematocrit": Signal(31, 4, 1.2, -0.6, low=15, high=55),
    "wbc": Signal(_LN(10.5), 0.4, 0.1, 0.1, log=True, low=0.3, high=90),
    "inr": Signal(_LN(1.3), 0.25, 0.05, 0.06, log=True, low=0.8, high=12),
    "ptt": Signal(_LN(32), 0.25, 0.08, 0.05, log=True, low=18, high=149),
    "bilirubin": Signal(_LN(0.9), 0.8, 0.1, 0.12, log=True, low=0.1, high=45),
    "ph": Signal(7.39, 0.045, 0.03, -0.03, low=6.8, high=7.7),
    "pco2": Signal(41, 6, 4, 0.5, low=15, high=110),
    "po2": Signal(115, 35, 30, -8, low=30, high=600),
    "lactate": Signal(_LN(1.5), 0.4, 0.15, 0.28, log=True, low=0.3, high=25),
    "calcium": Signal(1.13, 0.06, 0.035, -0.02, low=0.7, high=1.6),
    "fio2": Signal(50, 12, 5, 5, low=21, high=100),
}
SIGNAL_NAMES = tuple(SIGNALS)
NEONATE_SHIFT = {"heartrate": 55.0, "resprate": 22.0, "sysbp": -50.0, "diasbp": -25.0, "meanbp": -35.0}


@dataclass(frozen=True)
class ChartItem:
    itemid: int
    label: str
    abbreviation: str | None
    dbsource: str
    category: str | None
    unitname: str | None
    valueuom: str
    fahrenheit: bool = False


def _cv(itemid, label, uom, category=None, fahrenheit=False):
    return ChartItem(itemid, label, None, "carevue", category, None, uom, fahrenheit)


def _mv(itemid, label, abbreviation, category, uom, fahrenheit=False):
    return ChartItem(itemid, label, abbreviation, "metavision", category, uom, uom, fahrenheit)


CHART_ITEMS: dict[int, ChartItem] = {item.itemid: item for item in [
    _cv(211, "Heart Rate", "BPM"), _cv(51, "Arterial BP [Systolic]", "mmHg"),
    _cv(6701, "Arterial BP #2 [Systolic]", "mmHg"), _cv(455, "NBP [Systolic]", "mmHg"),
    _cv(442, "Manual BP [Systolic]", "mmHg"), _cv(8368, "Arterial BP [Diastolic]", "mmHg"),
    _cv(8441, "NBP [Diastolic]", "mmHg"), _cv(8440, "Manual BP [Diastolic]", "mmHg"),
    _cv(52, "Arterial BP Mean", "mmHg"), _cv(456, "NBP Mean", "mmHg"),
    _cv(443, "Manual BP Mean(calc)", "mmHg"), _cv(618, "Respiratory Rate", "BPM"),
    _cv(615, "Resp Rate (Total)", "BPM"), _cv(676, "Temperature C", "Deg. C"),
    _cv(678, "Temperature F", "Deg. F", fahrenheit=True), _cv(646, "SpO2", "%"),
    _cv(811, "Glucose (70-105)", "mg/dL", "Chemistry"), _cv(807, "Fingerstick Glucose", "mg/dL", "Chemistry"),
    _cv(3744, "Blood Glucose", "mg/dL", "Chemistry"),
    _mv(220045, "Heart Rate", "HR", "Routine Vital Signs", "bpm"),
    _mv(220050, "Arterial Blood Pressure systolic", "ABPs", "Routine Vital Signs", "mmHg"),
    _mv(220179, "Non Invasive Blood Pressure systolic", "NBPs", "Routine Vital Signs", "mmHg"),
    _mv(220051, "Arterial Blood Pressure diastolic", "ABPd", "Routine Vital Signs", "mmHg"),
    _mv(220180, "Non Invasive Blood Pressure diastolic", "NBPd", "Routine Vital Signs", "mmHg"),
    _mv(220052, "Arterial Blood Pressure mean", "ABPm", "Routine Vital Signs", "mmHg"),
    _mv(225312, "ART BP mean", "ART BP mean", "Routine Vital Signs", "mmHg"),
    _mv(220181, "Non Invasive Blood Pressure mean", "NBPm", "Routine Vital Signs", "mmHg"),
    _mv(220210, "Respiratory Rate", "RR", "Respiratory", "insp/min"),
    _mv(224690, "Respiratory Rate (Total)", "Respiratory Rate (Total)", "Respiratory", "insp/min"),
    _mv(223762, "Temperature Celsius", "Temperature C", "Routine Vital Signs", "?C"),
    _mv(223761, "Temperature Fahrenheit", "Temperature F", "Routine Vital Signs", "?F", fahrenheit=True),
    _mv(220277, "O2 saturation pulseoxymetry", "SpO2", "Respiratory", "%"),
    _mv(225664, "Glucose finger stick", "Glucose finger stick", "Labs", "mg/dL"),
    _mv(220621, "Glucose (serum)", "Glucose (serum)", "Labs", "mg/dL"),
]}


@dataclass(frozen=True)
class Vital:
    """A chart stream: which signal, how often per hourly slot, and the candidate items per system.

    Item choices are (itemid, weight) per (dbsource, arterial line) — BP items depend on the line.
    """

    name: str
    signal: str
    decimals: int
    carevue: tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]
    metavision: tuple[tuple[tuple[int, float], ...], tuple[tuple[int, float], ...]]


def _same(choices):
    return (choices, choices)


VITALS: tuple[Vital, ...] = (
    Vital("heartrate", "heartrate", 0, _same(((211, 1.0),)), _same(((220045, 1.0),))),
    Vital("sysbp", "sysbp", 0, (((455, .95), (442, .05)), ((51, .95), (6701, .05))),
          (((220179, 1.0),), ((220050, 1.0),))),
    Vital("diasbp", "diasbp", 0, (((8441, .95), (8440, .05)), ((8368, 1.0),)),
          (((220180, 1.0),), ((220051, 1.0),))),
    Vital("meanbp", "meanbp", 0, (((456, .95), (443, .05)), ((52, 1.0),)),
          (((220181, 1.0),), ((220052, .9), (225312, .1)))),
    Vital("resprate", "resprate", 0, _same(((618, .9), (615, .1))), _same(((220210, .9), (224690, .1)))),
    Vital("tempc", "tempc", 1, _same(((678, .6), (676, .4))), _same(((223761, .8), (223762, .2)))),
    Vital("spo2", "spo2", 0, _same(((646, 1.0),)), _same(((220277, 1.0),))),
    Vital("glucose", "glucose", 0, _same(((811, .6), (807, .3), (3744, .1))),
          _same(((225664, .8), (220621, .2)))),
)


@dataclass(frozen=True)
class LabItem:
    """A labevents item: value = scale·signal + offset, rounded; `panel` decides when it is drawn."""

    itemid: int
    label: str
    fluid: str
    category: str
    loinc_code: str | None
    signal: str | None
    valueuom: str | None
    decimals: int
    panel: str
    normal: tuple[float, float] | None = None
    scale: float = 1.0
    offset: float = 0.0


def _lab(itemid, label, loinc, signal, uom, decimals, panel, normal=None, scale=1.0, offset=0.0,
         category="Chemistry"):
    return LabItem(itemid, label, "Blood", category, loinc, signal, uom, decimals, panel, normal,
                   scale, offset)


def _bg(itemid, label, loinc, signal, uom, decimals, panel, normal=None, scale=1.0, offset=0.0):
    return _lab(itemid, label, loinc, signal, uom, decimals, panel, normal, scale, offset, "Blood Gas")


SPECIMEN_ITEMID = 50800
LAB_ITEMS: tuple[LabItem, ...] = (
    _lab(50983, "Sodium", "2951-2", "sodium", "mEq/L", 0, "chem", (133, 145)),
    _lab(50971, "Potassium", "2823-3", "potassium", "mEq/L", 1, "chem", (3.3, 5.1)),
    _lab(50902, "Chloride", "2075-0", "chloride", "mEq/L", 0, "chem", (96, 108)),
    _lab(50882, "Bicarbonate", "1963-8", "bicarbonate", "mEq/L", 0, "chem", (22, 32)),
    _lab(50868, "Anion Gap", "1863-0", "aniongap", "mEq/L", 0, "chem", (8, 20)),
    _lab(51006, "Urea Nitrogen", "3094-0", "bun", "mg/dL", 0, "chem", (6, 20)),
    _lab(50912, "Creatinine", "2160-0", "creatinine", "mg/dL", 1, "chem", (0.4, 1.1)),
    _lab(50931, "Glucose", "2345-7", "glucose", "mg/dL", 0, "chem", (70, 105)),
    _lab(50960, "Magnesium", "2601-3", "magnesium", "mg/dL", 1, "magnesium", (1.6, 2.6)),
    _lab(50862, "Albumin", "1751-7", "albumin", "g/dL", 1, "albumin", (3.4, 4.8)),
    _lab(50885, "Bilirubin, Total", "1975-2", "bilirubin", "mg/dL", 1, "bilirubin", (0, 1.5)),
    _lab(51221, "Hematocrit", "4544-3", "hematocrit", "%", 1, "cbc", (36, 48), category="Hematology"),
    _lab(51222, "Hemoglobin", "718-7", "hematocrit", "g/dL", 1, "cbc", (12, 16), scale=1 / 2.95,
         category="Hematology"),
    _lab(51265, "Platelet Count", "777-3", "platelet", "K/uL", 0, "cbc", (150, 440), category="Hematology"),
    _lab(51301, "White Blood Cells", "804-5", "wbc", "K/uL", 1, "cbc", (4, 11), category="Hematology"),
    _lab(51237, "INR(PT)", "5895-7", "inr", None, 1, "coag", (0.9, 1.1), category="Hematology"),
    _lab(51274, "PT", "5902-2", "inr", "sec", 1, "coag", (10.4, 13.4), scale=10.5, category="Hematology"),
    _lab(51275, "PTT", "3173-2", "ptt", "sec", 1, "coag", (22, 35), category="Hematology"),
    _bg(50813, "Lactate", "32693-4", "lactate", "mmol/L", 1, "lactate", (0.5, 2)),
    _bg(SPECIMEN_ITEMID, "SPECIMEN TYPE", None, None, None, 0, "bg"),
    _bg(50820, "pH", "11558-4", "ph", "units", 2, "bg", (7.35, 7.45)),
    _bg(50818, "pCO2", "11557-6", "pco2", "mm Hg", 0, "bg", (35, 45)),
    _bg(50821, "pO2", "11556-8", "po2", "mm Hg", 0, "bg", (85, 105)),
    _bg(50802, "Base Excess", "11555-0", "bicarbonate", "mEq/L", 0, "bg", offset=-24.5),
    _bg(50804, "Calculated Total CO2", "34728-6", "bicarbonate", "mEq/L", 0, "bg", (21, 30), offset=1.0),
    _bg(50822, "Potassium, Whole Blood", "6298-4", "potassium", "mEq/L", 1, "bg_lytes", (3.5, 5.3)),
    _bg(50808, "Free Calcium", "1994-3", "calcium", "mmol/L", 2, "bg_lytes", (1.12, 1.32)),
    _bg(50809, "Glucose", "2339-0", "glucose", "mg/dL", 0, "bg_glucose", (70, 105)),
    _bg(50816, "Oxygen", "19994-3", "fio2", "%", 0, "bg_fio2"),
    _bg(50817, "Oxygen Saturation", "20564-1", "spo2", "%", 0, "bg_fio2", (95, 100)),
)
# Probability that a draw of that kind includes the panel (lab draws vs blood-gas draws).
LAB_PANELS = {"chem": 0.95, "cbc": 0.9, "coag": 0.5, "magnesium": 0.85, "albumin": 0.35,
              "bilirubin": 0.2, "lactate": 0.15}
BG_PANELS = {"bg": 1.0, "lactate": 0.7, "bg_lytes": 0.5, "bg_glucose": 0.3, "bg_fio2": 0.4}
SPECIMENS = ("ART", "VEN", "MIX")
SPECIMEN_WEIGHTS = (0.88, 0.09, 0.03)


def _dictionary_frame(items, **columns) -> pd.DataFrame:
    """row_id and itemid, then one column per keyword: a list of values, or the name of an item field."""
    return pd.DataFrame({
        "row_id": np.arange(1, len(items) + 1, dtype=np.int32),
        "itemid": np.array([i.itemid for i in items], dtype=np.int32),
        **{name: [getattr(i, values) for i in items] if isinstance(values, str) else values
           for name, values in columns.items()},
    })


def d_items_frame() -> pd.DataFrame:
    """d_items rows for every chart item the generator uses."""
    items = sorted(CHART_ITEMS.values(), key=lambda item: item.itemid)
    return _dictionary_frame(
        items, label="label", abbreviation="abbreviation", dbsource="dbsource", linksto=["chartevents"] * len(items),
        category="category", unitname="unitname",
        param_type=["Numeric" if i.dbsource == "metavision" else None for i in items],
        conceptid=pd.array([None] * len(items), dtype="Int32"))


def d_labitems_frame() -> pd.DataFrame:
    """d_labitems rows for every lab item the generator uses."""
    items = sorted(LAB_ITEMS, key=lambda item: item.itemid)
    return _dictionary_frame(items, label="label", fluid="fluid", category="category", loinc_code="loinc_code")
