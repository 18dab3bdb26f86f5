"""PhysioNet-style MIMIC-III CSV files written from a synthetic cohort's frames (for load-csv tests)."""

from __future__ import annotations

import gzip
import math
from datetime import datetime

import pandas as pd

GZIPPED = {"chartevents", "labevents"}
LOWER_CASE_NAME = {"d_items"}


def _field(value) -> str:
    """One CSV field the way PhysioNet writes MIMIC-III: text quoted, NULL as an empty field."""
    if value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (pd.Timestamp, datetime)):
        value = value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        return '"' + value.replace('"', '""') + '"'
    return str(value)


def write_physionet_csv(frame: pd.DataFrame, folder, table: str) -> None:
    name = table if table in LOWER_CASE_NAME else table.upper()
    lines = [",".join(f'"{column.upper()}"' for column in frame.columns)]
    for row in frame.astype(object).itertuples(index=False):
        lines.append(",".join(_field(v) for v in row))
    text = ("\n".join(lines) + "\n").encode()
    if table in GZIPPED:
        (folder / f"{name}.csv.gz").write_bytes(gzip.compress(text))
    else:
        (folder / f"{name}.csv").write_bytes(text)
