"""The fragility sweep's cost against running the attack once per budget from scratch.

One BiLSTM trained on icurt.planted's cohort (48 h × 19 features, a measured mask with ~35 % of
cells measured, one scaled unit = one clinical step × 5 for every feature), the same correctly
classified samples, the same budgets (the L0 curve k = 1 … 64 at L∞ scale 1 and the L∞ curve
s = ¼ … 2, on measured cells and on all cells: 22 budgets) and the same iteration budget per
attack. Rows:
  scratch      the attack from P = 0 on every sample under every budget, every sample running
               the whole iteration budget (what a user without the sweep would run)
  sweep        icurt's sweep: along each curve a flipped sample is not attacked again (its example
               satisfies every larger budget), each attack starts from the sample's unbudgeted
               example projected onto the budget, settled samples leave early; the unbudgeted
               examples come from the attack run, as in `icurt fragility` (their cost, one
               unbudgeted attack, is printed apart and not counted)
  sweep-warm   the sweep without warm starts (from P = 0), to show what the warm start buys
  sweep-stop   the sweep without early stop
Printed: seconds (the fastest of --repeats runs, interleaved, so a busy machine skews all rows
alike), samples attacked (sum over budgets), the rows the model was run on (forward passes × rows,
counted by a hook: the work itself, independent of the machine's load), and the mean success rate
over the budgets; then the ratios against scratch.

    python bench/fragility.py [--samples 96] [--iterations 100] [--threads 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icurt.attack.attacker import AttackHparams  # noqa: E402
from icurt.attack.budget import max_abs_of  # noqa: E402
from icurt.attack.samples import attack_samples  # noqa: E402
from icurt.attack.sweep import sweep_curve, sweep_curves  # noqa: E402
from icurt.config import AttackMethod, load_config  # noqa: E402
from icurt.model.hparams import ModelHparams  # noqa: E402
from icurt.model.lstm import LSTMClassifier  # noqa: E402
from icurt.planted import planted_dataset  # noqa: E402


def trained_model(x, y, hidden: int = 32, epochs: int = 8) -> nn.Module:
    torch.manual_seed(0)
    model = LSTMClassifier(x.shape[2], ModelHparams(lstm_hidden=hidden, fc_size=16))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for idx in torch.randperm(len(yt)).split(128):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            optimizer.step()
    return model.eval()


MODEL_ROWS = [0]   # rows the model was run on (each forward pass's batch size, summed)


def count_rows(module, inputs, output) -> None:
    """A forward hook; a plain function, so the attack's copy of the model keeps counting here."""
    MODEL_ROWS[0] += int(inputs[0].shape[0])


def run_sweep(model, x, y, hp, method, curves, steps, measured, warm, iterations):
    attacked = success = 0
    for curve in curves:
        result = sweep_curve(model, x, y, hp, method, curve, steps, measured, warm, iterations)
        attacked += int(result.attacked.sum())
        success += float(result.success.mean(axis=1).sum())
    return attacked, success


def run_scratch(model, x, y, hp, method, curves, steps, measured, iterations):
    attacked = success = 0
    for cell in [c for curve in curves for c in curve]:
        budget = cell.budget
        results = attack_samples(model, x, y, hp, dataclasses.replace(method, max_perts=budget.max_nonzero),
                                 iterations, max_abs=max_abs_of(budget, steps),
                                 allowed=measured if budget.measured_only else None)
        attacked += len(y)
        success += float(results.success.mean())
    return attacked, success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=96, help="correctly classified samples swept")
    parser.add_argument("--iterations", type=int, default=100, help="attack iterations per budget")
    parser.add_argument("--patience", type=int, default=10, help="the sweep's early-stop patience")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs of every row; the fastest counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    made = planted_dataset(1500 + 3 * args.samples, seed=0, death_rate=0.3).dataset
    x, y = made.features, made.labels
    model = trained_model(x[:1500], y[:1500])
    with torch.no_grad():
        correct = np.flatnonzero(model(torch.from_numpy(x[1500:])).argmax(1).numpy() == y[1500:])[:args.samples]
    x, y = x[1500:][correct], y[1500:][correct]
    measured = np.random.default_rng(1).random(x.shape) < 0.35
    fc = load_config(env={}).fragility
    curves = sweep_curves(fc)
    steps = np.full(x.shape[2], 0.2)   # every clinical step is 0.2 scaled units
    hp = AttackHparams(kappa=0.0, lambda_1=0.01, learning_rate=0.05, optimizer="adam", batch_size=64)
    plain = AttackMethod(max_perts=0, lambda_decay=0.5, lambda_decay_every=10, early_stop_patience=0,
                         attack_misclassified=False, threshold="preconditioned", loss_norm="elementwise",
                      loss_reduction="sum", optimizer_state="per_batch")
    stop = dataclasses.replace(plain, early_stop_patience=args.patience)
    cells = sum(len(c) for c in curves)
    print(f"{len(y)} samples ({y.mean():.0%} label 1), {cells} budgets, {args.iterations} iterations each, "
          f"{args.threads} thread(s)", flush=True)

    model.register_forward_hook(count_rows)

    def scratch():
        return run_scratch(model, x, y, hp, plain, curves, steps, measured, args.iterations)

    MODEL_ROWS[0] = 0
    started = time.perf_counter()
    unbudgeted = attack_samples(model, x, y, hp, stop, args.iterations).best_p   # what the attack run gives
    print(f"the unbudgeted attack (the attack run's, not counted below): {time.perf_counter() - started:.1f} s, "
          f"{MODEL_ROWS[0]} model rows", flush=True)

    def sweep(method, warm_start):
        def go():
            return run_sweep(model, x, y, hp, method, curves, steps, measured, unbudgeted if warm_start else None,
                             args.iterations)
        return go

    variants = {"scratch": scratch, "sweep": sweep(stop, True), "sweep-warm": sweep(stop, False),
                "sweep-stop": sweep(plain, True)}
    rows = {}
    for _ in range(args.repeats):
        for name, go in variants.items():
            MODEL_ROWS[0] = 0
            started = time.perf_counter()
            attacked, success = go()
            seconds = time.perf_counter() - started
            best = rows.get(name, (0, 0, 0, float("inf")))[3]
            rows[name] = (attacked, success, MODEL_ROWS[0], min(seconds, best))
    print(f"{'':12}{'seconds':>9}{'attacked':>10}{'model rows':>12}{'mean success':>14}")
    for name, (attacked, success, model_rows, seconds) in rows.items():
        print(f"{name:12}{seconds:9.1f}{attacked:10d}{model_rows:12d}{success / cells:14.1%}")
    base = rows["scratch"]
    for name in ("sweep", "sweep-warm", "sweep-stop"):
        attacked, success, model_rows, seconds = rows[name]
        print(f"{name} / scratch: time × {seconds / base[3]:.3f}, model rows × {model_rows / base[2]:.3f}, "
              f"samples attacked × {attacked / base[0]:.3f}, mean success {100 * (success - base[1]) / cells:+.1f} "
              "points")


if __name__ == "__main__":
    main()
