"""LSTMClassifier shapes for every hyperparameter choice, and the checkpoint round trip."""

import itertools
import json

import pytest
import torch

from icurt.errors import IcurtError
from icurt.model import checkpoint
from icurt.model.hparams import ModelHparams
from icurt.model.lstm import LSTMClassifier


@pytest.mark.parametrize("hidden,lstm_act,fc_size,fc_act", itertools.product(
    [16, 32], ["relu", "tanh"], [8, 16, 256], ["relu", "tanh"]))
@pytest.mark.parametrize("batch", [1, 37])
def test_output_is_two_logits_per_sample(hidden, lstm_act, fc_size, fc_act, batch):
    hp = ModelHparams(lstm_hidden=hidden, lstm_activation=lstm_act, fc_size=fc_size,
                      fc_activation=fc_act, dropout=0.3)
    model = LSTMClassifier(19, hp)
    out = model(torch.rand(batch, 48, 19))
    assert out.shape == (batch, 2) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert model.fc.in_features == 2 * hidden and model.out.in_features == fc_size


def test_uses_both_directions_of_the_lstm():
    # changing only the first hour must change the output: the backward direction ends there
    torch.manual_seed(0)
    model = LSTMClassifier(3, ModelHparams(lstm_hidden=8, fc_size=4)).eval()
    x = torch.rand(2, 10, 3)
    y = x.clone()
    y[:, 0] += 1.0
    assert not torch.allclose(model(x), model(y))


def test_checkpoint_round_trip_loads_with_weights_only(tmp_path):
    hp = ModelHparams(lstm_hidden=16, fc_size=8, lstm_activation="relu")
    model = LSTMClassifier(19, hp).eval()
    checkpoint.save(tmp_path, checkpoint.Checkpoint.of(model, hp, 19))
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert json.loads((tmp_path / "model.json").read_text()) == {"hparams": hp.to_dict(), "num_features": 19}
    loaded = checkpoint.load(tmp_path).build()
    x = torch.rand(4, 48, 19)
    assert torch.equal(loaded(x), model(x)) and not loaded.training


def test_checkpoint_feature_check_and_missing_files(tmp_path):
    hp = ModelHparams(lstm_hidden=4, fc_size=4)
    saved = checkpoint.Checkpoint.of(LSTMClassifier(19, hp), hp, 19)
    saved.check_features(19, "train run r")
    with pytest.raises(IcurtError, match="expects 19 features but the dataset has 12"):
        saved.check_features(12, "train run r")
    with pytest.raises(IcurtError, match="no best.pt"):
        checkpoint.load(tmp_path)
