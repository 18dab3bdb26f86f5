"""`icurt train` on real Ray: a tiny fake tune-model run, one chosen checkpoint per fold, held-out
and training-fold metrics, mean ± sd, held-out predictions and the verdict."""

import dataclasses
import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from icurt.dataset import save_dataset
from icurt.errors import IcurtError
from icurt.model import checkpoint
from icurt.model.hparams import ModelHparams
from icurt.model.summary import format_summary, summarize_folds
from icurt.planted import planted_dataset
from icurt.runs import RunStore

from signals import sigint_as_a_terminal_gives_it

HP = ModelHparams(lstm_hidden=8, fc_size=8, optimizer="adam", learning_rate=5e-3, batch_size=32)
FAST = ["train.num_folds=2", "train.epochs=3", "train.eval_interval=2", "train.num_workers=1",
        "train.cpus_per_worker=1", "ray.device=cpu"]


def fake_tune_run(store, cfg, n=60, n_died=12, seed=0, death_patients=None):
    """A preprocess run with a small planted dataset (patients of 1–3 stays) and a tune-model run
    built from it; with `death_patients`, every death is a stay of one of that many patients."""
    made = planted_dataset(n, hours=12, seed=seed)
    labels = np.zeros(n, np.int64)
    labels[np.argsort(-made.severity)[:n_died]] = 1          # exactly n_died: the most severe
    subjects = 500 + np.repeat(np.arange(n), np.resize([1, 2, 1, 3], n))[:n]   # stays 1, 2–3, 4, 5–7 … share
    if death_patients:
        subjects[labels == 1] = 9000 + np.arange(n_died) % death_patients
    ds = dataclasses.replace(made.dataset, labels=labels, subject_ids=subjects.astype(np.int64))
    with store.create("preprocess", cfg) as w:
        save_dataset(w.path, ds)
    with store.create("tune-model", cfg, inputs=[w.run]) as t:
        (t.path / "best_hparams.json").write_text(json.dumps({**HP.to_dict(), "objective": 0.5, "trial": 3}))
        other = ModelHparams(lstm_hidden=16, fc_size=4, optimizer="sgd", learning_rate=0.01, batch_size=16)
        pd.DataFrame([{"number": 0, "state": "COMPLETE", "objective": 0.6, **other.to_dict()},
                      {"number": 3, "state": "COMPLETE", "objective": 0.5, **HP.to_dict()}]
                     ).to_parquet(t.path / "trials.parquet")
    return t.run, ds


def test_summary_mean_and_sample_sd_by_hand():
    names = ("auroc", "auprc", "brier", "f1", "precision", "recall", "accuracy", "val_loss")
    folds = [{"fold": 1, "best_epoch": 20, "metrics": {m: 0.8 for m in names}, "train_metrics": {m: 0.9 for m in names}},
             {"fold": 0, "best_epoch": 10, "metrics": {m: 0.6 for m in names}, "train_metrics": {m: 1.0 for m in names}}]
    summary = summarize_folds(folds, {"split": "patient", "checkpoint_split": "inner", "inner_folds": 5,
                                      "checkpoint_metric": "auroc"})
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    assert summary["mean"]["auroc"] == pytest.approx(0.7)
    # sample sd of {0.6, 0.8}: sqrt(((0.1)² + (0.1)²) / (2 − 1)) = 0.1414…
    assert summary["sd"]["auroc"] == pytest.approx(math.sqrt(0.02))
    assert summary["train_mean"]["auroc"] == pytest.approx(0.95)
    assert summary["train_sd"]["auroc"] == pytest.approx(math.sqrt(0.005))   # sqrt((0.05² + 0.05²) / 1)
    text = format_summary(summary)
    assert "0.7000 ± 0.1414" in text and "0.9500 ± 0.0707" in text and text.count("\n") > 8
    assert text.startswith("folds by patient; each fold's checkpoint: highest AUROC on an inner validation split")


@pytest.mark.slow
def test_crossval_writes_one_best_checkpoint_per_fold(tmp_path, make_config, ray_session):
    from icurt.stages.train import run

    cfg = make_config(*FAST)
    store = RunStore.from_config(cfg)
    tune_run, ds = fake_tune_run(store, cfg)
    train_run = run(cfg, tune_run, store=store)

    assert train_run.stage == "train" and train_run.inputs == {"tune-model": tune_run.run_id}
    summary = json.loads(train_run.file("summary.json").read_text())
    assert [f["fold"] for f in summary["folds"]] == [0, 1]
    assert summary["rule"]["split"] == "patient" and summary["rule"]["checkpoint_split"] == "inner"
    held_out = []
    for fold in summary["folds"]:
        subjects = np.load(train_run.path / f"fold_{fold['fold']}" / "subjects.npz")
        assert len(subjects["train"]) and len(subjects["validation"])
        assert not set(subjects["train"]) & set(subjects["validation"])        # no patient on both sides
        fit = np.load(train_run.path / f"fold_{fold['fold']}" / "fit_indices.npy")
        choice = np.load(train_run.path / f"fold_{fold['fold']}" / "choice_indices.npy")
        assert set(ds.subject_ids[fit]).isdisjoint(ds.subject_ids[choice])
        assert fold["sizes"] == {"fit": len(fit), "choice": len(choice), "held_out": 60 - len(fit) - len(choice)}
        assert all(math.isfinite(fold["train_metrics"][m]) for m in ("auroc", "val_loss"))
        folder = train_run.path / f"fold_{fold['fold']}"
        state = torch.load(folder / "best.pt", weights_only=True)
        assert state and all(isinstance(v, torch.Tensor) for v in state.values())
        model = checkpoint.load(folder).build()
        assert model.lstm.hidden_size == HP.lstm_hidden
        assert fold["best_epoch"] in (2, 3)                   # evaluations at epoch 2 and the last
        assert fold["epochs_trained"] == 3                    # patience 10 evaluations never ends 3 epochs early
        assert json.loads((folder / "fold.json").read_text()) == {
            "fold": fold["fold"], "best_epoch": fold["best_epoch"], "epochs_trained": 3}
        val = np.load(folder / "val_indices.npy")
        held_out.append(val)
        # the saved checkpoint reproduces the reported AUROC and F1 (at the fold's threshold) on its held-out samples
        from icurt.model.metrics import auroc, threshold_metrics
        with torch.no_grad():
            p = torch.softmax(model(torch.from_numpy(ds.features[val])), 1)[:, 1].numpy()
        assert auroc(ds.labels[val], p) == pytest.approx(fold["metrics"]["auroc"], abs=1e-5)
        assert threshold_metrics(ds.labels[val], p, fold["threshold"])["f1"] == pytest.approx(fold["metrics"]["f1"])
    assert sorted(np.concatenate(held_out).tolist()) == list(range(60))
    predictions = pd.read_parquet(train_run.file("predictions.parquet"))
    assert sorted(predictions["row"]) == list(range(60))
    assert (predictions["stay_id"].to_numpy() == ds.stay_ids[predictions["row"]]).all()
    verdict = json.loads(train_run.file("verdict.json").read_text())
    assert verdict["n_samples"] == 60 and verdict["n_died"] == 12
    assert any("fewer than 1,000" in w for w in verdict["warnings"])     # a 60-sample cohort is never enough
    baselines = json.loads(train_run.file("baselines.json").read_text())   # on the same folds, beside the BiLSTM
    assert baselines["n_samples"] == 60 and set(baselines["models"]) == {"logistic_regression", "boosted_trees"}
    beside = pd.read_parquet(train_run.file("baseline_predictions.parquet")).sort_values("row")
    assert beside["fold"].tolist() == predictions.sort_values("row")["fold"].tolist()
    from icurt.baselines.torch_lr import from_record
    fold0 = beside[beside["fold"] == 0]                    # the torch LR of baselines.json gives the recorded P(died)
    with torch.no_grad():
        x0 = torch.from_numpy(ds.features[fold0["row"].to_numpy()].astype(np.float64))
        p0 = torch.softmax(from_record(baselines["logistic_weights"][0], baselines["hours"])(x0), 1)[:, 1]
    np.testing.assert_allclose(p0.numpy(), fold0["p_logistic_regression"], atol=1e-6, rtol=0)
    for name in ("auroc", "f1", "val_loss"):
        values = [f["metrics"][name] for f in summary["folds"]]
        assert summary["mean"][name] == pytest.approx(sum(values) / 2)
        assert summary["sd"][name] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    for fold in (0, 1):
        events = EventAccumulator(str(train_run.path / "tensorboard" / f"fold_{fold}"))
        events.Reload()
        assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
        assert [e.step for e in events.Scalars("val/auroc")] == [2, 3]
        assert [e.step for e in events.Scalars("held_out/auroc")] == [2, 3]
    assert "mean ± sd" in train_run.file("summary.txt").read_text()


def test_trial_option_picks_that_trials_hparams(tmp_path, make_config, ray_session):
    from icurt.stages.tune_model import chosen_hparams

    cfg = make_config(*FAST)
    tune_run, _ = fake_tune_run(RunStore.from_config(cfg), cfg)
    assert chosen_hparams(tune_run, None)[0] == HP
    hp, source = chosen_hparams(tune_run, 0)
    assert (hp.lstm_hidden, hp.optimizer, hp.batch_size, source) == (16, "sgd", 16, "trial 0")
    with pytest.raises(IcurtError, match="no trial 7"):
        chosen_hparams(tune_run, 7)


def test_too_few_samples_of_a_class_is_a_user_error(tmp_path, make_config):
    from icurt.stages.train import run

    cfg = make_config(*FAST, "train.num_folds=5")
    store = RunStore.from_config(cfg)
    tune_run, _ = fake_tune_run(store, cfg, n=40, n_died=3)
    with pytest.raises(IcurtError, match="3 sample.*class 1.*5 folds"):
        run(cfg, tune_run, store=store)
    assert store.list("train") == [] and store.failed("train") == []


def test_deaths_in_fewer_patients_than_folds_are_refused_before_training(tmp_path, make_config):
    from icurt.stages.train import run

    cfg = make_config(*FAST, "train.num_folds=5")
    store = RunStore.from_config(cfg)
    tune_run, _ = fake_tune_run(store, cfg, n=60, n_died=12, death_patients=3)
    with pytest.raises(IcurtError, match=r"^train.num_folds is 5 but the cohort's 12 deaths are in 3 patients; "
                                         r"use at most 3 folds"):
        run(cfg, tune_run, store=store)
    assert store.list("train") == [] and store.failed("train") == []


def test_cuda_without_gpu_is_refused_before_starting(tmp_path, make_config, ray_session):
    from icurt.stages.train import run

    assert ray_session.cluster_resources().get("GPU", 0) == 0
    cfg = make_config(*FAST, "ray.device=cuda")
    store = RunStore.from_config(cfg)
    tune_run, _ = fake_tune_run(store, cfg)
    with pytest.raises(IcurtError, match="no GPU"):
        run(cfg, tune_run, store=store)
    assert store.list("train") == [] and store.failed("train") == []


def test_a_precision_the_workers_cannot_run_is_refused_before_starting(tmp_path, make_config, ray_session):
    from icurt.stages.train import run

    cfg = make_config(*FAST, "train.precision=fp16")
    store = RunStore.from_config(cfg)
    tune_run, _ = fake_tune_run(store, cfg)
    with pytest.raises(IcurtError, match="train.precision is fp16 but the model runs on the CPU") as refused:
        run(cfg, tune_run, store=store)
    assert "\n" not in str(refused.value)
    assert store.list("train") == [] and store.failed("train") == []


def test_missing_runs_are_user_errors(tmp_path, make_config):
    from icurt.stages.train import run

    cfg = make_config(*FAST)
    store = RunStore.from_config(cfg)
    with pytest.raises(IcurtError, match="no completed tune-model run"):
        run(cfg, None, store=store)
    tune_run, _ = fake_tune_run(store, cfg)
    import shutil
    shutil.rmtree(store.ancestor(tune_run, "preprocess").path)
    with pytest.raises(IcurtError, match="preprocess"):
        run(cfg, store.get("tune-model", tune_run.run_id), store=store)


@pytest.mark.slow
def test_a_failing_fold_fails_the_run_with_its_error(tmp_path, make_config, ray_session):
    from icurt.model.fold_runner import FoldJob, run_folds
    from icurt.model.folds import fold_rows, stratified_folds
    from icurt.placement import Placement

    cfg = make_config(*FAST)
    store = RunStore.from_config(cfg)
    tune_run, ds = fake_tune_run(store, cfg)
    folds = fold_rows(stratified_folds(ds.labels, 2, 0), ds.labels, ds.subject_ids, "held_out", 2, 0, "stay")
    # dropout 2.0 passes no validation of ours here, so torch raises inside the Ray Train worker
    job = FoldJob(ModelHparams(**{**HP.to_dict(), "dropout": 2.0}), 2, 1, 0, 1, Placement({"CPU": 1.0}),
                  str(tmp_path / "ray_results" / "folds"), cfg.model, "auroc")
    with pytest.raises(IcurtError, match="fold 0 failed.*dropout"):
        with store.create("train", cfg, inputs=[tune_run]) as writer:
            run_folds(job, ds, folds, writer.path, 2)
    assert store.list("train") == [] and len(store.failed("train")) == 1
    # a model whose scores are NaN from the start keeps no checkpoint: its fold fails, naming why
    job = dataclasses.replace(job, hparams=ModelHparams(**{**HP.to_dict(), "optimizer": "sgd", "learning_rate": float("nan")}),
                              storage_path=str(tmp_path / "ray_results" / "nan"))
    with pytest.raises(IcurtError, match="diverged"):
        with store.create("train", cfg, inputs=[tune_run]) as writer:
            run_folds(job, ds, folds, writer.path, 2)


def test_invalid_tuned_hparams_are_refused(tmp_path, make_config):
    from icurt.stages.tune_model import chosen_hparams

    cfg = make_config(*FAST)
    tune_run, _ = fake_tune_run(RunStore.from_config(cfg), cfg)
    tune_run.file("best_hparams.json").write_text(json.dumps({**HP.to_dict(), "dropout": 1.5}))
    with pytest.raises(IcurtError, match="invalid"):
        chosen_hparams(tune_run, None)


def test_show_train_prints_the_table_and_writes_nothing(tmp_path, make_config, capsys):
    from icurt.cli import main

    cfg = make_config()
    store = RunStore.from_config(cfg)
    metrics = ("auroc", "auprc", "brier", "f1", "precision", "recall", "accuracy", "val_loss")
    folds = [{"fold": k, "best_epoch": 10 * (k + 1), "epochs_trained": 10 * (k + 1) + 20, "metrics": {m: v for m in metrics},
              "train_metrics": {m: v + 0.1 for m in metrics}} for k, v in enumerate([0.9, 0.7, 0.8])]
    with store.create("train", cfg) as w:
        (w.path / "summary.json").write_text(json.dumps(summarize_folds(folds)))
    before = sorted(p.name for p in w.run.path.iterdir())
    assert main(["show", "train", w.run.run_id, "--set", f"paths.data={tmp_path}", "-q"]) == 0
    out = capsys.readouterr().out
    # mean of {0.9, 0.7, 0.8} = 0.8; sample sd = sqrt((0.01 + 0.01 + 0) / 2) = 0.1; training folds + 0.1
    assert "auroc        0.8000 ± 0.1000     0.9000 ± 0.1000" in out
    assert "   2         30     50    0.5000    0.8000" in out       # fold, best epoch, epochs trained, threshold, auroc
    assert format_summary(summarize_folds(folds)) in out
    assert sorted(p.name for p in w.run.path.iterdir()) == before  # a show command never writes


def test_train_command_errors_are_one_line(tmp_path, make_config, capsys):
    from icurt.cli import main

    assert main(["train", "--from", "nope", "--set", f"paths.data={tmp_path}", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("icurt: error: no completed tune-model run 'nope'") and "\n" not in err
    assert main(["show", "train", "--set", f"paths.data={tmp_path}", "-q"]) == 2
    assert "no completed train run" in capsys.readouterr().err


@pytest.mark.slow
def test_two_ddp_workers_match_one_plain_trainer(tmp_path, make_config, ray_session):
    """Each DDP rank trains on half of every sampled batch; the averaged gradient is the full batch's,
    so with no dropout the fold's model matches a plain single-process Trainer on the same fold."""
    from icurt.stages.train import run
    from icurt.model.folds import stratified_folds
    from icurt.model.trainer import Trainer

    cfg = make_config(*FAST, "train.num_workers=2", "train.epochs=2", "train.eval_interval=2", "train.split=stay",
                      "train.checkpoint_split=held_out")
    store = RunStore.from_config(cfg)
    tune_run, ds = fake_tune_run(store, cfg)
    summary = json.loads(run(cfg, tune_run, store=store).file("summary.json").read_text())
    for fold, (train, val) in enumerate(stratified_folds(ds.labels, 2, cfg.train.fold_seed)):
        reference = Trainer(HP, ds.features[train], ds.labels[train], ds.features[val], ds.labels[val],
                            seed=cfg.train.seed + fold)
        for _ in range(2):
            reference.train_epoch()
        expected = reference.evaluate()
        got = summary["folds"][fold]["metrics"]
        assert got["val_loss"] == pytest.approx(expected["val_loss"], abs=1e-4)
        assert got["auroc"] == pytest.approx(expected["auroc"], abs=1e-6)


def test_gpu_choice_and_folds_side_by_side():
    from icurt.model.fold_runner import concurrent_folds
    from icurt.placement import Capacity, Placement, place

    def worker(device, gpus, per_worker=0.5):
        return place(device, Capacity.fixed(8, gpus), "train", 1.0, per_worker, unit="worker").use_gpu

    assert worker("auto", 1.0) is True
    assert worker("auto", 0.0) is False
    assert worker("cpu", 4.0) is False
    with pytest.raises(IcurtError, match="gpus_per_worker"):
        worker("cuda", 1.0, per_worker=0)
    # 8 CPUs / (2 workers × 1 CPU) = 4 folds at once; 1 GPU / (2 × 0.25) = 2 folds
    assert concurrent_folds(Placement({"CPU": 1.0}), Capacity.fixed(8, 0), 2, 5) == 4
    assert concurrent_folds(Placement({"CPU": 1.0, "GPU": 0.25}), Capacity.fixed(8, 1), 2, 5) == 2
    assert concurrent_folds(Placement({"CPU": 1.0}), Capacity.fixed(64, 0), 2, 5) == 5
    # the default shares: 5 workers of 0.2 GPU fill one GPU (Ray counts in 1e-4 units; 1 // 0.2 is 4.0)
    assert concurrent_folds(Placement({"CPU": 1.0, "GPU": 0.2}), Capacity.fixed(16, 1), 1, 5) == 5
    assert concurrent_folds(Placement({"CPU": 1.0, "GPU": 0.125}), Capacity.fixed(16, 1), 1, 9) == 8
    with pytest.raises(IcurtError, match="num_workers"):
        concurrent_folds(Placement({"CPU": 1.0}), Capacity.fixed(1, 0), 2, 5)


@pytest.mark.slow
def test_ctrl_c_during_the_folds_is_an_interruption(tmp_path, make_config):
    """SIGINT to `icurt train` once a fold is at work: one line naming its --resume, exit 130, the run
    kept as .failed."""
    cfg = make_config(*FAST)
    store = RunStore.from_config(cfg)
    tune_run, _ = fake_tune_run(store, cfg)
    settings = [arg for item in [*FAST, "train.epochs=2000", f"paths.data={tmp_path}", "ray.num_cpus=2"]
                for arg in ("--set", item)]
    proc = subprocess.Popen([sys.executable, "-m", "icurt.cli", "train", "--from", tune_run.run_id, *settings],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_as_a_terminal_gives_it)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if list((tmp_path / "train").glob(".tmp-*/tensorboard/**/events.out.tfevents.*")):
            break                                  # a fold has reported an epoch
        time.sleep(0.3)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    failed = list((tmp_path / "train").glob(".failed-*"))
    assert len(failed) == 1 and store.list("train") == []
    run_id = failed[0].name[len(".failed-"):]
    assert (f"icurt: interrupted; train run {run_id} is kept as {failed[0]} (continue it with "
            f"`icurt train --resume {run_id}`)" in err)
    assert err.count("icurt: ") == 1 and "Traceback" not in err
    assert json.loads((failed[0] / "run.json").read_text())["error"] == "interrupted (Ctrl-C or SIGINT)"


def test_a_failed_trial_is_not_trained(tmp_path, make_config):
    from icurt.stages.tune_model import chosen_hparams

    cfg = make_config(*FAST)
    tune_run, _ = fake_tune_run(RunStore.from_config(cfg), cfg)
    table = pd.read_parquet(tune_run.file("trials.parquet"))
    failed = {**table.iloc[0].to_dict(), "number": 5, "state": "FAIL", "objective": float("nan"),
              "fail_reason": "cut off by an interruption"}
    pd.concat([table, pd.DataFrame([failed])]).to_parquet(tune_run.file("trials.parquet"))
    assert chosen_hparams(tune_run, 3) == (HP, "trial 3")
    with pytest.raises(IcurtError, match="trial 5 of tune-model run .* failed \\(cut off by an interruption\\); "
                                         "pick a COMPLETE or PRUNED trial"):
        chosen_hparams(tune_run, 5)
