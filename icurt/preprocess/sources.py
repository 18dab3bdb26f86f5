"""Which query table each feature is read from: fixed for most, a [preprocess].<feature>_source
setting where MIMIC-III measures the same thing in two panels.

The column holding a feature has the feature's name in every table that offers it (pivoted_lab's
`calcium` is total calcium 50893, mg/dL; pivoted_bg's is free/ionized calcium 50808, mmol/L). A
feature read from both tables is merged by charttime (icurt/preprocess/stay.py): at a timestamp
both measured, the mean of the two.
"""

from __future__ import annotations

from icurt.config import PreprocessConfig

VITAL, LAB, BG = "pivoted_vital", "pivoted_lab", "pivoted_bg"
TABLES = (VITAL, LAB, BG)
FIXED_TABLE = {
    **dict.fromkeys(("ph", "pco2", "lactate"), BG),   # lactate: 50813 in both tables, the same item
    **dict.fromkeys(("albumin", "bun", "creatinine", "platelet", "magnesium"), LAB),
    **dict.fromkeys(("heartrate", "sysbp", "diasbp", "tempc", "resprate", "spo2"), VITAL),
}
CHOOSABLE = ("potassium", "calcium", "sodium", "glucose", "bicarbonate")  # [preprocess].<name>_source
SOURCE_TABLES = {"blood_gas": (BG,), "chemistry": (LAB,), "both": (BG, LAB)}


def feature_tables(feature: str, settings: PreprocessConfig) -> tuple[str, ...]:
    """The tables `feature` is read from under these settings (two: merged by charttime)."""
    if feature in FIXED_TABLE:
        return (FIXED_TABLE[feature],)
    return SOURCE_TABLES[getattr(settings, f"{feature}_source")]


def source_features(features, settings: PreprocessConfig) -> dict[str, list[str]]:
    """The requested features read from each table, in the requested order (every table listed)."""
    return {table: [f for f in features if table in feature_tables(f, settings)] for table in TABLES}


def merged_features(features, settings: PreprocessConfig) -> list[str]:
    """The features read from two tables (merged by charttime)."""
    return [f for f in features if len(feature_tables(f, settings)) > 1]
