"""The files of a train run beside its checkpoints (model/checkpoint.py) and summary
(model/summary.py): each fold's rows and patients, and every held-out prediction.

fold_<k>/val_indices.npy   the held-out dataset rows (int64); the attack's targets by default
fold_<k>/fit_indices.npy   the rows the model was fitted on
fold_<k>/choice_indices.npy  the rows its checkpoint was chosen on (= val_indices under the reference rule)
fold_<k>/subjects.npz      "train" and "validation": the sorted subject_ids on each side of the fold
fold_<k>/fold.json         {"fold", "best_epoch", "epochs_trained"}: written by the driver as soon as the
                           fold's training finished (after its checkpoint), so it marks a finished fold
                           that `icurt train --resume` keeps
predictions.parquet        one row per held-out stay: fold, row, stay_id, subject_id, label, p_died,
                           threshold, and on a synthetic cohort oracle_probability and ceiling_probability
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from icurt.errors import IcurtError
from icurt.files import read_json, read_npy, read_parquet, write_json
from icurt.model.folds import FoldRows

PREDICTIONS_FILE = "predictions.parquet"
FOLD_RECORD = "fold.json"


def write_fold_record(run_path: Path, fold: int, best_epoch: int, epochs_trained: int) -> None:
    """Mark fold `fold` finished (its checkpoint already saved in fold_<k>/): atomically, so a record
    on disk always belongs to a whole checkpoint."""
    write_json(Path(run_path) / f"fold_{fold}" / FOLD_RECORD,
               {"fold": int(fold), "best_epoch": int(best_epoch), "epochs_trained": int(epochs_trained)})


def read_fold_record(run_path: Path, fold: int) -> dict | None:
    """Fold `fold`'s record, or None when the fold has not finished training."""
    path = Path(run_path) / f"fold_{fold}" / FOLD_RECORD
    return read_json(path) if path.is_file() else None


def write_fold_rows(fold_dir: Path, rows: FoldRows, patients: np.ndarray) -> None:
    """A fold's rows and the patients on each side (`patients`: (N,) subject_id per dataset row)."""
    fold_dir.mkdir(parents=True, exist_ok=True)
    np.save(fold_dir / "val_indices.npy", np.asarray(rows.held_out, dtype=np.int64))
    np.save(fold_dir / "fit_indices.npy", np.asarray(rows.fit, dtype=np.int64))
    np.save(fold_dir / "choice_indices.npy", np.asarray(rows.choice, dtype=np.int64))
    train = np.union1d(rows.fit, rows.choice) if not rows.chooses_on_held_out else rows.fit
    np.savez(fold_dir / "subjects.npz", train=np.unique(patients[train]), validation=np.unique(patients[rows.held_out]))


def held_out_rows(train_run, fold: int) -> np.ndarray:
    """Fold `fold`'s held-out dataset rows of a train run; IcurtError when it records none."""
    path = Path(train_run.path) / f"fold_{fold}" / "val_indices.npy"
    if not path.is_file():
        raise IcurtError(f"train run {train_run.run_id} records no held-out rows for fold {fold} "
                         f"({path.name} is missing); pick samples = \"all\" or retrain")
    return read_npy(path).astype(np.int64)


def candidate_rows(train_run, fold: int, samples: str, num_samples: int) -> np.ndarray:
    """The dataset rows an attack of fold `fold`'s model may target: its held-out rows
    (`samples="held_out"`, samples it never trained on) or every row (`"all"`, the reference)."""
    if samples == "all":
        return np.arange(num_samples, dtype=np.int64)
    if samples != "held_out":
        raise IcurtError(f"samples must be held_out or all, got {samples!r}")
    return held_out_rows(train_run, fold)


def median_fold(summary: dict) -> int:
    """The fold whose chosen checkpoint has the median held-out validation loss (the reference's
    attacked fold; with an even number of folds the lower of the two middle ones)."""
    folds = sorted(summary["folds"], key=lambda f: (float(f["metrics"]["val_loss"]), int(f["fold"])))
    if not folds:
        raise IcurtError("the train run's summary has no folds to choose from")
    return int(folds[(len(folds) - 1) // 2]["fold"])


def write_predictions(run_path: Path, frame: pd.DataFrame) -> None:
    frame.to_parquet(Path(run_path) / PREDICTIONS_FILE, index=False)


def read_predictions(run_path: Path) -> pd.DataFrame | None:
    """The held-out predictions of a train run, or None for a run written before they were kept."""
    path = Path(run_path) / PREDICTIONS_FILE
    return read_parquet(path) if path.is_file() else None
