"""`icurt run --config reference`, scaled down with --set, end to end on a small synthetic cohort:
every stage runs with the reference study's choices and the run records and the report name the
profile."""

import json
import re
from pathlib import Path

import pytest

from icurt.cli import main
from icurt.config import load_config, with_overrides
from icurt.db.synth.cohort import run_synth
from icurt.runs import RunStore
from icurt.stages import STAGE_NAMES, stage as stage_row

# only sizes: how many stays, trials, folds, epochs, iterations and samples (never a method choice)
SMALL = ["tune_model.num_trials=2", "tune_model.num_folds=2", "tune_model.cv_epochs=2",
         "tune_model.epochs_per_cv_epoch=1", "tune_model.lstm_hidden_exponents=[3, 4]",
         "tune_model.fc_size_exponents=[3, 4]", "tune_model.optuna_startup_trials=1",
         "tune_model.asha_grace_period=1", "train.num_folds=2", "train.epochs=2", "train.eval_interval=1",
         "tune_attack.num_trials=2", "tune_attack.epochs_per_batch=20", "tune_attack.report_interval=10",
         "tune_attack.max_num_samples=32", "tune_attack.optuna_startup_trials=1",
         "tune_attack.asha_grace_period=1", "attack.epochs_per_batch=20", "attack.max_num_samples=64",
         "preprocess.engine=\"pandas\"", "ray.device=\"cpu\""]


@pytest.mark.slow
def test_icurt_run_with_the_reference_profile(tmp_path, pg_dsn, ray_session, capsys):
    place = [f"paths.data={tmp_path}", f"db.dsn={pg_dsn}", "db.schema=reference_profile"]
    cfg = with_overrides(load_config(env={}), place)
    run_synth(cfg, stays=300, seed=12)
    settings = [arg for item in [*place, *SMALL] for arg in ("--set", item)]
    capsys.readouterr()
    # --go-on: 2 epochs of the reference's SGD may learn nothing; this test is about the profile's plumbing
    assert main(["run", "--config", "reference", "--go-on", *settings]) == 0
    out = capsys.readouterr().out
    assert "Profile: reference (the reference study's choices, configs/reference.toml)" in out
    report = Path(re.search(r"^report: (.+)$", out, re.M).group(1))
    assert "Profile: reference" in report.read_text()

    store = RunStore(tmp_path)
    runs = {stage: store.latest(stage) for stage in STAGE_NAMES}
    assert {stage: run.meta["profile"] for stage, run in runs.items()} == dict.fromkeys(STAGE_NAMES, "reference")
    # every size set here is a change from the reference profile, written as it was set; [ray] says where
    sizes = sorted(item for item in SMALL if not item.startswith("ray."))
    for stage_name, run in runs.items():    # each run: the sizes among the settings it reads
        reads = stage_row(stage_name).reads
        expected = sizes if stage_name == "analyze" else [item for item in sizes if item.split(".")[0] in reads]
        assert run.meta["profile_changes"] == expected, stage_name     # analyze: its whole lineage's
    assert f"its runs changed {len(sizes)} settings: {', '.join(sizes[:8])} and {len(sizes) - 8} more" in out
    # the reference's preprocessing ran: its inclusion rule's filters, its statistics
    cohort = json.loads(runs["preprocess"].file("cohort.json").read_text())
    assert {"min_stay_timestamps", "resampled_rows"} <= set(cohort["filters"]) and cohort["n_samples"] > 100
    assert "statistics (stay_rows), stay interpolation" in runs["preprocess"].file("run.log").read_text()
