"""Views of the data stages: a query run's tables and a preprocess run's dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd

from icurt.errors import IcurtError
from icurt.files import read_json
from icurt.views.base import RunView


class QueryRunView(RunView):
    """A query run: the four queries' rows, as the database returned them (clinical units)."""

    def table(self, name: str) -> pd.DataFrame:
        """One query's rows (`name` one of `tables()`'s keys, e.g. 'pivoted_vital'); IcurtError
        when the run has no such table."""
        path = self.file(f"{name}.parquet")
        if not path.is_file():
            raise IcurtError(f"query run {self.run_id} has no table '{name}'; it has: {', '.join(self.table_names())}")
        return pd.read_parquet(path)

    def table_names(self) -> list[str]:
        return sorted(p.stem for p in self.path.glob("*.parquet"))

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every query's rows, by query name."""
        return {name: self.table(name) for name in self.table_names()}

    def stats(self) -> pd.DataFrame:
        """Rows, query seconds and write seconds per query (query_stats.json), one row per query."""
        from icurt.stages.query import STATS_FILE

        return pd.DataFrame.from_dict(read_json(self.file(STATS_FILE)), orient="index")


class PreprocessRunView(RunView):
    """A preprocess run: the dataset every later stage reads."""

    def dataset(self):
        """The icurt.dataset.Dataset: `features` (N, T, F) float32 scaled to [0, 1], `labels` (N,)
        int64 (1 = died in hospital), `stay_ids` / `subject_ids` / `hadm_ids` (N,) int64,
        `feature_names` (F names, the last axis), `normalisation` (per feature p_low, p_high,
        median in clinical units), `measured` (N, T, F) bool (the cell holds a measurement)."""
        from icurt.dataset import load_dataset

        return self._once("dataset", lambda: load_dataset(self.path))

    def stay(self, sample: int, clinical: bool = True) -> pd.DataFrame:
        """One sample's (T, F) values as a frame (rows: hours 0..T-1, columns: feature names), in
        clinical units (v · (p_high − p_low) + p_low, icurt.attack.budget.to_clinical) or scaled
        [0, 1] with `clinical=False`. `sample` is a row of the dataset (0..N-1); IndexError outside."""
        from icurt.attack.budget import to_clinical

        ds = self.dataset()
        values = ds.features[sample]
        if clinical:
            values = to_clinical(values, ds.normalisation, ds.feature_names)
        frame = pd.DataFrame(values, columns=ds.feature_names)
        frame.index.name = "hour"
        return frame

    def labels(self) -> pd.DataFrame:
        """One row per sample: stay_id, subject_id (when recorded), label (1 = died)."""
        ds = self.dataset()
        columns = {"stay_id": ds.stay_ids, "label": ds.labels}
        if ds.subject_ids is not None:
            columns["subject_id"] = ds.subject_ids
        return pd.DataFrame(columns, index=pd.RangeIndex(len(ds.labels), name="sample"))

    def cohort(self) -> dict:
        """cohort.json: the rows left after each inclusion filter, and the median-filled shares."""
        return read_json(self.file("cohort.json"))

    def measured_share(self) -> pd.Series:
        """Per feature, the share of (sample, hour) cells that hold a measurement (not interpolated,
        held or imputed); NaN when the run has no measured mask."""
        ds = self.dataset()
        if ds.measured is None:
            return pd.Series(np.nan, index=ds.feature_names, name="measured")
        return pd.Series(ds.measured.mean(axis=(0, 1)), index=ds.feature_names, name="measured")
