"""The bidirectional-LSTM in-hospital-mortality classifier (plain torch)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


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

    @classmethod
    def from_dict(cls, values: dict) -> "ModelHparams":
        return cls(**{k: values[k] for k in cls.__dataclass_fields__ if k in values})


class LSTMClassifier(nn.Module):
    """BiLSTM(input → hidden) → activation → dropout → FC(n_fc) → activation → FC(2) logits.

    The classifier reads the concatenated last forward and first backward hidden states.
    """

    def __init__(self, num_features: int, hp: ModelHparams):
        super().__init__()
        self.lstm = nn.LSTM(num_features, hp.lstm_hidden, batch_first=True, bidirectional=True)
        self.lstm_activation = ACTIVATIONS[hp.lstm_activation]()
        self.dropout = nn.Dropout(hp.dropout)
        self.fc = nn.Linear(2 * hp.lstm_hidden, hp.fc_size)
        self.fc_activation = ACTIVATIONS[hp.fc_activation]()
        self.out = nn.Linear(hp.fc_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)                     # h_n: (2, B, H)
        h = torch.cat([h_n[0], h_n[1]], dim=1)         # forward final, backward final
        h = self.dropout(self.lstm_activation(h))
        return self.out(self.fc_activation(self.fc(h)))
