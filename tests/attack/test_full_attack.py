"""Stage 6 on hand-made runs (preprocess → tune-model → train → tune-attack) and a real local Ray.

The sharded attack must equal `attack_samples` run here on the same batches, and actor deaths
must leave every sample in the results exactly once.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from icurt.analysis.stats import check_results, perturbations_from_arrays
from icurt.attack.actors import AttackPool, AttackWorker, PoolSpec
from icurt.attack.attacker import AttackHparams
from icurt.attack.samples import SampleResults, attack_samples
from icurt.attack.full import run
from icurt.attack.results import dense_results, read_results, results_table, sparse_perturbations, write_results
from icurt.cli import main
from icurt.config import load_config, with_overrides
from icurt.dataset import Dataset, save_dataset
from icurt.errors import IcurtError
from icurt.model.lstm import LSTMClassifier, ModelHparams, load_checkpoint, save_checkpoint
from icurt.runs import RunStore

N, T, F = 40, 8, 3
NAMES = ["creatinine", "sodium", "heartrate"]
TUNED = {"kappa": 0.1, "lambda_1": 0.02, "learning_rate": 0.05, "batch_size": 8, "optimizer": "adam",
         "objective": 3.5, "trial": 2}
CONTRACT_COLUMNS = {
    "sample_index": "int64", "stay_id": "int64", "label": "int64", "orig_logit_0": "float32",
    "orig_logit_1": "float32", "orig_pred": "int64", "attacked": "bool", "success": "bool",
    "first_iteration": "int64", "best_iteration": "int64", "adv_logit_0": "float32", "adv_logit_1": "float32",
    "n_nonzero_first": "int64", "n_nonzero_best": "int64", "l1_first": "float64", "l1_best": "float64",
    "maxabs_first": "float64", "maxabs_best": "float64"}


def tiny_dataset(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.1, 0.9, (N, T, F)).astype(np.float32)
    labels = (x[:, -3:, 0].mean(axis=1) > 0.5).astype(np.int64)
    norm = {name: {"p_low": 1.0, "p_high": 9.0, "min": 1.0, "max": 9.0, "median": 5.0} for name in NAMES}
    return Dataset(features=x, labels=labels, stay_ids=np.arange(N, dtype=np.int64) + 1000,
                   feature_names=NAMES, normalisation=norm)


def tiny_model(ds: Dataset) -> tuple[LSTMClassifier, ModelHparams]:
    torch.manual_seed(0)
    hp = ModelHparams(lstm_hidden=8, fc_size=8)
    model = LSTMClassifier(F, hp)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    x, y = torch.from_numpy(ds.features), torch.from_numpy(ds.labels)
    for _ in range(120):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval(), hp


@pytest.fixture
def cfg(tmp_path):
    return with_overrides(load_config(env={}), [
        f"paths.data={tmp_path}", "attack.epochs_per_batch=30", "attack.max_num_samples=30", "attack.seed=7",
        "attack.num_actors=2", "attack.cpus_per_actor=1", "attack.lambda_decay=0.5", "attack.lambda_decay_every=4",
        "attack.early_stop_patience=6", "ray.device=cpu"])


@pytest.fixture
def lineage(cfg, tmp_path):
    """A completed tune-attack run whose lineage holds a tiny dataset and a tiny trained model."""
    store = RunStore(tmp_path)
    ds = tiny_dataset()
    with store.create("preprocess", cfg) as w:
        save_dataset(w.path, ds)
    with store.create("tune-model", cfg, inputs=[w.run]) as w:
        (w.path / "best_hparams.json").write_text("{}")
    model, hp = tiny_model(ds)
    with store.create("train", cfg, inputs=[w.run]) as w:
        save_checkpoint(w.path / "fold_0", model, hp, F)
    train_run = w.run
    with store.create("tune-attack", cfg, inputs=[train_run]) as w:
        (w.path / "best_attack_hparams.json").write_text(json.dumps(TUNED))
    return store, w.run, ds, load_checkpoint(train_run.path / "fold_0")


def reference(model, ds, sample_index, hp: AttackHparams, iterations: int) -> SampleResults:
    return attack_samples(model, ds.features[sample_index], ds.labels[sample_index], hp, iterations)


def test_stage_equals_one_process_and_follows_the_contract(ray_session, cfg, lineage):
    store, tune_run, ds, model = lineage
    attack_run = run(cfg, tune_run, store=store)
    assert attack_run.stage == "attack" and store.latest("attack").run_id == attack_run.run_id

    table = pd.read_parquet(attack_run.file("results.parquet"))
    assert {c: str(t) for c, t in table.dtypes.items()} == CONTRACT_COLUMNS
    expected_index = np.sort(np.random.default_rng(7).choice(N, size=30, replace=False))
    np.testing.assert_array_equal(table["sample_index"], expected_index)  # each selected sample once
    np.testing.assert_array_equal(table["stay_id"], expected_index + 1000)
    np.testing.assert_array_equal(table["label"], ds.labels[expected_index])

    hp = AttackHparams(kappa=0.1, lambda_1=0.02, learning_rate=0.05, optimizer="adam", batch_size=8,
                       lambda_decay=0.5, lambda_decay_every=4, early_stop_patience=6)
    want = reference(model, ds, expected_index, hp, iterations=30)
    got = dense_results(*read_results(attack_run.path))
    for name in ("attacked", "success", "first_iteration", "best_iteration", "first_p", "best_p",
                 "orig_logits", "adv_logits"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert want.success.sum() >= 20

    ok = want.success
    np.testing.assert_array_equal(table["n_nonzero_best"], np.where(ok, (want.best_p != 0).sum(axis=(1, 2)), 0))
    np.testing.assert_allclose(table["l1_best"][ok], np.abs(want.best_p[ok]).sum(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(table["maxabs_first"][ok], np.abs(want.first_p[ok]).max(axis=(1, 2)), rtol=1e-6)
    assert table.loc[~ok, ["l1_best", "maxabs_best", "adv_logit_0"]].isna().all().all()

    check_results(table)  # the analyze stage accepts it
    with np.load(attack_run.file("perturbations.npz"), allow_pickle=False) as npz:
        assert npz["best_t"].dtype == np.int16 and npz["best_value"].dtype == np.float32
        _, shape = perturbations_from_arrays({k: npz[k] for k in npz.files})
    assert shape == (N, T, F)
    config = json.loads(attack_run.file("attack_config.json").read_text())
    assert config["kappa"] == 0.1 and config["iterations"] == 30 and config["num_actors"] == 2
    assert config["lambda_decay"] == 0.5 and config["lambda_decay_every"] == 4 and config["fold"] == 0
    assert config["early_stop_patience"] == 6
    assert json.loads(attack_run.file("feature_names.json").read_text()) == NAMES
    assert "successes so far" in attack_run.file("run.log").read_text()


def pool(ray, model, hp, iterations, worker_class=AttackWorker, retries=3):
    spec = PoolSpec(num_actors=2, cpus_per_actor=1, gpus_per_actor=0, max_restarts=retries,
                    max_batch_retries=retries)
    state = {k: v for k, v in model.state_dict().items()}
    model_spec = {"num_features": F, "hparams": ModelHparams(lstm_hidden=8, fc_size=8).to_dict()}
    return AttackPool(ray, spec, state, model_spec, hp, iterations, False, worker_class=worker_class)


def test_a_dying_actor_still_yields_every_sample_once(ray_session, lineage, tmp_path):
    _, _, ds, model = lineage
    marker = tmp_path / "crashed-once"

    class CrashOnceOnBatch2(AttackWorker):
        def attack(self, batch_index, *args):
            if batch_index == 2 and not marker.exists():
                marker.touch()
                os._exit(1)  # the actor process dies mid-run, as on a lost node
            return super().attack(batch_index, *args)

    hp = AttackHparams(kappa=0.0, lambda_1=0.02, learning_rate=0.05, optimizer="adam", batch_size=5)
    batches = [np.arange(i, i + 5) for i in range(0, 30, 5)]
    runner = pool(ray_session, model, hp, 20, worker_class=CrashOnceOnBatch2)
    try:
        results = runner.run(ds.features, ds.labels, batches)
    finally:
        runner.shutdown()
    # batch 2 died with its actor, and so did any batch queued behind it on that actor
    assert marker.exists() and 2 in {b for b, _ in runner.failures}
    assert len({actor for _, actor in runner.failures}) == 1
    assert sorted(results) == list(range(6))
    got = SampleResults.concat([results[b] for b in range(6)])
    want = reference(model, ds, np.arange(30), hp, 20)
    np.testing.assert_array_equal(got.best_p, want.best_p)
    np.testing.assert_array_equal(got.first_iteration, want.first_iteration)


def test_a_batch_that_always_kills_its_actor_is_an_error(ray_session, lineage):
    _, _, ds, model = lineage

    class AlwaysCrashOnBatch0(AttackWorker):
        def attack(self, batch_index, *args):
            if batch_index == 0:
                os._exit(1)
            return super().attack(batch_index, *args)

    hp = AttackHparams(kappa=0.0, lambda_1=0.02, learning_rate=0.05, optimizer="adam", batch_size=5)
    runner = pool(ray_session, model, hp, 5, worker_class=AlwaysCrashOnBatch0, retries=1)
    try:
        with pytest.raises(IcurtError, match="retries|died"):
            runner.run(ds.features, ds.labels, [np.arange(0, 5), np.arange(5, 10)])
    finally:
        runner.shutdown()


def test_results_files_round_trip(tmp_path, lineage):
    _, _, ds, model = lineage
    hp = AttackHparams(kappa=0.0, lambda_1=0.05, learning_rate=0.05, optimizer="sgd", batch_size=16)
    index = np.array([3, 1, 20, 7, 11])
    res = reference(model, ds, index, hp, 15)
    table = results_table(index, ds.stay_ids[index], ds.labels[index], res)
    write_results(tmp_path, table, sparse_perturbations(index, res), (N, T, F))
    back_table, arrays, shape = read_results(tmp_path)
    assert shape == (N, T, F) and list(back_table["sample_index"]) == [1, 3, 7, 11, 20]
    order = np.argsort(index)
    back = dense_results(back_table, arrays, shape)
    for name in ("attacked", "success", "first_iteration", "best_iteration", "first_p", "best_p",
                 "orig_logits", "adv_logits"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name)[order], err_msg=name)
    assert not any(p.name.endswith(".tmp") or ".tmp." in p.name for p in tmp_path.iterdir())


def test_cli_attack_and_its_errors(ray_session, cfg, lineage, tmp_path, capsys):
    store, tune_run, _, _ = lineage
    settings = ["--set", f"paths.data={tmp_path}", "--set", "attack.epochs_per_batch=5",
                "--set", "attack.num_actors=1", "--set", "attack.max_num_samples=8", "--set", "ray.device=cpu"]
    assert main(["attack", "--from", "no-such-run", *settings]) == 2
    assert "no completed tune-attack run" in capsys.readouterr().err
    assert main(["attack", "--from", tune_run.run_id, *settings]) == 0
    assert "adversarial examples" in capsys.readouterr().out
    assert len(store.list("attack")) == 1

    tune_run.file("best_attack_hparams.json").unlink()
    with pytest.raises(IcurtError, match="best_attack_hparams"):
        run(cfg, tune_run, store=store)
    assert len(store.list("attack")) == 1 and not store.failed("attack")


def test_the_model_comes_from_the_fold_the_tuning_run_used(cfg, lineage):
    store, tune_run, _, _ = lineage
    train_run = store.ancestor(tune_run, "train")
    with store.create("tune-attack", cfg, inputs=[train_run], extra_meta={"fold": 1}) as w:
        (w.path / "best_attack_hparams.json").write_text(json.dumps(TUNED))
    with pytest.raises(IcurtError, match="fold_1"):  # the train run only has fold_0
        run(cfg, w.run, store=store)
    assert not store.list("attack")
