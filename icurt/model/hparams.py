"""The BiLSTM's hyperparameters; the names they may take live in icurt/choices.py (below the config)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from icurt.choices import ACTIVATIONS, OPTIMIZERS, OUTPUTS, READOUTS  # noqa: F401 (their old home)
from icurt.tuning.trials import readable


@dataclass(frozen=True)
class ModelHparams:
    lstm_hidden: int = 128
    lstm_activation: str = "tanh"
    dropout: float = 0.0
    fc_size: int = 16
    fc_activation: str = "relu"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    batch_size: int = 128

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for the console: "lstm_hidden 128, dropout 0.2609, learning_rate 0.003162, ..."
        (floats to 4 significant digits; the run's files keep every digit)."""
        return ", ".join(f"{name} {readable(value)}" for name, value in asdict(self).items())

    @classmethod
    def from_dict(cls, values: dict) -> "ModelHparams":
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})

    def problems(self) -> list[str]:
        """What makes these hyperparameters unusable (empty when they are fine)."""
        checks = [(self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r}"),
                  (self.lstm_activation in ACTIVATIONS, f"lstm_activation {self.lstm_activation!r}"),
                  (self.fc_activation in ACTIVATIONS, f"fc_activation {self.fc_activation!r}"),
                  (self.batch_size >= 1, "batch_size < 1"), (self.lstm_hidden >= 1, "lstm_hidden < 1"),
                  (self.fc_size >= 1, "fc_size < 1"), (0 <= self.dropout < 1, "dropout outside [0, 1)"),
                  (self.learning_rate > 0, "learning_rate <= 0")]
        return [what for ok, what in checks if not ok]
