"""Sparse attack quality and speed: icurt's attack vs the elastic-net (EAD) attacks of torchattacks
(EADL1) and IBM's adversarial-robustness-toolbox (ElasticNet).

One LSTM is trained on icurt.planted's cohort (48 h × 19 features in [0, 1]; a latent severity sets
the death probability and drifts 3 features over the window). All three attacks then get the same correctly
classified samples, the same batch size and the same iteration budget K: icurt runs K iterations;
each EAD peer runs binary_search_steps × max_iter = K (their binary search over the constant c is
part of their method; torchattacks also keeps its abort_early), initial c 1 and their default
L1 weight beta 1e-3 unless told otherwise. icurt: Adam, kappa 0, lambda_1 0.05, lr 0.1 (picked by
a small sweep on this cohort), per-sample lambda search (×0.5 every K/10 iterations).
Reported: success rate, mean non-zero elements and mean L1 of the returned perturbation over
successful samples, and samples per second (wall time of the attack call, after a tiny warm-up).
Two extra icurt rows show the speed/quality trade-off: `icurt+stop` has the same budget with early
stop (`[attack_method].early_stop_patience` = K/10, EAD's abort_early window, per sample), `icurt@K/4`
a quarter of the budget.

    python bench/attack.py [--device cpu|cuda] [--samples N] [--iterations K] [--batch-size B]
                           [--early-stop FRACTION]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from icurt.attack.attacker import AttackHparams
from icurt.attack.samples import attack_samples
from icurt.config import AttackMethod
from icurt.model.hparams import ModelHparams
from icurt.model.lstm import LSTMClassifier
from icurt.planted import planted_dataset

T, F = 48, 19


def train_model(x, y, hidden: int, epochs: int, device: str) -> LSTMClassifier:
    torch.manual_seed(0)
    model = LSTMClassifier(F, ModelHparams(lstm_hidden=hidden, fc_size=16)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    for _ in range(epochs):
        for idx in torch.randperm(len(yt), device=device).split(128):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            optimizer.step()
    return model.eval()


class RNNTrainMode(nn.Module):
    """The model with its LSTM kept in train mode (dropout 0), so cuDNN's backward runs for the peers."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.model.modules():
            if isinstance(module, nn.RNNBase):
                module.dropout = 0.0
                module.train()
        return self

    def forward(self, x):
        return self.model(x)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def summarise(model, x, y, p, success, seconds: float, device: str) -> dict:
    if success is None:
        with torch.no_grad():
            success = model(torch.from_numpy(x + p).to(device)).argmax(1).cpu().numpy() != y
    ok = np.asarray(success, bool)
    nonzero = (p[ok] != 0).sum(axis=(1, 2))
    return {"success": ok.mean(), "nonzero": nonzero.mean() if ok.any() else float("nan"),
            "l1": np.abs(p[ok]).sum(axis=(1, 2)).mean() if ok.any() else float("nan"),
            "rate": len(y) / seconds, "seconds": seconds}


def run_icurt(model, x, y, args, iterations: int | None = None, early_stop: float = 0.0) -> dict:
    iterations = iterations or args.iterations
    hp = AttackHparams(kappa=0.0, lambda_1=args.lambda_1, learning_rate=args.lr, optimizer="adam",
                       batch_size=args.batch_size)
    method = AttackMethod(max_perts=0, lambda_decay=args.lambda_decay,
                          lambda_decay_every=max(1, iterations // 10),  # ~10 adjustments, as EAD's ~9 steps
                          early_stop_patience=round(early_stop * iterations), attack_misclassified=False,
                          threshold="preconditioned", loss_norm="elementwise", loss_reduction="sum",
                          optimizer_state="per_batch")
    sync(args.device)
    start = time.perf_counter()
    res = attack_samples(model, x, y, hp, method, iterations, device=args.device)
    sync(args.device)
    return summarise(model, x, y, res.best_p, res.success, time.perf_counter() - start, args.device)


def eadl1(model, x, y, *, steps: int, max_iterations: int, beta: float, initial_const: float, batch_size: int,
          device: str) -> tuple[np.ndarray, float]:
    """torchattacks' EADL1 (kappa 0, lr 0.01) on x in batches: (perturbations like x, wall seconds)."""
    import torchattacks

    attack = torchattacks.EADL1(RNNTrainMode(model), kappa=0, lr=0.01, binary_search_steps=steps,
                                max_iterations=max_iterations, initial_const=initial_const, beta=beta)
    attack.set_model_training_mode(model_training=True, batchnorm_training=False, dropout_training=False)
    xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    sync(device)
    start = time.perf_counter()
    adv = torch.cat([attack(xs[i:i + batch_size], ys[i:i + batch_size]) for i in range(0, len(ys), batch_size)])
    sync(device)
    return (adv - xs).detach().cpu().numpy(), time.perf_counter() - start


def run_torchattacks(model, x, y, args) -> dict:
    p, seconds = eadl1(model, x, y, steps=args.search_steps, max_iterations=args.iterations // args.search_steps,
                       beta=args.peer_beta, initial_const=args.initial_const, batch_size=args.batch_size,
                       device=args.device)
    return summarise(model, x, y, p, None, seconds, args.device)


def run_art(model, x, y, args) -> dict:
    from art.attacks.evasion import ElasticNet
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(RNNTrainMode(model), loss=nn.CrossEntropyLoss(), input_shape=(T, F),
                                   nb_classes=2, clip_values=(0.0, 1.0),
                                   device_type="gpu" if args.device.startswith("cuda") else "cpu")
    steps = args.search_steps
    attack = ElasticNet(classifier, confidence=0.0, learning_rate=0.01, binary_search_steps=steps,
                        max_iter=args.iterations // steps, beta=args.peer_beta,
                        initial_const=args.initial_const, batch_size=args.batch_size, verbose=False)
    start = time.perf_counter()
    adv = attack.generate(x, y=np.eye(2, dtype=np.float32)[y])
    sync(args.device)
    seconds = time.perf_counter() - start
    return summarise(model, x, y, (adv - x).astype(np.float32), None, seconds, args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--samples", type=int, default=128, help="correctly classified samples attacked")
    parser.add_argument("--iterations", type=int, default=100, help="iteration budget per sample")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=64, help="LSTM hidden size")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--lambda-1", type=float, default=0.05, help="icurt's L1 weight")
    parser.add_argument("--lr", type=float, default=0.1, help="icurt's learning rate (Adam)")
    parser.add_argument("--lambda-decay", type=float, default=0.5,
                        help="icurt's per-sample L1 weight search factor (1: fixed lambda_1)")
    parser.add_argument("--early-stop", type=float, default=0.1,
                        help="an extra icurt row with early stop, patience = this fraction of the budget (0: no such row)")
    parser.add_argument("--search-steps", type=int, default=5, help="the peers' binary search steps")
    parser.add_argument("--initial-const", type=float, default=1.0, help="the peers' initial c")
    parser.add_argument("--peer-beta", type=float, default=1e-3, help="the peers' L1 weight (their default 1e-3)")
    parser.add_argument("--short-budget", type=int, default=None,
                        help="also run icurt with this many iterations (default K/4; 0: not)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--skip", nargs="*", default=[], choices=("torchattacks", "art"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    planted = planted_dataset(args.train_samples + 4 * args.samples, death_rate=0.3).dataset
    x, y = planted.features, planted.labels
    started = time.perf_counter()
    model = train_model(x[:args.train_samples], y[:args.train_samples], args.hidden, args.train_epochs, args.device)
    x_test, y_test = x[args.train_samples:], y[args.train_samples:]
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test).to(args.device)).argmax(1).cpu().numpy()
    correct = np.flatnonzero(pred == y_test)[:args.samples]
    x_att, y_att = x_test[correct], y_test[correct]
    print(f"model: BiLSTM-{args.hidden} + FC-16, trained in {time.perf_counter() - started:.0f} s, held-out "
          f"accuracy {(pred == y_test).mean():.3f}; attacking {len(y_att)} correctly classified samples "
          f"({y_att.mean():.0%} label 1), {args.iterations} iterations, batch {args.batch_size}, {args.device}")

    runners = {"icurt": run_icurt, "torchattacks": run_torchattacks, "art": run_art}
    if args.early_stop:  # settled samples leave the batch: same budget, fewer model evaluations
        runners["icurt+stop"] = lambda *a: run_icurt(*a, early_stop=args.early_stop)
    if args.short_budget is None:
        args.short_budget = args.iterations // 4
    if args.short_budget:  # the speed/quality trade-off: icurt on a fraction of the same budget
        runners[f"icurt@{args.short_budget}"] = lambda *a: run_icurt(*a, iterations=args.short_budget)
    results = {}
    for name, fn in runners.items():
        if name in args.skip:
            continue
        warm = copy.copy(args)  # one tiny call first, so one-off set-up costs are not timed
        warm.iterations = 10 * args.search_steps  # EADL1 needs max_iterations >= 10
        fn(model, x_att[:4], y_att[:4], warm)
        results[name] = fn(model, x_att, y_att, args)
        r = results[name]
        print(f"  {name:<13} success {r['success']:6.1%}  non-zero {r['nonzero']:8.1f}  L1 {r['l1']:8.3f}  "
              f"{r['rate']:8.1f} samples/s  ({r['seconds']:.1f} s)", flush=True)
    for ours_name in [n for n in results if n.startswith("icurt")]:
        ours = results[ours_name]
        for name, peer in results.items():
            if name.startswith("icurt"):
                continue
            print(f"{ours_name} vs {name}: success {ours['success'] - peer['success']:+.1%} points, non-zero × "
                  f"{ours['nonzero'] / peer['nonzero']:.3f}, L1 × {ours['l1'] / peer['l1']:.3f}, "
                  f"speed × {ours['rate'] / peer['rate']:.2f}")


if __name__ == "__main__":
    main()
