"""The "learned nothing" check after tune-model (icurt/model/learned_nothing.py) and where `icurt run`
stops on it (icurt/pipeline.py)."""

import logging
import math

import pandas as pd
import pytest

from icurt.config import load_config, with_overrides
from icurt.errors import IcurtError
from icurt.model.learned_nothing import learned_nothing
from icurt.pipeline import _check_learned_something
from icurt.runs import RunStore


def test_a_best_loss_near_ln2_is_chance_whatever_the_others():
    # P(died) = 0.5 for every stay: cross-entropy -ln 0.5 = 0.6931
    why = learned_nothing([0.6931, 0.70, 0.71])
    assert why and "0.6931 is no better than the 0.6931" in why
    assert learned_nothing([math.log(2) - 0.011, 0.9]) is None   # just past the margin: it learned
    assert learned_nothing([0.686, 0.9]) is not None             # within 0.01 of ln 2


def test_half_the_trials_tied_at_the_best_predict_one_value():
    assert learned_nothing([0.5, 0.50005, 0.50009, 0.61]) == (
        "3 of 4 trials tie its validation loss 0.5000: they predict the same for every stay")
    assert learned_nothing([0.5, 0.50005, 0.61, 0.62]) == (
        "2 of 4 trials tie its validation loss 0.5000: they predict the same for every stay")
    assert learned_nothing([0.5, 0.50005, 0.61, 0.62, 0.63]) is None   # 2 of 5: not half
    assert learned_nothing([0.5, 0.5, 0.5]) is None                    # too few trials to call a tie
    assert learned_nothing([0.3, float("inf"), 0.4]) is None           # a failed trial is ignored


def test_no_finite_loss_is_an_error():
    with pytest.raises(ValueError):
        learned_nothing([float("nan"), float("inf")])


def _tune_run(tmp_path, losses):
    store = RunStore(tmp_path)
    with store.create("tune-model", load_config(env={})) as writer:
        hparams = {"batch_size": 32, "lstm_hidden": 8, "lstm_activation": "tanh", "dropout": 0.26092416087503584, "fc_size": 8,
                   "fc_activation": "relu", "optimizer": "sgd", "learning_rate": 1e-5}
        pd.DataFrame({"number": range(len(losses)), "state": ["COMPLETE"] * len(losses), "objective": losses,
                      **{k: [v] * len(losses) for k, v in hparams.items()}, "last_step": 1, "duration_s": 1.0,
                      "fail_reason": None}).to_parquet(writer.path / "trials.parquet")
    return writer.run


def test_icurt_run_stops_after_a_tune_model_that_learned_nothing_and_says_how_to_go_on(tmp_path, caplog):
    run = _tune_run(tmp_path, [0.6932, 0.6935, 0.70])
    with pytest.raises(IcurtError) as stopped:
        _check_learned_something(run, False, "icurt run --go-on")
    message = str(stopped.value)
    assert run.run_id in message and "learned nothing" in message and "`icurt run --go-on`" in message
    assert "\n" not in message
    with caplog.at_level(logging.WARNING, logger="icurt"):
        _check_learned_something(run, True, "icurt run --go-on")   # told to go on: one warning
    assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == [logging.WARNING]


def test_a_model_that_learned_goes_on_silently(tmp_path, caplog):
    run = _tune_run(tmp_path, [0.45, 0.52, 0.6931])
    with caplog.at_level(logging.WARNING, logger="icurt"):
        _check_learned_something(run, False, "icurt run --go-on")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_show_tune_model_says_it(tmp_path):
    from icurt.stages.tune_model import show

    run = _tune_run(tmp_path, [0.6932, 0.6935, 0.70])
    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path}"])
    shown = show(run, cfg)
    assert "warning: the best trial learned nothing" in shown
    assert "  dropout = 0.2609\n" in shown and "  learning_rate = 1e-05\n" in shown   # 4 significant digits
