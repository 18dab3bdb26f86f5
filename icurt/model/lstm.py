"""The bidirectional-LSTM in-hospital-mortality classifier (plain torch)."""

from __future__ import annotations

import torch
from torch import nn

from icurt.config import ModelConfig
from icurt.model.hparams import ModelHparams

ACTIVATION_LAYERS = {"relu": nn.ReLU, "tanh": nn.Tanh}
# What icurt built before [model] existed: checkpoints without a recorded shape are rebuilt so.
ICURT_SHAPE = ModelConfig(readout="final_states", output="logits")


class LSTMClassifier(nn.Module):
    """BiLSTM(input → hidden) → activation → dropout → FC(n_fc) → activation → FC(2) logits.

    `shape.readout` says what the classifier reads of the BiLSTM (each (B, 2·hidden)):
    "final_states" the last forward and the first backward hidden state, so both directions have
    seen every hour; "last_step" the output at the last hour, as the reference does: its forward
    half has seen every hour, its backward half only that last hour. `forward` always returns the
    pre-softmax logits (the attack's margin works on them); `shape.output` only says how training
    turns them into a loss (`training_loss`).
    """

    def __init__(self, num_features: int, hp: ModelHparams, shape: ModelConfig = ICURT_SHAPE):
        super().__init__()
        self.shape = shape
        self.lstm = nn.LSTM(num_features, hp.lstm_hidden, batch_first=True, bidirectional=True)
        self.lstm_activation = ACTIVATION_LAYERS[hp.lstm_activation]()
        self.dropout = nn.Dropout(hp.dropout)
        self.fc = nn.Linear(2 * hp.lstm_hidden, hp.fc_size)
        self.fc_activation = ACTIVATION_LAYERS[hp.fc_activation]()
        self.out = nn.Linear(hp.fc_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, (h_n, _) = self.lstm(x)                # output: (B, T, 2H); h_n: (2, B, H)
        if self.shape.readout == "last_step":
            h = output[:, -1, :]                       # forward after all hours, backward after the last only
        else:
            h = torch.cat([h_n[0], h_n[1]], dim=1)     # forward final, backward final
        h = self.dropout(self.lstm_activation(h))
        return self.out(self.fc_activation(self.fc(h)))


def training_loss(logits: torch.Tensor, labels: torch.Tensor, output: str) -> torch.Tensor:
    """Mean cross-entropy of a batch: of the logits ("logits"), or of the Softmax probabilities
    taken as the network's output ("softmax", the reference: CE applies a second log-softmax)."""
    if output == "softmax":
        return nn.functional.cross_entropy(torch.softmax(logits, dim=1), labels)
    return nn.functional.cross_entropy(logits, labels)
