"""`icurt train --resume`: each fold's checkpoint and record land in the run as the fold finishes;
an interrupted run keeps them and trains only the other folds, to the same result as an
uninterrupted run (fold k's seed is [train].seed + k)."""

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from icurt.errors import IcurtError
from icurt.model import checkpoint
from icurt.runs import RunStore


def _crossval_module():
    """test_crossval.py's tiny tune-model lineage (tests are imported with --import-mode=importlib)."""
    spec = importlib.util.spec_from_file_location("icurt_test_crossval", Path(__file__).with_name("test_crossval.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


crossval = _crossval_module()
# eval every epoch with patience 2: a fold may stop early, and the resumed run must stop where the
# uninterrupted one did
SETTINGS = [*crossval.FAST, "train.num_folds=3", "train.epochs=5", "train.eval_interval=1", "train.patience=2"]


def test_resumed_trial_must_match_the_recorded_one():
    from icurt.stages.train import resumed_trial

    assert resumed_trial({"hparams_from": "best"}, None, "r") is None
    assert resumed_trial({"hparams_from": "trial 3"}, None, "r") == 3
    assert resumed_trial({"hparams_from": "trial 3"}, 3, "r") == 3
    with pytest.raises(IcurtError, match="trained the best hyperparameters, not trial 2; drop --trial"):
        resumed_trial({"hparams_from": "best"}, 2, "r")


@pytest.mark.slow
def test_an_interrupted_train_run_resumes_to_the_uninterrupted_result(tmp_path, make_config, ray_session,
                                                                     monkeypatch):
    from icurt.model import fold_runner
    from icurt.stages.train import run

    cfg = make_config(*SETTINGS)
    store = RunStore.from_config(cfg)
    tune_run, _ = crossval.fake_tune_run(store, cfg)
    whole = run(cfg, tune_run, store=store)

    real_run_folds = fold_runner.run_folds

    def crash_after_the_first_fold(job, dataset, folds, run_path, parallel, only=None):
        real_run_folds(job, dataset, folds, run_path, parallel, only=[only[0]])
        raise RuntimeError("the machine went away")

    monkeypatch.setattr(fold_runner, "run_folds", crash_after_the_first_fold)
    with pytest.raises(RuntimeError, match="went away"):
        run(cfg, tune_run, store=store)
    monkeypatch.undo()
    [run_id] = store.failed("train")
    failed = store.interrupted_folder("train", run_id)
    assert (failed / "fold_0" / "fold.json").is_file() and not (failed / "fold_1").exists()
    kept = torch.load(failed / "fold_0" / "best.pt", weights_only=True)

    resumed = run(make_config(*SETTINGS, "train.epochs=7"), None, store=store, resume=run_id)  # today's epochs differ
    assert resumed.run_id == run_id and resumed.meta["resumed"] == 1 and store.failed("train") == []
    assert resumed.inputs == {"tune-model": tune_run.run_id}
    # only folds 1 and 2 were trained again; fold 0's checkpoint is the one the first attempt wrote
    assert sorted(p.name for p in (resumed.path / "ray_results" / "crossval").glob("fold_*")) == ["fold_1", "fold_2"]
    assert all(torch.equal(kept[k], v) for k, v in checkpoint.load(resumed.path / "fold_0").state_dict.items())

    expected = json.loads(whole.file("summary.json").read_text())
    got = json.loads(resumed.file("summary.json").read_text())
    assert got == expected
    for fold in expected["folds"]:
        a = checkpoint.load(whole.path / f"fold_{fold['fold']}").state_dict
        b = checkpoint.load(resumed.path / f"fold_{fold['fold']}").state_dict
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        # the patience rule as recorded: a fold that stopped before the cap did so 2 evaluations after its best
        assert fold["best_epoch"] <= fold["epochs_trained"] <= 5
        assert fold["epochs_trained"] == 5 or fold["epochs_trained"] - fold["best_epoch"] == 2
    pd.testing.assert_frame_equal(pd.read_parquet(whole.file("predictions.parquet")),
                                  pd.read_parquet(resumed.file("predictions.parquet")))
    with pytest.raises(IcurtError, match="already completed"):
        run(cfg, None, store=store, resume=run_id)
