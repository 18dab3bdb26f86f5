"""The bidirectional-LSTM in-hospital-mortality classifier (plain torch)."""

from __future__ import annotations

import torch
from torch import nn

from icurt.model.hparams import ModelHparams

ACTIVATION_LAYERS = {"relu": nn.ReLU, "tanh": nn.Tanh}


class LSTMClassifier(nn.Module):
    """BiLSTM(input → hidden) → activation → dropout → FC(n_fc) → activation → FC(2) logits.

    The classifier reads the concatenated last forward and first backward hidden states.
    """

    def __init__(self, num_features: int, hp: ModelHparams):
        super().__init__()
        self.lstm = nn.LSTM(num_features, hp.lstm_hidden, batch_first=True, bidirectional=True)
        self.lstm_activation = ACTIVATION_LAYERS[hp.lstm_activation]()
        self.dropout = nn.Dropout(hp.dropout)
        self.fc = nn.Linear(2 * hp.lstm_hidden, hp.fc_size)
        self.fc_activation = ACTIVATION_LAYERS[hp.fc_activation]()
        self.out = nn.Linear(hp.fc_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h_n, _) = self.lstm(x)                     # h_n: (2, B, H)
        h = torch.cat([h_n[0], h_n[1]], dim=1)         # forward final, backward final
        h = self.dropout(self.lstm_activation(h))
        return self.out(self.fc_activation(self.fc(h)))
