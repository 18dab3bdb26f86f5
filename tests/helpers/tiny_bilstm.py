"""The tiny BiLSTM the attack tests attack: trained full-batch on a small planted cohort."""

import torch
from torch import nn

from icurt.model.hparams import ModelHparams
from icurt.model.lstm import LSTMClassifier


def fit_tiny_bilstm(features, labels, hp: ModelHparams, *, lr: float, steps: int) -> LSTMClassifier:
    """A classifier of shape `hp` fitted by `steps` full-batch Adam steps (torch seed 0), in eval mode.

    features: (N, T, F) float32 scaled values; labels: (N,) int64."""
    torch.manual_seed(0)
    model = LSTMClassifier(features.shape[2], hp)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    x, y = torch.as_tensor(features), torch.as_tensor(labels)
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval()
