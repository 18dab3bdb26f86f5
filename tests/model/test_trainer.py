"""The trainer learns a planted signal, samples balanced batches, evaluates honestly, is seeded."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, log_loss, roc_auc_score

from icurt.errors import IcurtError
from icurt.model.fold_runner import CURVE_METRICS
from icurt.model.lstm import ModelHparams
from icurt.model.trainer import BestSoFar, Trainer, cross_validation_rounds, fit, predict_logits
from icurt.planted import planted_dataset as planted

HP = ModelHparams(lstm_hidden=16, fc_size=16, dropout=0.1, optimizer="adam", learning_rate=3e-3,
                  batch_size=64)


def planted_dataset(n=600, seed=0, strength=3.0):
    """icurt.planted's data as arrays: P(died) = sigmoid(a + strength·s), 3 of 19 features drift with s."""
    made = planted(n, seed=seed, strength=strength, death_rate=0.2)
    return made.dataset.features, made.dataset.labels, made.p_died


def test_learns_a_planted_signal_close_to_the_oracle():
    x, y, p_died = planted_dataset()
    train, val = np.arange(400), np.arange(400, 600)
    oracle = roc_auc_score(y[val], p_died[val])     # the best any model can do on this val set
    trainer = Trainer(HP, x[train], y[train], x[val], y[val], seed=1)
    for _ in range(12):
        trainer.train_epoch()
    metrics = trainer.evaluate()
    assert trainer.epoch == 12
    assert metrics["auroc"] > 0.5 + 0.2, (metrics, oracle)
    assert metrics["auroc"] >= oracle - 0.1, (metrics, oracle)


def test_training_loss_falls():
    x, y, _ = planted_dataset(seed=3)
    trainer = Trainer(HP, x[:400], y[:400], x[400:], y[400:], seed=0)
    losses = [trainer.train_epoch() for _ in range(8)]
    assert np.mean(losses[-2:]) < losses[0] - 0.1


def test_weighted_sampling_draws_balanced_classes():
    rng = np.random.default_rng(5)
    y = (rng.random(1000) < 0.1).astype(np.int64)
    trainer = Trainer(HP, np.zeros((1000, 4, 2), np.float32), y, np.zeros((10, 4, 2), np.float32),
                      np.r_[np.zeros(5), np.ones(5)].astype(np.int64))
    drawn = torch.cat([trainer.sample_epoch_indices() for _ in range(10)]).numpy()
    assert len(drawn) == 10_000
    share_died = y[drawn].mean()
    # 10,000 draws at p = 0.5: sd = 0.005; the natural share would be ≈ 0.1
    assert abs(share_died - 0.5) < 0.025
    # within a class every sample is equally likely to be drawn: all positives appear
    assert set(np.flatnonzero(y)) <= set(drawn)


def test_evaluation_uses_every_validation_sample_once():
    x, y, _ = planted_dataset(n=300, seed=7)
    trainer = Trainer(HP, x[:200], y[:200], x[200:], y[200:], seed=0)
    trainer.train_epoch()
    metrics = trainer.evaluate()
    logits = predict_logits(trainer.model, torch.from_numpy(x[200:]), batch_size=7)
    p = torch.softmax(logits, 1)[:, 1].numpy()
    pred = logits.argmax(1).numpy()
    assert metrics["auroc"] == pytest.approx(roc_auc_score(y[200:], p), abs=1e-6)
    assert metrics["auprc"] == pytest.approx(average_precision_score(y[200:], p), abs=1e-6)
    assert metrics["f1"] == pytest.approx(f1_score(y[200:], pred, zero_division=0))
    assert metrics["accuracy"] == pytest.approx(np.mean(pred == y[200:]))
    assert metrics["val_loss"] == pytest.approx(log_loss(y[200:], p, labels=[0, 1]), abs=1e-5)


def test_same_seed_same_model_other_seed_other_model():
    x, y, _ = planted_dataset(n=200, seed=2)

    def run(seed):
        trainer = Trainer(HP, x[:150], y[:150], x[150:], y[150:], seed=seed)
        losses = [trainer.train_epoch() for _ in range(2)]
        return losses, trainer.model.state_dict()

    (loss_a, state_a), (loss_b, state_b), (loss_c, state_c) = run(4), run(4), run(5)
    assert loss_a == loss_b and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert loss_a != loss_c and any(not torch.equal(state_a[k], state_c[k]) for k in state_a)


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam"])
def test_every_optimizer_trains(optimizer):
    x, y, _ = planted_dataset(n=100, seed=1)
    hp = ModelHparams(lstm_hidden=16, fc_size=8, optimizer=optimizer, learning_rate=1e-2, batch_size=32)
    trainer = Trainer(hp, x[:80], y[:80], x[80:], y[80:])
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert np.isfinite(trainer.train_epoch())
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_unknown_optimizer_and_single_class_are_user_errors():
    x = np.zeros((10, 4, 2), np.float32)
    with pytest.raises(IcurtError, match="optimizer"):
        Trainer(ModelHparams(optimizer="lbfgs"), x, np.r_[0, 1] .repeat(5), x, np.zeros(10, np.int64))
    with pytest.raises(IcurtError, match="one class"):
        Trainer(HP, x, np.zeros(10, np.int64), x, np.zeros(10, np.int64))


def test_tensorboard_scalars_per_epoch(tmp_path):
    from torch.utils.tensorboard import SummaryWriter
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    x, y, _ = planted_dataset(n=120, seed=4)
    with SummaryWriter(tmp_path) as writer:
        trainer = Trainer(HP, x[:80], y[:80], x[80:], y[80:], tb_writer=writer)
        for epoch in range(1, 4):
            trainer.train_epoch()
            if epoch % 2 == 0:
                trainer.evaluate()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3]
    assert [e.step for e in events.Scalars("val/auroc")] == [2]
    assert {"val/val_loss", "val/auprc", "val/f1"} <= set(events.Tags()["scalars"])


class BatchRecorder(torch.nn.Module):
    """Wraps the model as DDP would, recording each training batch it sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.batches = model, []

    def forward(self, x):
        self.batches.append(x.detach().clone())
        return self.model(x)


def test_data_parallel_ranks_split_each_sampled_batch():
    x = torch.arange(101, dtype=torch.float32).reshape(101, 1, 1).repeat(1, 3, 2)
    y = np.r_[np.zeros(80), np.ones(21)].astype(np.int64)
    hp = ModelHparams(lstm_hidden=4, fc_size=4, batch_size=32)
    seen = {}
    for rank, world in [(0, 1), (0, 2), (1, 2)]:
        recorders = []
        trainer = Trainer(hp, x, y, x[:4], y[-4:], seed=9, rank=rank, world_size=world,
                          wrap_model=lambda m: recorders.append(BatchRecorder(m)) or recorders[-1])
        trainer.train_epoch()
        seen[rank, world] = [b[:, 0, 0].long() for b in recorders[0].batches]
    full, even, odd = seen[0, 1], seen[0, 2], seen[1, 2]
    assert [len(b) for b in full] == [32, 32, 32, 5]
    assert [len(b) for b in even] == [16, 16, 16, 3] and [len(b) for b in odd] == [16, 16, 16, 2]
    for whole, a, b in zip(full, even, odd):
        assert torch.equal(whole[0::2], a) and torch.equal(whole[1::2], b)


def nan_trainer(x, y, seed=0):
    """A Trainer whose output layer's bias is NaN: every logit, loss and score it makes is NaN."""
    trainer = Trainer(HP, x[:200], y[:200], x[200:], y[200:], seed=seed)
    with torch.no_grad():
        trainer.model.out.bias.fill_(float("nan"))
    return trainer


def test_a_trainer_with_nan_logits_never_keeps_a_best_checkpoint():
    """The fold worker keeps a checkpoint exactly when BestSoFar.offer says so (fold_runner.py)."""
    x, y, _ = planted_dataset(n=300, seed=2)
    trainer = nan_trainer(x, y)
    best, kept = BestSoFar("auroc"), []
    for evaluation in fit(trainer, epochs=4, eval_interval=1):
        assert np.isnan(evaluation.metrics["val_loss"]) and np.isnan(evaluation.metrics["auroc"])
        assert np.isnan(evaluation.metrics["auprc"]) and np.isnan(evaluation.metrics["brier"])
        if best.offer(evaluation.epoch, evaluation.metrics):
            kept.append(evaluation.epoch)
    assert kept == [] and best.epoch is None
    assert set(CURVE_METRICS) <= set(evaluation.metrics)


def test_best_so_far_by_hand():
    by_auroc, by_loss = BestSoFar("auroc"), BestSoFar("val_loss")
    evaluations = [(10, {"val_loss": 0.50, "auroc": 0.70, "auprc": 0.3}),
                   (20, {"val_loss": 0.40, "auroc": 0.80, "auprc": 0.4}),
                   (30, {"val_loss": float("nan"), "auroc": 0.95, "auprc": 0.6}),   # never best
                   (40, {"val_loss": 0.45, "auroc": 0.80, "auprc": 0.4}),           # ties auroc: later wins
                   (50, {"val_loss": 0.42, "auroc": float("inf"), "auprc": 0.4})]   # never best
    auroc_kept = [e for e, m in evaluations if by_auroc.offer(e, m)]
    loss_kept = [e for e, m in evaluations if by_loss.offer(e, m)]
    assert auroc_kept == [10, 20, 40] and by_auroc.epoch == 40
    assert loss_kept == [10, 20] and by_loss.epoch == 20


def test_cross_validation_rounds_score_last_or_best_and_stop_at_divergence():
    x, y, _ = planted_dataset(n=300, seed=5)
    folds = [(np.arange(0, 200), np.arange(200, 300)), (np.arange(100, 300), np.arange(0, 100))]
    trainers = lambda: [Trainer(HP, x[t], y[t], x[v], y[v], seed=k) for k, (t, v) in enumerate(folds)]  # noqa: E731
    last = list(cross_validation_rounds(trainers(), 3, 1, score="last"))
    best = list(cross_validation_rounds(trainers(), 3, 1, score="best"))
    rounds = [r["round_val_loss"] for r in last]
    assert [r["val_loss"] for r in last] == rounds
    assert [r["val_loss"] for r in best] == [min(rounds[:k + 1]) for k in range(3)]   # same seeds, same fits
    broken = trainers()
    with torch.no_grad():
        broken[1].model.out.bias.fill_(float("nan"))
    diverged = list(cross_validation_rounds(broken, 3, 1))
    assert len(diverged) == 1 and diverged[0]["diverged"]
    assert diverged[0]["reason"].startswith("diverged at cv epoch 1: fold 1 has val_loss nan")


# ---- precision ([train].precision) --------------------------------------------------------------

def hand_written_epochs(hp, x, y, seed, epochs):
    """The CPU training path as it was before [train].precision (no autocast, no GradScaler), written
    out: seeded model, balanced multinomial draw, batch slices, Adam steps; its weights and losses."""
    from icurt.model.lstm import ICURT_SHAPE, LSTMClassifier, training_loss

    x, y = torch.from_numpy(x).contiguous(), torch.from_numpy(y).contiguous()
    torch.manual_seed(seed)
    model = LSTMClassifier(x.shape[2], hp, ICURT_SHAPE)
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    weights = (1.0 / torch.bincount(y, minlength=2).float())[y]
    losses = []
    for _ in range(epochs):
        model.train()
        indices = torch.multinomial(weights, len(y), replacement=True, generator=generator)
        total, seen = torch.zeros(()), 0
        for start in range(0, len(indices), hp.batch_size):
            batch = indices[start:start + hp.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = training_loss(model(x[batch]).float(), y[batch], "logits")
            loss.backward()
            optimizer.step()
            total += loss.detach().float() * len(batch)
            seen += len(batch)
        losses.append(total.item() / seen)
    return model.state_dict(), losses


def test_fp32_training_on_cpu_equals_the_plain_loop_bit_for_bit():
    x, y, _ = planted_dataset(n=160, seed=6)
    trainer = Trainer(HP, x[:120], y[:120], x[120:], y[120:], seed=3, precision="fp32")
    losses = [trainer.train_epoch() for _ in range(2)]
    state, expected_losses = hand_written_epochs(HP, x[:120], y[:120], seed=3, epochs=2)
    assert losses == expected_losses
    assert all(torch.equal(trainer.model.state_dict()[k], state[k]) for k in state)
    assert trainer.scaler is None


def test_a_precision_the_device_cannot_run_is_refused_with_one_line(monkeypatch):
    from icurt.model.precision import check_precision, needs_grad_scaler

    x, y, _ = planted_dataset(n=60, seed=1)
    with pytest.raises(IcurtError, match=r"train.precision is fp16 .* CPU.*set train.precision=fp32") as refused:
        Trainer(HP, x[:40], y[:40], x[40:], y[40:], precision="fp16")
    assert "\n" not in str(refused.value)
    with pytest.raises(IcurtError, match="fp16"):
        predict_logits(Trainer(HP, x[:40], y[:40], x[40:], y[40:]).model, torch.from_numpy(x[40:]), precision="fp16")
    with pytest.raises(IcurtError, match="one of fp32, bf16, fp16"):
        check_precision("fp8", "cpu")
    # a CUDA device without bfloat16 (e.g. a pre-Ampere GPU): bf16 refused, fp16 and fp32 fine
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    with pytest.raises(IcurtError, match="train.precision is bf16 but this CUDA device does not support bfloat16; "
                                         "set train.precision=fp32") as refused:
        check_precision("bf16", "cuda")
    assert "\n" not in str(refused.value)
    check_precision("fp16", "cuda:0")
    check_precision("fp32", "cuda")
    monkeypatch.setattr("icurt.model.precision.cpu_runs_bf16_lstm", lambda: True)    # a CPU with a bf16 LSTM
    check_precision("bf16", "cpu")
    monkeypatch.setattr("icurt.model.precision.cpu_runs_bf16_lstm", lambda: False)   # one without (AMD EPYC)
    with pytest.raises(IcurtError, match="this CPU cannot run the LSTM in bfloat16"):
        check_precision("bf16", "cpu")
    assert [needs_grad_scaler(p, d) for p, d in [("fp16", "cuda"), ("bf16", "cuda"), ("fp32", "cuda")]] == \
        [True, False, False]


def test_bf16_trains_and_evaluates_on_cpu_or_is_refused_in_one_line():
    """A CPU without oneDNN's bf16 LSTM (no AVX-512 BF16/AMX, e.g. AMD EPYC) is refused before training
    (the forward pass would raise deep inside torch); one that has it trains and evaluates in bf16."""
    from icurt.errors import IcurtError
    from icurt.model.precision import cpu_runs_bf16_lstm

    x, y, _ = planted_dataset(n=120, seed=2)
    lstm = torch.nn.LSTM(2, 2, batch_first=True)
    try:   # what the probe must say, found independently: run the LSTM under bf16 autocast
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            lstm(torch.zeros(1, 2, 2))
        runs = True
    except RuntimeError:
        runs = False
    assert cpu_runs_bf16_lstm() == runs
    if not runs:
        with pytest.raises(IcurtError, match="cannot run the LSTM in bfloat16.*set train.precision=fp32"):
            Trainer(HP, x[:80], y[:80], x[80:], y[80:], seed=0, precision="bf16")
        return
    trainer = Trainer(HP, x[:80], y[:80], x[80:], y[80:], seed=0, precision="bf16")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert np.isfinite(trainer.train_epoch())
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert all(v.dtype == torch.float32 for v in trainer.model.state_dict().values())   # weights stay fp32
    low = predict_logits(trainer.model, trainer.x_val, precision="bf16")
    full = predict_logits(trainer.model, trainer.x_val, precision="fp32")
    assert low.dtype == torch.float32 and not torch.equal(low, full)   # evaluated in bf16 …
    assert torch.allclose(low, full, atol=0.1)                         # … to bf16's ~3 significant digits
    assert np.isfinite(trainer.evaluate()["val_loss"])


# ---- early stopping ([train].patience) -----------------------------------------------------------

def test_early_stopping_counts_evaluations_not_chosen():
    from icurt.model.trainer import EarlyStopping

    rule = EarlyStopping(3)
    assert [rule.update(c) for c in [True, False, False, True, False, False, False]] == \
        [False, False, False, False, False, False, True]          # 3 in a row after the last best
    off = EarlyStopping(0)
    assert not any(off.update(False) for _ in range(100))


def test_best_so_far_and_patience_over_a_scripted_metric_sequence():
    from icurt.model.trainer import EarlyStopping

    best, rule = BestSoFar("val_loss"), EarlyStopping(2)
    losses = [0.6, 0.5, 0.55, 0.5, 0.52, 0.51, 0.3]      # a tie (0.5) is chosen (later wins): it resets
    stops = [rule.update(best.offer(10 * (k + 1), {"val_loss": v, "auroc": 0.7, "auprc": 0.3}))
             for k, v in enumerate(losses)]
    assert stops == [False, False, False, False, False, True, False]
    assert best.epoch == 70     # the rule never stops the offers; fit stops at the first True (epoch 60)


def scripted_trainer(values):
    """A Trainer whose evaluations report the AUROCs `values` in turn (training is real)."""
    x, y, _ = planted_dataset(n=80, seed=3)
    trainer = Trainer(ModelHparams(lstm_hidden=4, fc_size=4, batch_size=64), x[:60], y[:60], x[60:], y[60:])
    scripted = iter(values)
    trainer.evaluate = lambda: {"val_loss": 0.5, "auroc": next(scripted), "auprc": 0.5}
    return trainer


def test_a_fit_whose_metric_stops_improving_ends_after_patience_evaluations():
    trainer = scripted_trainer([0.6, 0.7, 0.65, 0.68, 0.69, 0.9, 0.95])
    evaluations = list(fit(trainer, epochs=20, eval_interval=2, best=BestSoFar("auroc"), patience=3))
    # best at the 2nd evaluation (epoch 4); 3 evaluations without a new best (6, 8, 10) end the fit
    assert [e.epoch for e in evaluations] == [2, 4, 6, 8, 10] and trainer.epoch == 10
    assert [e.chosen for e in evaluations] == [True, True, False, False, False]
    assert [e.last for e in evaluations] == [False] * 4 + [True]


def test_a_fit_that_keeps_improving_runs_to_the_cap():
    trainer = scripted_trainer([0.5 + 0.01 * k for k in range(10)])
    evaluations = list(fit(trainer, epochs=19, eval_interval=2, best=BestSoFar("auroc"), patience=1))
    assert [e.epoch for e in evaluations] == [2, 4, 6, 8, 10, 12, 14, 16, 18, 19] and trainer.epoch == 19
    assert all(e.chosen for e in evaluations) and evaluations[-1].last


def test_the_stop_is_the_one_every_rank_agrees_on():
    """A data-parallel rank that does not evaluate stops when rank 0 says so (`agree`)."""
    trainer = scripted_trainer([])
    rank0 = iter([False, True])          # rank 0's decisions at its first two evaluations
    evaluations = list(fit(trainer, epochs=10, eval_interval=2, evaluate=False, patience=5,
                           agree=lambda stop: next(rank0)))
    assert [e.epoch for e in evaluations] == [2, 4] and evaluations[-1].last and trainer.epoch == 4
