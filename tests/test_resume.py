"""settings_at_start: a resumed run finishes with the settings (and the profile) it started with."""

import pytest

from icurt.config import load_config, named_config_path, with_overrides
from icurt.errors import IcurtError
from icurt.resume import settings_at_start
from icurt.runs import RunStore


def interrupted_run(store, stage, cfg):
    with pytest.raises(KeyboardInterrupt):
        with store.create(stage, cfg) as writer:
            raise KeyboardInterrupt
    return writer.run_id


def test_a_resume_takes_the_settings_and_profile_it_started_with(tmp_path):
    store = RunStore(tmp_path)
    started = with_overrides(load_config(named_config_path("demo"), env={}),
                             [f"paths.data={tmp_path}", "tune_model.cv_epochs=3", "tune_model.num_trials=5"])
    run_id = interrupted_run(store, "tune-model", started)
    today = with_overrides(load_config(named_config_path("reference"), env={}),
                           [f"paths.data={tmp_path}", "tune_model.num_trials=9", "train.epochs=7"])
    resumed = settings_at_start(store, "tune-model", run_id, today, keep=("tune_model.num_trials",))
    assert resumed.profile.name == "demo"
    assert resumed.tune_model.cv_epochs == 3 and resumed.tune_model.num_trials == 9   # num_trials: today's
    assert resumed.model == started.model                  # [model] is read by tune-model too
    assert resumed.train.epochs == 7                       # not read by tune-model: today's


def test_a_run_that_kept_no_config_cannot_be_resumed(tmp_path):
    store = RunStore(tmp_path)
    cfg = with_overrides(load_config(env={}), [f"paths.data={tmp_path}"])
    run_id = interrupted_run(store, "fragility", cfg)
    (store.interrupted_folder("fragility", run_id) / "config.toml").unlink()
    with pytest.raises(IcurtError, match="kept no config.toml"):
        settings_at_start(store, "fragility", run_id, cfg)
