"""The view of a train run: per-fold metrics, the verdict, held-out predictions, each fold's model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from icurt.errors import IcurtError
from icurt.views.base import RunView

SPLITS = {"held_out": "metrics", "train": "train_metrics"}


class TrainRunView(RunView):
    """A train run: k folds, each with its chosen checkpoint."""

    def summary(self) -> dict:
        """summary.json as written (icurt/model/summary.py): rule, folds, mean, sd, train_mean, train_sd."""
        from icurt.model.summary import read_summary

        return self._once("summary", lambda: read_summary(self.path))

    @property
    def folds(self) -> list[int]:
        """The fold numbers, ascending."""
        return sorted(int(f["fold"]) for f in self.summary()["folds"])

    def metrics(self, split: str = "held_out") -> pd.DataFrame:
        """One row per fold (index `fold`): best_epoch, threshold (the F1 threshold, on P(died)) and
        every metric — auroc, auprc, brier, f1, precision, recall, accuracy, val_loss — measured on
        the fold's held-out samples (`split="held_out"`) or on those it was fitted on (`"train"`).
        The mean ± sd over folds are `summary()["mean"]` / `["sd"]` (sd with ddof = 1)."""
        if split not in SPLITS:
            raise IcurtError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        rows = [{"fold": int(f["fold"]), "best_epoch": f.get("best_epoch"), "threshold": f.get("threshold"),
                 **f.get(SPLITS[split], {})} for f in self.summary()["folds"]]
        return pd.DataFrame(rows).set_index("fold").sort_index()

    def verdict(self) -> dict | None:
        """verdict.json (icurt/analysis/verdict.py): bootstrap intervals of AUROC and AUPRC, Brier,
        reliability, the oracle gap on a synthetic cohort, the warnings; None for an older run."""
        from icurt.analysis.verdict import read_verdict

        return read_verdict(self.path)

    def verdict_text(self) -> str:
        """The verdict as `icurt show train` prints it ('' for a run without one)."""
        from icurt.analysis.verdict import format_verdict

        verdict = self.verdict()
        return format_verdict(verdict) if verdict else ""

    def baselines(self) -> dict | None:
        """baselines.json (icurt/baselines/compare.py): logistic regression and boosted trees on the
        run's folds beside the BiLSTM, AUROC/AUPRC with intervals, the paired BiLSTM − best baseline
        AUROC and its banner; None for an older run."""
        from icurt.baselines.compare import read_baselines

        return self._once("baselines", lambda: read_baselines(self.path))

    def baseline_model(self, fold: int):
        """Fold `fold`'s logistic-regression baseline as a torch.nn.Module (icurt/baselines/torch_lr.py):
        input (B, T, F) scaled features, output (B, 2) logits [0, z], like `model(fold)`, so the
        fragility sweep attacks it unchanged; IcurtError for a run without baselines or that fold."""
        from icurt.baselines.torch_lr import from_record

        weights = {w["fold"]: w for w in (self.baselines() or {}).get("logistic_weights", [])}
        if fold not in weights:
            raise IcurtError(f"train run {self.run_id} has no logistic-regression baseline for fold {fold} "
                             "(baselines.json is missing or older); rerun `icurt train`")
        return from_record(weights[fold], int(self.baselines()["hours"])).eval()

    def predictions(self) -> pd.DataFrame:
        """predictions.parquet: every held-out prediction — fold, row (of the dataset), stay_id,
        subject_id, label, p_died (probability), threshold, and on a synthetic cohort its oracle
        and ceiling probabilities; IcurtError for a run written before predictions were kept."""
        from icurt.model.train_run import read_predictions

        frame = read_predictions(self.path)
        if frame is None:
            raise IcurtError(f"train run {self.run_id} kept no predictions.parquet (an older icurt); rerun `icurt train`")
        return frame

    def held_out(self, fold: int) -> np.ndarray:
        """(n,) int64: the dataset rows fold `fold` held out (never fitted on)."""
        from icurt.model.train_run import held_out_rows

        return held_out_rows(self.run, fold)

    def checkpoint(self, fold: int):
        """Fold `fold`'s icurt.model.checkpoint.Checkpoint (weights, hyperparameters, input width)."""
        from icurt.model.checkpoint import load_fold

        return load_fold(self.run, fold)

    def model(self, fold: int, device: str = "cpu"):
        """Fold `fold`'s chosen model as a torch.nn.Module in eval mode on `device`: input (B, T, F)
        float32 scaled features, output (B, 2) pre-softmax logits (survived, died); IcurtError
        naming the folds the run has when `fold` is not one of them."""
        return self.checkpoint(fold).build(device)

    def predict(self, features: np.ndarray, fold: int) -> np.ndarray:
        """(N,) P(died) of fold `fold`'s model for `features` (N, T, F) scaled to [0, 1] (softmax of
        its two logits), computed on the CPU in one batch."""
        import torch

        with torch.no_grad():
            logits = self.model(fold)(torch.as_tensor(np.asarray(features, np.float32)))
        return torch.softmax(logits, dim=1)[:, 1].numpy()
