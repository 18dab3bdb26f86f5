"""Config: defaults, file layering, typed overrides, environment, and one-line errors naming the key."""

import tomllib

import pytest

from icurt.config import (config_to_toml, config_value, load_config, named_config_path, profile_changes,
                          with_overrides)
from icurt.errors import IcurtError


def test_defaults_match_the_reference_study():
    cfg = load_config(env={})
    assert cfg.preprocess.min_age == 18.0
    assert cfg.preprocess.winsorize_percentiles == [5.0, 95.0]
    assert cfg.preprocess.observation_window_hours == 48
    assert len(cfg.preprocess.features) == 19
    assert cfg.tune_model.num_trials == 60 and cfg.tune_model.fold_seed == 1234
    assert cfg.tune_model.learning_rate == [1e-5, 1e-1]
    assert cfg.train.fold_seed == 20240807 and cfg.train.epochs == 1000
    assert cfg.tune_attack.num_trials == 75 and cfg.tune_attack.sample_selection_seed == 2023
    assert cfg.tune_attack.objective == "sparse_small"
    assert cfg.attack.max_num_samples == 40000


def test_every_default_key_is_a_typed_field():
    with open(named_config_path("default"), "rb") as fh:
        raw = tomllib.load(fh)
    cfg = load_config(env={})
    for section, values in raw.items():
        for key, value in values.items():
            assert config_value(cfg, f"{section}.{key}") == value


def test_the_reference_profile_sets_only_differences_and_is_one_file_away():
    """configs/reference.toml: each key it sets differs from icurt's default (a difference, not a
    copy), and the model-and-training keys hold the reference study's values."""
    with open(named_config_path("reference"), "rb") as fh:
        raw = tomllib.load(fh)
    default, reference = load_config(env={}), load_config(named_config_path("reference"), env={})
    for section, values in raw.items():
        for key, value in values.items():
            assert config_value(default, f"{section}.{key}") != value, f"{section}.{key}"
            assert config_value(reference, f"{section}.{key}") == value
    assert (reference.model.readout, reference.model.output) == ("last_step", "softmax")
    assert reference.tune_model.split == reference.train.split == "stay"
    assert reference.tune_model.trial_score == "best"
    assert (reference.train.checkpoint_split, reference.train.checkpoint_metric) == ("held_out", "val_loss")
    assert reference.tune_attack.fold_choice == "median"
    assert reference.tune_attack.samples == reference.attack.samples == "all"
    assert (default.train.split, default.train.checkpoint_split, default.attack.samples) == ("patient", "inner",
                                                                                              "held_out")


def test_profile_changes_name_what_departs_from_the_shipped_profile(tmp_path):
    assert profile_changes(load_config(env={})) == []
    assert profile_changes(load_config(named_config_path("reference"), env={})) == []
    # where and how a run executes is no change; the results-shaping settings are, a table entry by entry
    changed = load_config(named_config_path("reference"), [
        "train.epochs=3", "paths.data=/elsewhere", "db.schema=other", "ray.device=cpu",
        "fragility.clinical_step.sodium=5", "train.split=patient"], env={})
    assert profile_changes(changed) == ["fragility.clinical_step.sodium=5.0", "train.epochs=3",
                                        'train.split="patient"']
    # those a stage reads (its sections, or single keys)
    assert profile_changes(changed, ("train", "model")) == ["train.epochs=3", 'train.split="patient"']
    assert profile_changes(changed, ("fragility", "attack")) == ["fragility.clinical_step.sodium=5.0"]
    assert profile_changes(changed, ("train.split",)) == ['train.split="patient"']
    # a value set back to the profile's own is no change
    assert profile_changes(with_overrides(changed, ["train.epochs=1000", "fragility.clinical_step.sodium=3.0",
                                                    'train.split="stay"'])) == []
    mine = tmp_path / "mine.toml"
    mine.write_text("[train]\nepochs = 7\n")
    assert profile_changes(load_config(mine, env={})) is None      # no shipped profile named "mine"


def test_config_file_layers_over_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[train]\nepochs = 7\n")
    cfg = load_config(path, env={})
    assert cfg.train.epochs == 7
    assert cfg.train.num_folds == 5  # untouched keys keep their defaults
    assert cfg.profile.name == "mine"  # a file that names no profile is named after itself
    named = tmp_path / "other.toml"
    named.write_text("[profile]\nname = \"trial-3\"\n")
    assert load_config(named, env={}).profile.name == "trial-3"
    assert load_config(named_config_path("demo"), env={}).profile.name == "demo"


def test_demo_config_only_shrinks_the_run():
    demo = load_config(named_config_path("demo"), env={})
    default = load_config(env={})
    assert demo.train.epochs < default.train.epochs
    assert demo.tune_model.num_trials < default.tune_model.num_trials
    assert demo.preprocess == default.preprocess


def test_overrides_are_typed_by_the_schema():
    cfg = load_config(overrides=["train.epochs=3", "tune_model.dropout=[0.1, 0.2]",
                                 "train.cpus_per_worker=2", "ray.include_dashboard=true",
                                 "db.schema=other"], env={})
    assert cfg.train.epochs == 3 and isinstance(cfg.train.epochs, int)
    assert cfg.tune_model.dropout == [0.1, 0.2]
    assert cfg.train.cpus_per_worker == 2.0 and isinstance(cfg.train.cpus_per_worker, float)
    assert cfg.ray.include_dashboard is True
    assert cfg.db.schema == "other"


def test_environment_overrides_data_root_and_dsn():
    cfg = load_config(env={"ICURT_DATA": "/tmp/x", "ICURT_DSN": "postgresql://a@b/c"})
    assert cfg.paths.data == "/tmp/x" and cfg.db.dsn == "postgresql://a@b/c"


@pytest.mark.parametrize("override, named", [
    ("train.nope=1", "train.nope"),
    ("nosection.key=1", "nosection.key"),
    ("train.epochs=ten", "train.epochs"),
    ("train.epochs=1.5", "train.epochs"),
    ("train.epochs=0", "train.epochs"),
    ("ray.include_dashboard=1", "ray.include_dashboard"),
    ("preprocess.engine=spark", "preprocess.engine"),
    ("tune_model.dropout=[0.5, 0.1]", "tune_model.dropout"),
    ("tune_model.dropout=[0.1]", "tune_model.dropout"),
    ("tune_model.optimizers=[]", "tune_model.optimizers"),
    ("tune_model.optimizers=[\"adam\", \"lbfgs\"]", "tune_model.optimizers"),
    ("preprocess.winsorize_percentiles=[5, 101]", "preprocess.winsorize_percentiles"),
    ("train.fold_seed=-1", "train.fold_seed"),
    ("tune_model.learning_rate=nan", "tune_model.learning_rate"),
])
def test_bad_values_are_rejected_naming_the_key(override, named):
    with pytest.raises(IcurtError) as err:
        load_config(overrides=[override], env={})
    message = str(err.value)
    assert named in message and "\n" not in message


@pytest.mark.parametrize("override", ["paths.data=", "paths.data= ", 'paths.data=""'])
def test_an_empty_data_root_is_an_error_not_the_working_directory(override):
    with pytest.raises(IcurtError) as err:
        load_config(overrides=[override], env={})
    assert str(err.value) == ("config key 'paths.data' is empty; give a folder (--set paths.data=DIR or "
                              "ICURT_DATA=DIR; the default is data)")


def test_an_empty_icurt_data_counts_as_unset():
    assert load_config(env={"ICURT_DATA": ""}).paths.data == "data"


def test_unknown_key_in_file_is_named(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[train]\nepoch = 7\n")
    with pytest.raises(IcurtError, match=r"train\.epoch"):
        load_config(path, env={})


@pytest.mark.parametrize("text, where", [
    ("epochs = 3\n[train]\nnum_folds = 3\n", " (epochs is a key of [train])"),
    ("bogus = 3\n", ""),
])
def test_a_key_before_any_section_is_said_to_be_outside_any_section(text, where, tmp_path):
    path = tmp_path / "top.toml"
    path.write_text(text)
    key = text.split(" ")[0]
    with pytest.raises(IcurtError) as err:
        load_config(path, env={})
    assert str(err.value) == (f"config key '{key}' in {path} is outside any section{where}; put it under its "
                              "[section] (see configs/default.toml)")


def test_a_top_level_key_in_a_dict_is_outside_any_section_too():
    from icurt.config import config_from_dict, config_to_dict

    raw = {**config_to_dict(load_config(env={}), redact=False), "epochs": 3}
    with pytest.raises(IcurtError) as err:
        config_from_dict(raw)
    assert str(err.value) == ("config key 'epochs' is outside any section (epochs is a key of [train]); put it "
                              "under its [section] (see configs/default.toml)")


def test_missing_or_broken_file_is_a_clear_error(tmp_path):
    with pytest.raises(IcurtError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\n")
    with pytest.raises(IcurtError, match="not valid TOML"):
        load_config(broken, env={})


def test_override_syntax_error():
    with pytest.raises(IcurtError, match="section.key=value"):
        load_config(overrides=["epochs"], env={})


def test_toml_dump_round_trips_and_redacts_password(tmp_path):
    cfg = load_config(overrides=["db.dsn=postgresql://alice:s3cret@db.example/mimic"], env={})
    text = config_to_toml(cfg)
    assert "s3cret" not in text and "alice:***@" in text
    path = tmp_path / "dump.toml"
    path.write_text(config_to_toml(cfg, redact=False))
    assert load_config(path, env={}) == cfg


def test_with_overrides_validates():
    cfg = load_config(env={})
    assert with_overrides(cfg, ["attack.seed=7"]).attack.seed == 7
    with pytest.raises(IcurtError, match="attack.seed"):
        with_overrides(cfg, ["attack.seed=x"])
