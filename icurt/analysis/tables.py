"""The analyze run's tables, written and read only here: headline.json/.csv, distributions,
feature and hour statistics, susceptibility per direction and kind, clinical changes, discovery
curves and raised/lowered counts per feature (CSV)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from icurt.analysis.stats import DIRECTIONS, KINDS, Analysis
from icurt.files import read_json, write_json

HEADLINE_FILE = "headline.json"


def write_tables(folder: Path, analysis: Analysis, attack_run_id: str, fragility: dict | None = None) -> None:
    """The tables; `fragility` is the fragility run's headline per direction (fragility.json)."""
    folder = Path(folder)
    rows = analysis.headline.to_dict(orient="records")
    write_json(folder / HEADLINE_FILE, {"attack_run": attack_run_id,
                                        "rows": [{k: _plain(v) for k, v in row.items()} for row in rows],
                                        "fragility": fragility or {}})
    analysis.headline.to_csv(folder / "headline.csv", index=False)
    analysis.distributions.to_csv(folder / "distributions.csv", index=False)
    analysis.feature_stats.to_csv(folder / "feature_stats.csv", index=False)
    analysis.hour_stats.to_csv(folder / "hour_stats.csv", index=False)
    analysis.discovery.to_csv(folder / "discovery.csv", index=False)
    analysis.signs.to_csv(folder / "signs.csv", index=False)
    clinical = []
    for direction in DIRECTIONS:
        for kind in KINDS:
            analysis.susceptibility[direction, kind].to_csv(
                folder / f"susceptibility_{direction}_{kind}.csv", index=False)
            clinical.append(analysis.clinical[direction, kind].assign(direction=direction, kind=kind))
    # empty frames (a direction with no flip) left out: pandas will stop ignoring them in a concat
    filled = [frame for frame in clinical if not frame.empty]
    (pd.concat(filled, ignore_index=True) if filled else clinical[0]).to_csv(folder / "clinical_changes.csv",
                                                                              index=False)


def read_headline(folder: Path) -> pd.DataFrame:
    return pd.DataFrame(read_json(Path(folder) / HEADLINE_FILE)["rows"])


def read_fragility_headline(folder: Path) -> dict:
    return read_json(Path(folder) / HEADLINE_FILE).get("fragility", {})


def _plain(value):
    """A table cell as a JSON value: numpy scalars unwrapped, NaN as null."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value
