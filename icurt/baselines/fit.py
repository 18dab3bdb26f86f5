"""Fit the two baselines on a train run's own folds (pure: scikit-learn, no Ray).

Each fold k of the train run (model/folds.py FoldRows, as the run recorded them in fold_<k>/) is
used exactly as the BiLSTM used it: the baselines fit on its `fit` rows, make their one choice on
its `choice` rows (the inner validation split; under the reference rule, checkpoint_split =
"held_out", that is the held-out fold, optimistic as it is for the BiLSTM) and are scored on its
`held_out` rows, so every held-out stay is predicted by models that never saw its patient.

- logistic regression: StandardScaler + LogisticRegression (L2, lbfgs) on the summaries
  (baselines/summaries.py); C is the value of `c_grid` with the best choice-rows score.
- boosted trees: HistGradientBoostingClassifier (fixed learning rate, leaves, no early stopping of
  its own, whose validation part would be a random split of stays, not the fold's); the number of
  boosting iterations is the one with the best choice-rows score along its staged predictions.
The score is the train run's checkpoint metric: "auroc" (higher is better) or "val_loss"
(log loss, lower is better); ties go to the smaller C / fewer iterations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from icurt.baselines.summaries import summaries
from icurt.files import read_npy
from icurt.model.folds import FoldRows

MODELS = {"logistic_regression": "logistic regression", "boosted_trees": "boosted trees"}


@dataclass(frozen=True)
class BaselineSettings:
    """How the baselines are fitted (fixed here: the point is a standard baseline, not a tuned one)."""

    c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)   # logistic regression's inverse L2 strength
    max_iter: int = 1000                                 # lbfgs iterations
    tree_iterations: int = 200                           # boosted trees: the most boosting iterations
    tree_learning_rate: float = 0.1
    tree_leaves: int = 15
    metric: str = "auroc"                                # "auroc" or "val_loss", as [train].checkpoint_metric
    measured_share: bool = False                         # add the share-measured block (summaries.py)
    seed: int = 0
    threads: int = 1    # BLAS/OpenMP threads: on a shared CPU, HGB's OpenMP threads spin (measured 30× slower
                        # on 2 busy cores); one thread fits 32,000 stays in seconds


@dataclass(frozen=True)
class FoldFit:
    """One fold's baselines: held-out P(died) per model (aligned with `held_out`), what was chosen,
    and the fitted logistic-regression pipeline (icurt/baselines/torch_lr.py rebuilds it in torch)."""

    fold: int
    held_out: np.ndarray           # (n,) int64 dataset rows
    p: dict[str, np.ndarray]       # model name -> (n,) P(died)
    chosen: dict[str, dict]        # {"logistic_regression": {"C": …}, "boosted_trees": {"iterations": …}}
    logistic: object               # sklearn Pipeline(StandardScaler, LogisticRegression)


def recorded_folds(run_path: Path) -> list[FoldRows]:
    """The folds a train run recorded (fold_<k>/fit_indices.npy, choice_indices.npy,
    val_indices.npy; model/train_run.py), fold 0 first. IcurtError (icurt/files.py) when one is
    damaged; [] for a run without fold folders."""
    folders = sorted(Path(run_path).glob("fold_*"), key=lambda p: int(p.name.split("_")[1]))
    return [FoldRows(read_npy(f / "fit_indices.npy").astype(np.int64),
                     read_npy(f / "choice_indices.npy").astype(np.int64),
                     read_npy(f / "val_indices.npy").astype(np.int64))
            for f in folders if (f / "val_indices.npy").is_file()]


def score(labels: np.ndarray, p: np.ndarray, metric: str) -> float:
    """The choice score, higher is better: AUROC, or minus the log loss for "val_loss"."""
    from sklearn.metrics import log_loss, roc_auc_score

    if metric == "auroc":
        return float(roc_auc_score(labels, p))
    if metric == "val_loss":
        return -float(log_loss(labels, np.clip(p, 1e-12, 1 - 1e-12), labels=[0, 1]))
    raise ValueError(f"metric must be auroc or val_loss, got {metric!r}")


def fit_logistic(x: np.ndarray, y: np.ndarray, rows: FoldRows, settings: BaselineSettings):
    """(pipeline, C): StandardScaler + LogisticRegression fitted on the fit rows with the C of
    `settings.c_grid` that scores best on the choice rows. x: (N, D) summaries, y: (N,) labels."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = None
    for c in sorted(settings.c_grid):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=settings.max_iter))
        model.fit(x[rows.fit], y[rows.fit])
        s = score(y[rows.choice], model.predict_proba(x[rows.choice])[:, 1], settings.metric)
        if best is None or s > best[0]:
            best = (s, model, c)
    return best[1], best[2]


def fit_trees(x: np.ndarray, y: np.ndarray, rows: FoldRows, settings: BaselineSettings):
    """(held-out P(died), iterations): HistGradientBoostingClassifier fitted on the fit rows, cut
    at the boosting iteration that scores best on the choice rows (its staged predictions)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=settings.tree_iterations, learning_rate=settings.tree_learning_rate,
                                           max_leaf_nodes=settings.tree_leaves, early_stopping=False,
                                           random_state=settings.seed)
    model.fit(x[rows.fit], y[rows.fit])
    scores = [score(y[rows.choice], p[:, 1], settings.metric) for p in model.staged_predict_proba(x[rows.choice])]
    best = int(np.argmax(scores))          # the first of the best: fewest iterations
    for i, p in enumerate(model.staged_predict_proba(x[rows.held_out])):
        if i == best:
            return p[:, 1], best + 1
    raise AssertionError("unreachable: staged predictions end before the chosen iteration")


def fit_fold(fold: int, x: np.ndarray, y: np.ndarray, rows: FoldRows, settings: BaselineSettings) -> FoldFit:
    """Both baselines on one fold; x is the (N, D) summary matrix of the whole dataset."""
    logistic, c = fit_logistic(x, y, rows, settings)
    p_trees, iterations = fit_trees(x, y, rows, settings)
    p = {"logistic_regression": logistic.predict_proba(x[rows.held_out])[:, 1], "boosted_trees": p_trees}
    return FoldFit(fold, np.asarray(rows.held_out, np.int64), p,
                   {"logistic_regression": {"C": c}, "boosted_trees": {"iterations": iterations}}, logistic)


def fit_baselines(features: np.ndarray, labels: np.ndarray, folds: list[FoldRows],
                  settings: BaselineSettings = BaselineSettings(),
                  measured: np.ndarray | None = None) -> list[FoldFit]:
    """Both baselines on every fold of `folds` (the train run's). features: (N, T, F) scaled,
    labels: (N,) 1 = died, measured: (N, T, F) bool, used only with settings.measured_share."""
    from threadpoolctl import threadpool_limits

    x = summaries(features, measured if settings.measured_share else None)
    y = np.asarray(labels, dtype=np.int64)
    with threadpool_limits(settings.threads):
        return [fit_fold(k, x, y, rows, settings) for k, rows in enumerate(folds)]


def baseline_predictions(fits: list[FoldFit], labels: np.ndarray) -> pd.DataFrame:
    """One row per held-out stay: fold, row, label and p_<model> for each baseline."""
    frames = [pd.DataFrame({"fold": np.int64(f.fold), "row": f.held_out, "label": np.asarray(labels)[f.held_out],
                            **{f"p_{name}": f.p[name] for name in MODELS}}) for f in fits]
    return pd.concat(frames, ignore_index=True)
