"""Views of the attack stages: an attack run's per-sample results and adversarial examples (in
clinical units), and a fragility run's success-versus-budget curves and worked patients."""

from __future__ import annotations

import numpy as np
import pandas as pd

from icurt.errors import IcurtError
from icurt.views.base import RunView


class _NeedsDataset(RunView):
    def _dataset(self):
        """The dataset of the preprocess run this run was built from."""
        return self.ancestor("preprocess").dataset()


class AttackRunView(_NeedsDataset):
    """An attack run: the tuned sparse attack on every chosen sample of one fold's model."""

    def _attack(self):
        from icurt.attack.results import read_attack_run

        return self._once("attack", lambda: read_attack_run(self.path))

    def results(self) -> pd.DataFrame:
        """results.parquet, one row per sample (icurt/attack/results.py): sample_index (the dataset
        row), stay_id, label, orig/adv logits and prediction, attacked, success, first/best
        iteration, loss, and the perturbation's n_nonzero, l1 and maxabs (scaled units) of the
        first and of the best adversarial example (0 / NaN without one)."""
        return self._attack().table

    def attack_config(self) -> dict:
        """attack_config.json: the attack's hyperparameters, method, fold and samples as it ran."""
        return self._attack().config or {}

    def perturbation(self, sample_index: int, kind: str = "best") -> np.ndarray:
        """(T, F) float32: the perturbation P of the `kind` ("first" or "best") adversarial example of
        dataset row `sample_index`, in scaled units (zeros: the attack found none)."""
        attack = self._attack()
        if kind not in attack.perturbations:
            raise IcurtError(f"kind must be one of {', '.join(attack.perturbations)}, got {kind!r}")
        if sample_index not in set(attack.table["sample_index"].tolist()):
            raise IcurtError(f"attack run {self.run_id} did not attack dataset row {sample_index}; "
                             "its rows are results()['sample_index']")
        coo = attack.perturbations[kind]
        pick = coo.sample == sample_index
        p = np.zeros(attack.shape[1:], np.float32)
        p[coo.t[pick], coo.f[pick]] = coo.value[pick]
        return p

    def example(self, sample_index: int, kind: str = "best") -> pd.DataFrame:
        """The cells the `kind` adversarial example of dataset row `sample_index` changes, one row
        each: hour, feature, before and after in clinical units (scaled x and clip(x + P, 0, 1)
        mapped back with the preprocess run's p_low/p_high), unit. Empty without an example."""
        from icurt.analysis.fragility import changes_table
        from icurt.analysis.stats import CLINICAL_UNITS
        from icurt.attack.budget import to_clinical

        p = self.perturbation(sample_index, kind)
        ds = self._dataset()
        x = ds.features[sample_index]
        before = to_clinical(x, ds.normalisation, ds.feature_names)
        after = to_clinical(np.clip(x + p, 0, 1), ds.normalisation, ds.feature_names)
        return changes_table(p, ds.feature_names, before, after, CLINICAL_UNITS)


class FragilityRunView(_NeedsDataset):
    """A fragility run: the attack again under L0 (k cells) and clinical-unit L∞ budgets."""

    def _fragility(self):
        from icurt.attack.fragility_run import read_fragility_run

        return self._once("fragility", lambda: read_fragility_run(self.path))

    def sweep(self) -> pd.DataFrame:
        """sweep.parquet: one row per sample and budget (icurt/attack/fragility_run.py): curve ("k"
        or "linf"), cells ("measured" or "all"), budget, success, n_nonzero, max_step_ratio,
        p_died_before and p_died_after."""
        return self._fragility().sweep

    def summary(self) -> dict:
        """fragility.json: budgets, clinical steps (clinical and scaled units), the headline."""
        return self._fragility().summary

    def headline(self) -> dict:
        """Per direction ("1to0": deaths pushed to survival, "0to1"), the quotable number: k,
        samples, successes, success_rate with its 95 % Wilson interval and the sentence."""
        return self.summary()["headline"]

    def curves(self) -> pd.DataFrame:
        """Success per curve, cells, budget and direction: samples, successes, success_rate and its
        95 % Wilson interval (icurt.analysis.fragility.success_curves)."""
        from icurt.analysis.fragility import success_curves

        return success_curves(self.sweep())

    def minimal_budgets(self, curve: str = "k", cells: str = "measured") -> pd.DataFrame:
        """Per sample: the smallest budget of the curve that flipped it (NaN: none did)."""
        from icurt.analysis.fragility import minimal_budgets

        return minimal_budgets(self.sweep(), curve, cells)

    def worked_examples(self, count: int = 3) -> list:
        """Up to `count` worked patients as the report shows them (flipped deaths first, fewest
        cells first): icurt.analysis.fragility_report.WorkedExample with stay_id, label,
        minimal_k, p_died_before/after and `changes` (hour, feature, before, after, unit:
        clinical units)."""
        return self._view(count).examples

    def figures(self, count: int = 3) -> dict:
        """The report's fragility figures (curves, minimal k, `count` worked patients) by file name,
        as matplotlib Figures (icurt/views/analyze.py png_figure)."""
        from icurt.analysis.fragility_report import fragility_plots
        from icurt.views.analyze import png_figure

        return {plot.name: png_figure(plot.png) for plot in fragility_plots(self._view(count))}

    def _view(self, count: int):
        from icurt.analysis.fragility_report import build_view

        ds = self._dataset()
        return build_view(self._fragility(), ds.features, ds.feature_names, ds.normalisation, count)
