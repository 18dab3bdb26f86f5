"""LSTMClassifier shapes for every hyperparameter choice, and the checkpoint round trip."""

import itertools
import json

import pytest
import torch

from icurt.config import ModelConfig
from icurt.errors import IcurtError
from icurt.model import checkpoint
from icurt.model.hparams import ModelHparams
from icurt.model.lstm import LSTMClassifier, training_loss

LAST_STEP = ModelConfig(readout="last_step", output="softmax")


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


def test_last_step_readout_ignores_the_backward_state_of_earlier_hours():
    """With the forward direction's weights and biases zeroed its hidden state stays exactly 0
    (gates σ(0) = ½, candidate tanh(0) = 0, so c = h = 0 at every hour): the last-step read-out
    then sees only the backward direction after hour 47, which has read hour 47 alone. Changing
    hours 0–46 changes nothing; changing hour 47 does. The final-states read-out's backward state
    has read every hour, so changing hour 0 changes its output."""
    torch.manual_seed(0)
    hp = ModelHparams(lstm_hidden=8, fc_size=4)
    x = torch.rand(3, 48, 5)
    earlier, last = x.clone(), x.clone()
    earlier[:, :47] += torch.rand(3, 47, 5)
    last[:, 47] += 1.0
    for shape in (LAST_STEP, ModelConfig(readout="final_states", output="logits")):
        model = LSTMClassifier(5, hp, shape).eval()
        with torch.no_grad():
            for name, weight in model.lstm.named_parameters():
                if not name.endswith("_reverse"):
                    weight.zero_()
            if shape.readout == "last_step":
                assert torch.equal(model(earlier), model(x))
                assert not torch.allclose(model(last), model(x))
            else:
                assert not torch.allclose(model(earlier), model(x))


def test_softmax_output_trains_on_cross_entropy_of_the_probabilities():
    # logits (2, 0), label 0: softmax = (e²/(e²+1), 1/(e²+1)) = (0.880797, 0.119203);
    # CE of the logits = log(1 + e⁻²) = 0.126928; CE of those probabilities, taken as logits again,
    # = log(1 + e^−(0.880797 − 0.119203)) = log(1 + e^−0.761594) = log(1.466926) = 0.383166
    logits, label = torch.tensor([[2.0, 0.0]]), torch.tensor([0])
    assert training_loss(logits, label, "logits").item() == pytest.approx(0.126928, abs=1e-6)
    assert training_loss(logits, label, "softmax").item() == pytest.approx(0.383166, abs=1e-6)


@pytest.mark.parametrize("shape", [ModelConfig(readout="final_states", output="logits"), LAST_STEP])
def test_checkpoint_round_trip_loads_with_weights_only(tmp_path, shape):
    hp = ModelHparams(lstm_hidden=16, fc_size=8, lstm_activation="relu")
    model = LSTMClassifier(19, hp, shape).eval()
    checkpoint.save(tmp_path, checkpoint.Checkpoint.of(model, hp, 19))
    state = torch.load(tmp_path / "best.pt", weights_only=True)
    assert set(state) == set(model.state_dict())
    assert json.loads((tmp_path / "model.json").read_text()) == {
        "hparams": hp.to_dict(), "num_features": 19, "model": {"readout": shape.readout, "output": shape.output},
        "precision": "fp32"}
    loaded = checkpoint.load(tmp_path).build()
    x = torch.rand(4, 48, 19)
    assert loaded.shape == shape and not loaded.training
    assert torch.equal(loaded(x), model(x))          # pre-softmax logits, whatever the output setting


def test_a_checkpoint_from_before_model_shapes_rebuilds_final_states(tmp_path):
    hp = ModelHparams(lstm_hidden=4, fc_size=4)
    model = LSTMClassifier(19, hp).eval()
    checkpoint.save(tmp_path, checkpoint.Checkpoint.of(model, hp, 19))
    (tmp_path / "model.json").write_text(json.dumps({"hparams": hp.to_dict(), "num_features": 19}))
    old = checkpoint.load(tmp_path)
    assert old.build().shape == ModelConfig(readout="final_states", output="logits")
    assert old.precision == "fp32"                   # written before [train].precision: trained in fp32


def test_a_checkpoint_keeps_its_precision(tmp_path):
    hp = ModelHparams(lstm_hidden=4, fc_size=4)
    checkpoint.save(tmp_path, checkpoint.Checkpoint.of(LSTMClassifier(19, hp), hp, 19, precision="bf16"))
    assert json.loads((tmp_path / "model.json").read_text())["precision"] == "bf16"
    assert checkpoint.load(tmp_path).precision == "bf16"


def test_checkpoint_feature_check_and_missing_files(tmp_path):
    hp = ModelHparams(lstm_hidden=4, fc_size=4)
    saved = checkpoint.Checkpoint.of(LSTMClassifier(19, hp), hp, 19)
    saved.check_features(19, "train run r")
    with pytest.raises(IcurtError, match="expects 19 features but the dataset has 12"):
        saved.check_features(12, "train run r")
    with pytest.raises(IcurtError, match="no best.pt"):
        checkpoint.load(tmp_path)
