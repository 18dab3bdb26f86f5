"""Three sparse attacks side by side on one trained model and one sample set: the reference study's
attack (every [attack_method] setting of configs/reference.toml: fixed lambda_1, soft-threshold by
exactly lambda_1, margin + lambda_1 · max_j Σ_t |P_tj| back-propagated, batch mean, one optimizer
carried from batch to batch), icurt's attack (configs/default.toml's [attack_method]) and
torchattacks' EADL1.

One BiLSTM is trained on icurt.planted's cohort (48 h × 19 features in [0, 1]); every attack gets
the same correctly classified held-out samples, batch size and iteration budget K (EADL1:
binary_search_steps × max_iterations = K). The reference and icurt pick lambda_1 and the learning
rate (Adam, kappa 0) from a small grid on a separate tuning set by the reference's tuning objective
sparse_small (summed over successful samples, as `icurt tune-attack` scores a trial); EADL1 picks
its L1 weight beta the same way (initial c 1, lr 0.01, its defaults).

Reported over the attacked samples, with each sample's best example: success rate, mean non-zero
elements, mean L1, median max |P| (successful samples), samples per second (wall time of the
attack call). Time to quality: the time a method needs to reach the reference's success rate with
no more mean non-zeros than the reference — the reference's whole run (its chained batches report
only at their end), icurt's first block report (every K/20 iterations) that reaches it (time spent
in the reports left out), EADL1's fastest run among budgets K/4, K/2, K, 2K that reaches it.

    python bench/methods.py [--samples N] [--iterations K] [--batch-size B] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np
import torch

from attack import eadl1, sync, train_model  # bench/attack.py, beside this file
from icurt.attack.attacker import AttackHparams
from icurt.attack.objectives import per_sample_scores
from icurt.attack.samples import attack_samples
from icurt.config import load_config, named_config_path
from icurt.planted import planted_dataset

GRIDS = {"reference": {"lambda_1": (1e-3, 1e-2, 3e-2), "learning_rate": (0.03, 0.1)},
         "icurt": {"lambda_1": (0.01, 0.05, 0.2), "learning_rate": (0.03, 0.1)},
         "torchattacks EADL1": {"beta": (1e-3, 1e-2, 1e-1)}}


def quality(model, x, y, p, success, device: str) -> dict:
    """success rate, mean non-zeros, mean L1, median max |P| and sparse_small of perturbations p."""
    if success is None:
        with torch.no_grad():
            success = model(torch.from_numpy(x + p).to(device)).argmax(1).cpu().numpy() != y
    ok = np.asarray(success, bool)
    flat = np.abs(p[ok]).reshape(int(ok.sum()), int(np.prod(p.shape[1:])))
    return {"success": ok.mean(), "nonzero": (flat > 0).sum(1).mean() if ok.any() else np.nan,
            "l1": flat.sum(1).mean() if ok.any() else np.nan,
            "maxabs": float(np.median(flat.max(1))) if ok.any() else np.nan,
            "score": float(per_sample_scores("sparse_small", p[ok], 10).sum())}


def run_sparse(model, x, y, method, hp, iterations, device, report_every=None):
    """(quality, seconds, [(seconds so far, quality)] at each block report) of icurt's attack with `method`."""
    trace, spent_reporting = [], [0.0]
    start = time.perf_counter()

    def report(done, partial):
        entered = time.perf_counter()
        trace.append((entered - start - spent_reporting[0], quality(model, x, y, partial.best_p, partial.success,
                                                                    device)))
        spent_reporting[0] += time.perf_counter() - entered

    sync(device)
    res = attack_samples(model, x, y, hp, method, iterations, device=device, report_every=report_every,
                         on_report=report if report_every else None)
    sync(device)
    seconds = time.perf_counter() - start - spent_reporting[0]
    return quality(model, x, y, res.best_p, res.success, device), seconds, trace


def run_eadl1(model, x, y, beta, iterations, args):
    """EADL1 with binary_search_steps × max_iterations ≈ iterations (max_iterations ≥ 10, its minimum)."""
    steps = max(1, min(args.search_steps, iterations // 10))
    p, seconds = eadl1(model, x, y, steps=steps, max_iterations=iterations // steps, beta=beta, initial_const=1.0,
                       batch_size=args.batch_size, device=args.device)
    return quality(model, x, y, p, None, args.device), seconds


def pick(name, run_one, grid: dict) -> dict:
    """The grid point with the highest sparse_small score on the tuning set."""
    best = None
    for values in [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]:
        score = run_one(**values)["score"]
        print(f"    tuning {name}: {values} sparse_small {score:.1f}", flush=True)
        if best is None or score > best[0]:
            best = (score, values)
    return best[1]


def reaches(q: dict, target: dict) -> bool:
    return q["success"] >= target["success"] - 1e-9 and q["nonzero"] <= target["nonzero"] + 1e-9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--samples", type=int, default=128, help="correctly classified samples attacked")
    parser.add_argument("--tune-samples", type=int, default=64, help="samples of the hyperparameter grid")
    parser.add_argument("--iterations", type=int, default=100, help="iteration budget K per sample")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64, help="LSTM hidden size")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--search-steps", type=int, default=5, help="EADL1's binary search steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    K, device = args.iterations, args.device

    planted = planted_dataset(args.train_samples + 4 * (args.samples + args.tune_samples), death_rate=0.3).dataset
    x, y = planted.features, planted.labels
    model = train_model(x[:args.train_samples], y[:args.train_samples], args.hidden, args.train_epochs, device)
    x_test, y_test = x[args.train_samples:], y[args.train_samples:]
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test).to(device)).argmax(1).cpu().numpy()
    correct = np.flatnonzero(pred == y_test)
    tune, test = correct[:args.tune_samples], correct[args.tune_samples:args.tune_samples + args.samples]
    print(f"model: BiLSTM-{args.hidden} + FC-16, held-out accuracy {(pred == y_test).mean():.3f}; "
          f"{len(test)} samples attacked ({y_test[test].mean():.0%} label 1), {len(tune)} for the grid; "
          f"{K} iterations, batch {args.batch_size}, {device}")
    methods = {"reference": load_config(named_config_path("reference"), env={}).attack_method,
               "icurt": load_config(env={}).attack_method}

    def hparams(lambda_1, learning_rate):
        return AttackHparams(kappa=0.0, lambda_1=float(lambda_1), learning_rate=float(learning_rate),
                             optimizer="adam", batch_size=args.batch_size)

    rows, traces = {}, {}
    for name, method in methods.items():
        chosen = pick(name, lambda **v: run_sparse(model, x_test[tune], y_test[tune], method, hparams(**v), K,
                                                   device)[0], GRIDS[name])
        report_every = None if method.optimizer_state == "carried" else max(1, K // 20)
        q, seconds, traces[name] = run_sparse(model, x_test[test], y_test[test], method, hparams(**chosen), K, device,
                                              report_every)
        rows[name] = {**q, "seconds": seconds, "chosen": chosen}
    peer = "torchattacks EADL1"
    chosen = pick(peer, lambda beta: run_eadl1(model, x_test[tune], y_test[tune], float(beta), K, args)[0],
                  GRIDS[peer])
    budgets = {}
    for budget in (K // 4, K // 2, K, 2 * K):
        budgets[budget] = run_eadl1(model, x_test[test], y_test[test], float(chosen["beta"]), budget, args)
    rows[peer] = {**budgets[K][0], "seconds": budgets[K][1], "chosen": chosen}

    target = rows["reference"]
    ttq = {"reference": target["seconds"],
           "icurt": next((t for t, q in traces["icurt"] if reaches(q, target)),
                         rows["icurt"]["seconds"] if reaches(rows["icurt"], target) else None),
           peer: min((s for q, s in budgets.values() if reaches(q, target)), default=None)}
    print(f"\ntarget (the reference's): success {target['success']:.1%} with ≤ {target['nonzero']:.1f} non-zeros\n")
    print("| method | settings | success | mean non-zeros | mean L1 | median max abs P | samples/s | "
          "time to the reference's quality | × the reference's |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        t = ttq[name]
        ratio = "–" if t is None else f"{t / ttq['reference']:.2f}"
        settings = ", ".join(f"{k} {float(v):g}" for k, v in r["chosen"].items())
        print(f"| {name} | {settings} | {r['success']:.1%} | {r['nonzero']:.1f} | {r['l1']:.3f} | {r['maxabs']:.3f} | "
              f"{len(test) / r['seconds']:.1f} | {'not reached' if t is None else f'{t:.1f} s'} | "
              f"{ratio} |")


if __name__ == "__main__":
    main()
