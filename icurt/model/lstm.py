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


MODEL_FILE = "model.json"


def save_checkpoint(folder, model: LSTMClassifier, hp: ModelHparams, num_features: int,
                    name: str = "best.pt") -> None:
    """state_dict as `name` (loadable with weights_only=True) plus model.json with the hparams."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / name)
    (folder / MODEL_FILE).write_text(json.dumps({"hparams": hp.to_dict(), "num_features": num_features}))


def load_checkpoint(folder, name: str = "best.pt", device: str = "cpu") -> LSTMClassifier:
    """The model saved by save_checkpoint, in eval mode on `device`."""
    import json
    from pathlib import Path

    folder = Path(folder)
    spec = json.loads((folder / MODEL_FILE).read_text())
    model = LSTMClassifier(spec["num_features"], ModelHparams.from_dict(spec["hparams"]))
    state = torch.load(folder / name, map_location=device, weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()
