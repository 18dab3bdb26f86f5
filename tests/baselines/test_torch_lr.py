"""The torch logistic-regression baseline: scikit-learn's probabilities to 1e-6, and the fragility
sweep runs on it unchanged with every example within its budget."""

import numpy as np
import pytest
import torch

from icurt.attack.attacker import AttackHparams
from icurt.attack.budget import max_abs_of, within
from icurt.attack.sweep import sweep_curve, sweep_curves
from icurt.baselines.compare import logistic_weights
from icurt.baselines.fit import BaselineSettings, fit_logistic, fit_fold
from icurt.baselines.summaries import summaries
from icurt.baselines.torch_lr import from_pipeline, from_record
from icurt.config import AttackMethod, load_config, with_overrides
from icurt.model.folds import FoldRows
from icurt.planted import planted_dataset

METHOD = AttackMethod(max_perts=0, lambda_decay=0.5, lambda_decay_every=5, early_stop_patience=0,
                      attack_misclassified=False, threshold="preconditioned", loss_norm="elementwise",
                      loss_reduction="sum", optimizer_state="per_batch")
HP = AttackHparams(kappa=0.0, lambda_1=0.005, learning_rate=0.05, optimizer="adam", batch_size=64)


def _fitted(n, hours, features, seed=0, **kw):
    ds = planted_dataset(n, hours=hours, features=features, seed=seed, **kw).dataset
    rows = np.arange(n, dtype=np.int64)
    split = FoldRows(rows[: n // 2], rows[n // 2: 3 * n // 4], rows[3 * n // 4:])
    pipeline, _ = fit_logistic(summaries(ds.features), ds.labels, split, BaselineSettings(c_grid=(1.0,)))
    return ds, pipeline, split


def test_torch_module_gives_sklearns_probabilities():
    ds, pipeline, split = _fitted(400, 48, 19, death_rate=0.3)
    expected = pipeline.predict_proba(summaries(ds.features))[:, 1]
    module = from_pipeline(pipeline, 48)
    with torch.no_grad():
        logits = module(torch.from_numpy(ds.features.astype(np.float64)))
    assert logits.shape == (400, 2) and (logits[:, 0] == 0).all()
    np.testing.assert_allclose(torch.softmax(logits, 1)[:, 1].numpy(), expected, atol=1e-6, rtol=0)
    assert expected.std() > 0.05
    fold = fit_fold(0, summaries(ds.features), ds.labels, split, BaselineSettings(c_grid=(1.0,), tree_iterations=5))
    rebuilt = from_record(logistic_weights([fold])[0], 48)            # from baselines.json's weights
    with torch.no_grad():
        p = torch.softmax(rebuilt(torch.from_numpy(ds.features[split.held_out].astype(np.float64))), 1)[:, 1]
    np.testing.assert_allclose(p.numpy(), fold.p["logistic_regression"], atol=1e-6, rtol=0)
    x = torch.from_numpy(ds.features[:5]).requires_grad_(True)       # float32, as the attack feeds it
    module(x)[:, 1].sum().backward()
    assert torch.isfinite(x.grad).all() and (x.grad != 0).any()


def test_the_fragility_sweep_runs_on_it_within_every_budget():
    torch.set_num_threads(1)
    ds, pipeline, _ = _fitted(160, 8, 3, seed=2, death_rate=0.5, strength=10.0, drift=0.4, noise=0.15,
                              signal_features=1)
    model = from_pipeline(pipeline, 8).eval()
    with torch.no_grad():
        correct = (model(torch.from_numpy(ds.features)).argmax(1).numpy() == ds.labels)
    x, y = ds.features[correct][:48], ds.labels[correct][:48]
    measured = np.random.default_rng(5).random(x.shape) < 0.5
    steps = np.array([0.2, 0.25, 0.25])
    fc = with_overrides(load_config(env={}), ["fragility.l0_budgets=[1, 4, 24]",
                                              "fragility.linf_scales=[0.5, 4.0]"]).fragility
    flipped = 0
    for curve in sweep_curves(fc):
        result = sweep_curve(model, x, y, HP, METHOD, curve, steps, measured, None, iterations=40)
        assert (np.diff(result.success.astype(int), axis=0) >= 0).all()
        for c, cell in enumerate(curve):
            ok = result.success[c]
            flipped += int(ok.sum())
            allowed = measured[ok] if cell.budget.measured_only else None
            assert within(result.p[c][ok], cell.budget, max_abs_of(cell.budget, steps), allowed).all()
            with torch.no_grad():
                assert (model(torch.from_numpy(x[ok] + result.p[c][ok])).argmax(1).numpy() != y[ok]).all()
    assert flipped > 0                      # the sweep found examples, so the checks above checked something
