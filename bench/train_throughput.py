"""Training (and evaluation) samples per second: icurt's Trainer vs a conventional DataLoader loop.

Same LSTM, same data (default 8,000 × 48 × 19, 10 % positives), same batch size (128), same
optimizer, same class-balanced sampling. The conventional loop is what the reference code and
most tutorials write: `DataLoader(TensorDataset, sampler=WeightedRandomSampler, batch_size)`,
per-batch `.to(device)` and `loss.item()`. On CUDA a second baseline adds autocast + GradScaler
to the conventional loop, so the data-path gain and the mixed-precision gain can be told apart.

    python bench/train_throughput.py [--samples N] [--device cpu|cuda] [--rounds R] [--hidden H]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset, WeightedRandomSampler

from icurt.model.hparams import ModelHparams
from icurt.model.lstm import LSTMClassifier
from icurt.model.trainer import Trainer, make_optimizer
from icurt.planted import planted_dataset


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class IcurtLoop:
    """icurt's Trainer: tensors on the device, multinomial indices, index-sliced batches."""

    def __init__(self, hp, x, y, device):
        self.trainer = Trainer(hp, x, y, x, y, device=device, seed=0)

    def train_epoch(self):
        self.trainer.train_epoch()

    def evaluate(self):
        self.trainer.evaluate()            # includes the metrics, as every evaluation does


class ConventionalLoop:
    """DataLoader(TensorDataset, sampler=WeightedRandomSampler) with per-batch copies and .item()."""

    def __init__(self, hp, x, y, device, amp=False):
        torch.manual_seed(0)
        self.device, self.amp, self.n = device, amp, len(y)
        self.model = LSTMClassifier(x.shape[2], hp).to(device)
        self.optimizer = make_optimizer(hp, self.model.parameters(), "cpu")   # plain Adam
        self.loss_fn = nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp)
        dataset = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        weights = torch.from_numpy(1.0 / np.bincount(y)[y])
        pin = device.startswith("cuda")
        self.loader = DataLoader(dataset, batch_size=hp.batch_size, pin_memory=pin,
                                 sampler=WeightedRandomSampler(weights, num_samples=len(y), replacement=True))
        self.eval_loader = DataLoader(dataset, batch_size=hp.batch_size, pin_memory=pin)

    def train_epoch(self):
        self.model.train()
        total = 0.0
        for xb, yb in self.loader:
            xb, yb = xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)
            self.optimizer.zero_grad()
            with torch.autocast("cuda", dtype=torch.float16, enabled=self.amp):
                loss = self.loss_fn(self.model(xb), yb)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += loss.item() * len(yb)
        return total / self.n

    def evaluate(self):
        self.model.eval()
        with torch.no_grad():
            probs = [torch.softmax(self.model(xb.to(self.device)), 1)[:, 1].cpu()
                     for xb, _ in self.eval_loader]
        return torch.cat(probs)


def data_path_rates(hp, x, y, device, rounds) -> tuple[float, float]:
    """Samples/s of producing one epoch of sampled batches on the device, without the model:
    (icurt's multinomial + gather, DataLoader + WeightedRandomSampler + .to). The model-free
    ceiling of the conventional loop, which a fast GPU exposes."""
    icurt, conventional = IcurtLoop(hp, x, y, device).trainer, ConventionalLoop(hp, x, y, device)

    def gather():
        indices = icurt.sample_epoch_indices()
        for start in range(0, len(indices), hp.batch_size):
            batch = indices[start:start + hp.batch_size]
            icurt.x_train[batch], icurt.y_train[batch]

    def load():
        for xb, yb in conventional.loader:
            xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    return tuple(len(y) / float(np.median([timed(fn, device) for _ in range(rounds)])) for fn in (gather, load))


def timed(fn, device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def measure(loops: dict, n: int, device: str, rounds: int) -> dict[str, tuple[float, float]]:
    """Median (train, eval) samples/s per loop; loops alternate each round so load drifts hit all."""
    for loop in loops.values():            # warm-up: allocator, cuDNN plans, thread pools
        loop.train_epoch()
        loop.evaluate()
    times = {name: ([], []) for name in loops}
    for _ in range(rounds):
        for name, loop in loops.items():
            times[name][0].append(timed(loop.train_epoch, device))
            times[name][1].append(timed(loop.evaluate, device))
    return {name: (n / float(np.median(t)), n / float(np.median(e))) for name, (t, e) in times.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=8000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per loop (after a warm-up); "
                        "the median is reported")
    parser.add_argument("--hidden", type=int, default=128, help="LSTM hidden size (reference best: 128)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    hp = ModelHparams(lstm_hidden=args.hidden, fc_size=16, optimizer="adam", learning_rate=1e-3,
                      batch_size=args.batch_size)
    planted = planted_dataset(args.samples, death_rate=0.1).dataset
    x, y = planted.features, planted.labels
    print(f"device {args.device} ({torch.get_num_threads()} threads), {args.samples} × 48 × 19, "
          f"batch {args.batch_size}, LSTM-{args.hidden}, {args.rounds} timed epochs each (median), "
          f"torch {torch.__version__}")
    loops = {"icurt Trainer": IcurtLoop(hp, x, y, args.device),
             "DataLoader + WeightedRandomSampler": ConventionalLoop(hp, x, y, args.device)}
    if args.device == "cuda":
        loops["DataLoader + WeightedRandomSampler + AMP"] = ConventionalLoop(hp, x, y, args.device, amp=True)
    rows = measure(loops, len(y), args.device, args.rounds)
    base_train, base_eval = rows["DataLoader + WeightedRandomSampler"]
    print(f"{'loop':<42} {'train samples/s':>16} {'ratio':>7} {'eval samples/s':>15} {'ratio':>7}")
    for name, (train_rate, eval_rate) in rows.items():
        print(f"{name:<42} {train_rate:>16,.0f} {train_rate / base_train:>6.2f}× "
              f"{eval_rate:>15,.0f} {eval_rate / base_eval:>6.2f}×")
    gather, load = data_path_rates(hp, x, y, args.device, args.rounds)
    print(f"data path alone (no model): index gather {gather:,.0f} samples/s, DataLoader {load:,.0f} "
          f"samples/s ({gather / load:.1f}×)")


if __name__ == "__main__":
    main()
