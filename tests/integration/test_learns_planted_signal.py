"""The model, trained on what synth → query → preprocess make, learns the planted mortality signal:
its held-out AUROC is clearly above chance and within a stated margin of the oracle that knows
each stay's latent severity (and never above the oracle by more than noise — that would be leakage)."""

import pytest
import torch
from sklearn.metrics import roc_auc_score

from icurt.dataset import load_dataset
from icurt.db.connection import connection
from icurt.db.synth.cohort import read_synth_truth, run_synth
from icurt.model.folds import stratified_folds
from icurt.model.lstm import ModelHparams
from icurt.model.trainer import Trainer
from icurt.stages import run_stage

MARGIN = 0.12        # the model may trail the oracle by at most this much AUROC
LEAK_TOLERANCE = 0.04  # sampling noise on ~300 held-out stays; more than this above the oracle is leakage


@pytest.mark.slow
def test_trainer_learns_synthetic_signal_close_to_oracle(make_config):
    torch.manual_seed(0)
    cfg = make_config("db.schema=signal", "preprocess.engine=pandas")
    run_synth(cfg, stays=2000, seed=7)
    dataset = load_dataset(run_stage("preprocess", cfg, run_stage("query", cfg)).path)
    with connection(cfg) as conn:
        truth, _ = read_synth_truth(conn, cfg.db.schema)
    oracle = truth.set_index("icustay_id")["oracle_probability"]

    train_idx, val_idx = stratified_folds(dataset.labels, 4, seed=3)[0]
    x, y = dataset.features, dataset.labels
    hp = ModelHparams(lstm_hidden=32, lstm_activation="tanh", dropout=0.1, fc_size=16,
                      fc_activation="relu", optimizer="adam", learning_rate=3e-3, batch_size=64)
    trainer = Trainer(hp, x[train_idx], y[train_idx], x[val_idx], y[val_idx], seed=0)
    best = 0.0
    for _ in range(12):
        trainer.train_epoch()
        best = max(best, trainer.evaluate()["auroc"])

    held_out = dataset.stay_ids[val_idx]
    print(f"model AUROC {best:.3f}")
    oracle_auroc = roc_auc_score(y[val_idx], oracle.loc[held_out].to_numpy())
    print(f"oracle AUROC {oracle_auroc:.3f} on {len(val_idx)} held-out stays")
    assert oracle_auroc > 0.8                       # the planted signal is strong
    assert best > 0.5 + 0.15                        # clearly above chance
    assert best >= oracle_auroc - MARGIN, (best, oracle_auroc)
    assert best <= oracle_auroc + LEAK_TOLERANCE, (best, oracle_auroc)
