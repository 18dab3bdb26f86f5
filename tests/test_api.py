"""icurt's Python API: configuration, errors, and that `import icurt` stays light (fast, no pipeline)."""

import subprocess
import sys

import pytest

import icurt
from icurt.errors import IcurtError


def test_import_icurt_loads_neither_the_api_nor_torch():
    code = "import sys, icurt; print('icurt.api' in sys.modules, 'torch' in sys.modules, callable(icurt.run))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "True"]   # the API loads on first use


def test_load_config_layers_profile_then_keyword_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("ICURT_DATA", str(tmp_path))
    cfg = icurt.load_config("demo", train__epochs=5, fragility__l0_budgets=[1, 4],
                            fragility__clinical_step__heartrate=7.0)
    assert cfg.profile.name == "demo" and cfg.synth.stays == 2000       # configs/demo.toml
    assert cfg.train.epochs == 5 and cfg.fragility.l0_budgets == [1, 4]
    assert cfg.fragility.clinical_step["heartrate"] == 7.0
    assert cfg.fragility.clinical_step["sysbp"] == icurt.load_config("demo").fragility.clinical_step["sysbp"]
    assert cfg.paths.data == str(tmp_path)                              # the environment, as the CLI reads it


def test_with_takes_keywords_or_a_dict_and_checks_like_a_config_file():
    cfg = icurt.load_config()
    assert cfg.with_(train__epochs=7).train.epochs == 7
    assert cfg.with_({"train.epochs": 8, "train.num_folds": 4}).train.num_folds == 4
    assert cfg.train.epochs != 7                                        # a copy: cfg is unchanged
    with pytest.raises(IcurtError, match="unknown config key 'train.epoch'"):
        cfg.with_(train__epoch=3)
    with pytest.raises(IcurtError, match="train.epochs"):
        cfg.with_(train__epochs=0)                                      # below its bound
    with pytest.raises(IcurtError, match="train.epochs"):
        cfg.with_(train__epochs="many")


def test_a_profile_that_is_not_shipped_or_a_file_is_refused(tmp_path):
    with pytest.raises(IcurtError, match="no shipped config named 'nosuch'"):
        icurt.load_config("nosuch")
    with pytest.raises(IcurtError, match="does not exist"):
        icurt.load_config(str(tmp_path / "missing.toml"))
    own = tmp_path / "mine.toml"
    own.write_text("[train]\nepochs = 9\n")
    assert icurt.load_config(own).train.epochs == 9 and icurt.load_config(own).profile.name == "mine"


def test_run_refuses_an_unknown_stage_option_or_input_before_running(tmp_path):
    cfg = icurt.load_config().with_(paths__data=str(tmp_path))
    with pytest.raises(IcurtError, match="unknown stage 'trian'"):
        icurt.run("trian", cfg)
    with pytest.raises(IcurtError, match="stage preprocess has no option 'engin'; its options are: engine"):
        icurt.run("preprocess", cfg, engin="pandas")
    with pytest.raises(IcurtError, match="reads no input run"):
        icurt.run("query", cfg, from_="20260101T000000000000-abcd")
    with pytest.raises(IcurtError, match="no completed query run '20260101T000000000000-abcd'"):
        icurt.run("preprocess", cfg, from_="20260101T000000000000-abcd")
    assert not any(tmp_path.iterdir())                                  # nothing was written


def test_list_runs_of_an_empty_data_root_is_empty_and_latest_says_what_to_run(tmp_path):
    cfg = icurt.load_config().with_(paths__data=str(tmp_path))
    assert icurt.list_runs("train", cfg) == [] and icurt.list_runs(cfg=cfg) == []
    with pytest.raises(IcurtError, match="run `icurt train` first"):
        icurt.latest("train", cfg)


def test_every_stage_has_a_view():
    from icurt.stages import STAGE_NAMES
    from icurt.views import VIEWS, RunView, view_class

    assert list(VIEWS) == list(STAGE_NAMES)
    assert all(issubclass(view_class(stage), RunView) for stage in STAGE_NAMES)
