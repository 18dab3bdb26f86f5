"""Views of the tuning stages (tune-model, tune-attack): the study's trials and what it chose."""

from __future__ import annotations

import pandas as pd

from icurt.views.base import RunView


class TuningRunView(RunView):
    """A tuning run (Ray Tune + Optuna)."""

    def trials(self) -> pd.DataFrame:
        """trials.parquet: one row per Optuna trial — number, state (COMPLETE, PRUNED, FAIL),
        objective (tune-model: validation loss, lower is better; tune-attack: the attack's score,
        higher is better), each hyperparameter, last_step, duration_s, fail_reason."""
        from icurt.tuning.trials import read_trials

        return self._once("trials", lambda: read_trials(self.path))


class TuneModelRunView(TuningRunView):
    """A tune-model run: the BiLSTM's hyperparameters, tuned on validation loss."""

    def best(self, trial: int | None = None) -> dict:
        """The hyperparameters train uses (best_hparams.json; trial `trial` of the study when given,
        as `icurt train --trial N`), as a dict (optimizer, learning rate, LSTM and FC sizes, batch,
        dropout); IcurtError for a failed trial."""
        from icurt.stages.tune_model import chosen_hparams

        return chosen_hparams(self.run, trial)[0].to_dict()


class TuneAttackRunView(TuningRunView):
    """A tune-attack run: the sparse attack's hyperparameters, tuned on one fold's model."""

    def best(self):
        """best_attack_hparams.json as icurt.attack.tuned.TunedAttack: `hp` (the attack's
        hyperparameters), `method` (the [attack_method] it was tuned with), `fold` (the attacked
        fold) and how it was chosen, `objective_name`, `score`, `trial`, `samples`."""
        from icurt.attack.tuned import read_tuned

        return read_tuned(self.run)
