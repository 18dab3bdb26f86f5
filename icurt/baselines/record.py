"""The train stage's baselines: fit them on the run's folds, compare, write baselines.json
(format: baselines/compare.py) and baseline_predictions.parquet (fold, row, label, p_<model> per
held-out stay)."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from icurt.baselines.compare import build_baselines, format_baselines, write_baselines
from icurt.baselines.fit import BaselineSettings, baseline_predictions, fit_baselines
from icurt.baselines.summaries import BLOCKS, MEASURED_BLOCK

log = logging.getLogger("icurt")
PREDICTIONS_FILE = "baseline_predictions.parquet"


def write_run_baselines(run_path: Path, dataset, folds, bilstm: pd.DataFrame, metric: str = "auroc",
                        settings: BaselineSettings = BaselineSettings()) -> dict:
    """Fit both baselines on `folds` (the run's FoldRows) of `dataset`, compare them with the
    BiLSTM's held-out predictions `bilstm` (predictions.parquet), write the two files into the
    run folder, log the comparison and return the baselines.json dict. `metric`: the run's
    checkpoint metric, which the baselines' choices use too."""
    settings = replace(settings, metric=metric, measured_share=settings.measured_share and dataset.measured is not None)
    fits = fit_baselines(dataset.features, dataset.labels, folds, settings, dataset.measured)
    frame = baseline_predictions(fits, dataset.labels)
    blocks = list(BLOCKS) + ([MEASURED_BLOCK] if settings.measured_share else [])
    result = {**build_baselines(bilstm, frame, fits, blocks, asdict(settings)), "hours": int(dataset.features.shape[1])}
    frame.to_parquet(Path(run_path) / PREDICTIONS_FILE, index=False)
    write_baselines(run_path, result)
    for line in format_baselines(result).splitlines():
        (log.warning if line.startswith("WARNING") else log.info)("%s", line)
    return result
