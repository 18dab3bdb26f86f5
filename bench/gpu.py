"""Every GPU figure of the README in one run, each against a baseline measured in the same run.

Sections (all Ray-free: the Trainer, attack_samples and sweep_curve called directly, on
icurt.planted's cohort of 48 h × 19 scaled features):
  train      samples/s of icurt's Trainer in each precision the device runs (fp32, bf16, fp16)
             against a conventional DataLoader + WeightedRandomSampler loop (fp32; + fp16 autocast on
             CUDA), and the held-out AUROC each precision reaches in the same epochs; the data
             path alone (index gather vs DataLoader)
  batch      attack throughput (sample-iterations/s) by batch size, against the tuned batch (128);
             and the batch independence of icurt's method (same samples, two batch sizes: max |ΔP|)
  full       the full-scale attack (38,000 samples × 1,000 iterations): a share of its iterations
             run at the auto batch, the rest extrapolated; against the same at the tuned batch
  sweep      the default fragility sweep (2 × (7 + 4) budgets) at the auto batch against batch 64
             (the size of the fragility stage's old tasks), seconds per sample
  parity     the same attack on the CPU and on the device: success and mean non-zeros (CUDA only)
  verify     claimed successes that a separate forward pass does not confirm, with TF32 on (cuDNN's
             default) and off (icurt's attack), re-run in another batch on the device and on the CPU

    python bench/gpu.py [--device cuda|cpu] [--tiny] [--only train,batch,...] [--json FILE]

`--tiny` runs every section at sizes a CPU finishes in about a minute (CI runs it so); the figures
then say nothing about speed, only that the script works.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import ConventionalLoop, data_path_rates, measure  # noqa: E402

from icurt.attack.attacker import AttackHparams  # noqa: E402
from icurt.attack.batching import AUTO_BATCH_SIZE  # noqa: E402
from icurt.attack.samples import attack_samples  # noqa: E402
from icurt.attack.sweep import sweep_curve, sweep_curves  # noqa: E402
from icurt.config import load_config  # noqa: E402
from icurt.model.hparams import ModelHparams  # noqa: E402
from icurt.model.precision import PRECISIONS, check_precision  # noqa: E402
from icurt.model.trainer import Trainer, predict_logits  # noqa: E402
from icurt.planted import planted_dataset  # noqa: E402
from icurt.errors import IcurtError  # noqa: E402

SECTIONS = ("train", "batch", "full", "sweep", "parity", "verify")
TUNED_BATCH = 128          # the top of tune-attack's old batch range (2^5–2^7)
OLD_SWEEP_BATCH = 64       # the fragility stage's old task batch


@dataclasses.dataclass(frozen=True)
class Sizes:
    train_samples: int = 8000
    held_out: int = 2000
    hidden: int = 128
    rounds: int = 3               # timed epochs per training loop (median)
    accuracy_epochs: int = 6      # epochs per precision for the AUROC comparison
    attack_batches: tuple = (128, 512, 2048, 8192)
    attack_iterations: int = 100
    independence_samples: int = 192
    full_samples: int = 38000
    full_iterations: int = 1000   # the full-scale attack's budget
    full_run_iterations: int = 100  # of which this many are run (the rest extrapolated)
    sweep_samples: int = 1600
    sweep_old_samples: int = 128  # the old batch's rate is measured on this many
    sweep_iterations: int = 200
    parity_samples: int = 256
    parity_iterations: int = 200
    verify_samples: int = 4096
    verify_iterations: int = 300


TINY = Sizes(train_samples=1000, held_out=200, hidden=16, rounds=1, accuracy_epochs=5, attack_batches=(8, 32, 128),
             attack_iterations=10, independence_samples=24, full_samples=256, full_iterations=100,
             full_run_iterations=5, sweep_samples=32, sweep_old_samples=16, sweep_iterations=10,
             parity_samples=16, parity_iterations=10, verify_samples=64, verify_iterations=20)

ATTACK_HP = AttackHparams(kappa=0.0, lambda_1=0.05, learning_rate=0.1, optimizer="adam", batch_size=TUNED_BATCH)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str):
    sync(device)
    started = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - started


@contextlib.contextmanager
def tf32(enabled: bool):
    """cuDNN's and cuBLAS's TF32 switches set to `enabled` for the block (restored after)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@contextlib.contextmanager
def unguarded(tf32_enabled: bool):
    """icurt's attack without its two safeguards, to measure what they prevent: TF32 as given
    (instead of exact_fp32) and every claimed success recorded as claimed (no verify_successes)."""
    import icurt.attack.samples as samples

    saved = samples.exact_fp32, samples.verify_successes
    samples.exact_fp32 = lambda: tf32(tf32_enabled)
    samples.verify_successes = lambda model, x, results, device="cpu": results
    try:
        yield
    finally:
        samples.exact_fp32, samples.verify_successes = saved


class Bench:
    def __init__(self, device: str, sizes: Sizes):
        self.device, self.sizes, self.figures = device, sizes, {}
        self.method = load_config(env={}).attack_method   # icurt's method (sum, per-batch optimizer)
        self.method = dataclasses.replace(self.method, early_stop_patience=0)   # every sample runs every iteration
        self.hp = ModelHparams(lstm_hidden=sizes.hidden, fc_size=16, optimizer="adam", learning_rate=1e-3,
                               batch_size=128)
        planted = planted_dataset(sizes.train_samples + sizes.held_out, death_rate=0.1, seed=0).dataset
        self.x, self.y = planted.features, planted.labels
        self.fit = slice(0, sizes.train_samples)
        self.held = slice(sizes.train_samples, None)
        self._model = None

    def out(self, line: str) -> None:
        print(line, flush=True)

    # ---- train -------------------------------------------------------------------------------------------
    def precisions(self) -> list[str]:
        usable = []
        for precision in PRECISIONS:
            try:
                check_precision(precision, self.device)
                usable.append(precision)
            except IcurtError:
                pass
        return usable

    def train(self) -> None:
        s, x, y = self.sizes, self.x[self.fit], self.y[self.fit]
        loops = {f"Trainer {p}": _TrainerLoop(self.hp, x, y, self.device, p) for p in self.precisions()}
        loops["DataLoader fp32 (baseline)"] = ConventionalLoop(self.hp, x, y, self.device)
        if self.device.startswith("cuda"):
            loops["DataLoader fp16 autocast"] = ConventionalLoop(self.hp, x, y, self.device, amp=True)
        rows = measure(loops, len(y), self.device, s.rounds)
        base = rows["DataLoader fp32 (baseline)"][0]
        fp32 = rows.get("Trainer fp32", (base,))[0]
        self.out(f"{'training loop':<30}{'train samples/s':>16}{'× baseline':>12}{'× Trainer fp32':>16}")
        for name, (rate, _) in rows.items():
            self.out(f"{name:<30}{rate:>16,.0f}{rate / base:>11.2f}×{rate / fp32:>15.2f}×")
        gather, load = data_path_rates(self.hp, x, y, self.device, s.rounds)
        self.out(f"data path alone: index gather {gather:,.0f} samples/s, DataLoader {load:,.0f} ({gather / load:.1f}×)")
        aurocs = {}
        for precision in self.precisions():
            trainer = Trainer(self.hp, x, y, self.x[self.held], self.y[self.held], device=self.device, seed=0,
                              precision=precision)
            for _ in range(s.accuracy_epochs):
                trainer.train_epoch()
            aurocs[precision] = trainer.evaluate()["auroc"]
            if precision == "fp32":
                self._model = trainer.model.eval()
        self.out(f"held-out AUROC after {s.accuracy_epochs} epochs: "
                 + ", ".join(f"{p} {a:.4f}" for p, a in aurocs.items()))
        self.figures["train"] = {"samples_per_s": {k: v[0] for k, v in rows.items()}, "baseline": base,
                                 "data_path": {"gather": gather, "dataloader": load}, "auroc": aurocs}

    # ---- the attacked model and samples ------------------------------------------------------------------
    def model(self):
        if self._model is None:
            trainer = Trainer(self.hp, self.x[self.fit], self.y[self.fit], self.x[self.held], self.y[self.held],
                              device=self.device, seed=0)
            for _ in range(self.sizes.accuracy_epochs):
                trainer.train_epoch()
            self._model = trainer.model.eval()
        return self._model

    def samples(self, n: int, seed: int = 1):
        """n samples (x, y) from a fresh planted cohort (never trained on), labels as drawn."""
        made = planted_dataset(n, death_rate=0.1, seed=seed).dataset
        return made.features, made.labels

    def attack(self, x, y, batch_size: int, iterations: int, device: str | None = None, **kwargs):
        hp = dataclasses.replace(ATTACK_HP, batch_size=batch_size)
        model = self.model() if device in (None, self.device) else _copy_to(self.model(), device)
        return attack_samples(model, x, y, hp, self.method, iterations, device=device or self.device, **kwargs)

    # ---- batch ---------------------------------------------------------------------------------------------
    def batch(self) -> None:
        s = self.sizes
        self.attack(*self.samples(min(s.attack_batches), seed=9), min(s.attack_batches), 2)   # warm-up
        rates = {}
        for size in s.attack_batches:
            x, y = self.samples(size, seed=2)
            results, seconds = timed(lambda: self.attack(x, y, size, s.attack_iterations), self.device)
            rates[size] = int(results.attacked.sum()) * s.attack_iterations / seconds
        base = rates.get(TUNED_BATCH, rates[min(rates)])
        self.out(f"{'attack batch':>12}{'sample-iterations/s':>22}{'× batch ' + str(TUNED_BATCH if TUNED_BATCH in rates else min(rates)):>14}")
        for size, rate in rates.items():
            self.out(f"{size:>12}{rate:>22,.0f}{rate / base:>13.2f}×")
        x, y = self.samples(s.independence_samples, seed=3)
        small, large = (self.attack(x, y, b, s.attack_iterations) for b in (s.independence_samples // 6,
                                                                             s.independence_samples))
        max_dp = float(np.abs(small.best_p - large.best_p).max()) if len(x) else 0.0
        same = bool(np.array_equal(small.success, large.success))
        self.out(f"batch independence ({s.independence_samples} samples, batches of {s.independence_samples // 6} "
                 f"and {s.independence_samples}): max |ΔP| {max_dp:.3g}, same successes: {same}")
        self.figures["batch"] = {"rates": {str(k): v for k, v in rates.items()}, "baseline_batch": TUNED_BATCH,
                                 "independence_max_dp": max_dp, "independence_same_success": same}

    # ---- full ----------------------------------------------------------------------------------------------
    def full(self) -> None:
        s = self.sizes
        auto = AUTO_BATCH_SIZE["cuda" if self.device.startswith("cuda") else "cpu"]
        x, y = self.samples(s.full_samples, seed=4)
        results, seconds = timed(lambda: self.attack(x, y, auto, s.full_run_iterations), self.device)
        attacked = int(results.attacked.sum())
        rate = attacked * s.full_run_iterations / seconds
        tuned_rate = self.figures.get("batch", {}).get("rates", {}).get(str(TUNED_BATCH))
        if tuned_rate is None:   # measure the tuned batch on a share of the samples
            part = max(TUNED_BATCH * 4, 1)
            r, sec = timed(lambda: self.attack(x[:part], y[:part], TUNED_BATCH, s.full_run_iterations), self.device)
            tuned_rate = int(r.attacked.sum()) * s.full_run_iterations / sec
        whole_auto = attacked * s.full_iterations / rate
        whole_tuned = attacked * s.full_iterations / tuned_rate
        self.out(f"full-scale attack: {s.full_samples} samples ({attacked} attacked) × {s.full_iterations} iterations "
                 f"at batch {auto}: {whole_auto:.0f} s ({s.full_run_iterations} iterations run in {seconds:.1f} s, "
                 f"the rest extrapolated); at batch {TUNED_BATCH}: {whole_tuned:.0f} s; "
                 f"{whole_tuned / whole_auto:.2f}× faster")
        self.figures["full"] = {"samples": s.full_samples, "attacked": attacked, "auto_batch": auto,
                                "seconds_auto": whole_auto, "seconds_tuned": whole_tuned,
                                "run_iterations": s.full_run_iterations, "iterations": s.full_iterations}

    # ---- sweep ---------------------------------------------------------------------------------------------
    def sweep(self) -> None:
        s = self.sizes
        auto = AUTO_BATCH_SIZE["cuda" if self.device.startswith("cuda") else "cpu"]
        fc = load_config(env={}).fragility
        curves = sweep_curves(fc)
        method = dataclasses.replace(self.method, early_stop_patience=fc.early_stop_patience)
        x, y = self.samples(s.sweep_samples, seed=5)
        measured = np.random.default_rng(1).random(x.shape) < 0.3
        steps = np.full(x.shape[2], 0.1, np.float32)
        model = self.model()

        def run(rows: np.ndarray, batch: int) -> int:
            hp = dataclasses.replace(ATTACK_HP, batch_size=batch)
            flipped = 0
            for start in range(0, len(rows), batch):
                part = rows[start:start + batch]
                for curve in curves:
                    result = sweep_curve(model, x[part], y[part], hp, method, curve, steps, measured[part], None,
                                         s.sweep_iterations, device=self.device)
                    flipped += int(result.success[-1].sum())
            return flipped

        everything = np.arange(len(x))
        _, auto_seconds = timed(lambda: run(everything, auto), self.device)
        some = everything[:s.sweep_old_samples]
        _, old_seconds = timed(lambda: run(some, OLD_SWEEP_BATCH), self.device)
        per_auto, per_old = auto_seconds / len(everything), old_seconds / len(some)
        self.out(f"fragility sweep ({sum(map(len, curves))} budgets, {s.sweep_iterations} iterations, early stop "
                 f"{fc.early_stop_patience}): {len(everything)} samples at batch {auto} in {auto_seconds:.1f} s "
                 f"({1e3 * per_auto:.2f} ms/sample); batch {OLD_SWEEP_BATCH}: {1e3 * per_old:.2f} ms/sample "
                 f"({len(some)} samples); {per_old / per_auto:.2f}× faster")
        self.figures["sweep"] = {"samples": len(everything), "auto_batch": auto, "seconds": auto_seconds,
                                 "ms_per_sample_auto": 1e3 * per_auto, "ms_per_sample_old": 1e3 * per_old}

    # ---- parity --------------------------------------------------------------------------------------------
    def parity(self) -> None:
        s = self.sizes
        if not self.device.startswith("cuda"):
            self.out("parity: n/a (the device is the CPU)")
            self.figures["parity"] = None
            return
        x, y = self.samples(s.parity_samples, seed=6)
        rows = {}
        for device in (self.device, "cpu"):
            r = self.attack(x, y, s.parity_samples, s.parity_iterations, device=device)
            ok = r.success.astype(bool)
            rows[device] = {"success": float(ok.mean()), "nonzero": float((r.best_p[ok] != 0).sum((1, 2)).mean())
                            if ok.any() else float("nan"), "ok": ok}
        agree = float((rows["cpu"]["ok"] == rows[self.device]["ok"]).mean())
        self.out(f"parity ({s.parity_samples} samples × {s.parity_iterations} iterations): success CPU "
                 f"{rows['cpu']['success']:.1%} vs {self.device} {rows[self.device]['success']:.1%}, mean non-zeros "
                 f"{rows['cpu']['nonzero']:.2f} vs {rows[self.device]['nonzero']:.2f}, same outcome for {agree:.1%}")
        self.figures["parity"] = {d: {k: v for k, v in r.items() if k != "ok"} for d, r in rows.items()} | {
            "agreement": agree}

    # ---- verify --------------------------------------------------------------------------------------------
    def verify(self) -> None:
        s = self.sizes
        auto = AUTO_BATCH_SIZE["cuda" if self.device.startswith("cuda") else "cpu"]
        x, y = self.samples(s.verify_samples, seed=7)
        self.figures["verify"] = {}
        for label, enabled in (("TF32 on", True), ("TF32 off", False)):
            with unguarded(enabled):
                claimed = self.attack(x, y, auto, s.verify_iterations)
            ok = np.flatnonzero(claimed.success)
            counts = {}
            for where in (self.device, "cpu") if self.device != "cpu" else ("cpu",):
                model = self.model() if where == self.device else _copy_to(self.model(), "cpu")
                adv = torch.from_numpy(x[ok] + claimed.best_p[ok]).to(where)
                with tf32(False):
                    logits = predict_logits(model, adv, batch_size=max(1, min(len(ok), 1000)))   # another batching
                pred = logits.argmax(1).cpu().numpy()
                attacked_class = claimed.orig_logits[ok].argmax(1)
                counts[where] = int((pred == attacked_class).sum())
            self.out(f"{label}: {len(ok)} claimed successes; not confirmed by a re-run in another batch: "
                     + ", ".join(f"{n} on {w}" for w, n in counts.items()))
            self.figures["verify"][label] = {"claimed": int(len(ok)), "unconfirmed": counts}
        final = self.attack(x, y, auto, s.verify_iterations)
        self.out(f"icurt's attack (TF32 off, re-verified): {int(final.success.sum())} successes recorded, "
                 f"{int(final.unverified.sum())} claimed ones failed re-verification and count as failures")
        self.figures["verify"]["recorded"] = {"successes": int(final.success.sum()),
                                              "unverified": int(final.unverified.sum())}


class _TrainerLoop:
    def __init__(self, hp, x, y, device, precision):
        self.trainer = Trainer(hp, x, y, x, y, device=device, seed=0, precision=precision)

    def train_epoch(self):
        self.trainer.train_epoch()

    def evaluate(self):
        self.trainer.evaluate()


def _copy_to(model, device: str):
    import copy

    return copy.deepcopy(model).to(device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="CI sizes: checks the script, measures nothing")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    sizes = TINY if args.tiny else Sizes()
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"CPU ({torch.get_num_threads()} threads)"
    print(f"bench/gpu.py on {name}, torch {torch.__version__}, {'tiny' if args.tiny else 'full'} sizes, "
          f"{time.strftime('%Y-%m-%d')}", flush=True)
    bench = Bench(args.device, sizes)
    for section in sections:
        print(f"\n== {section}", flush=True)
        _, seconds = timed(getattr(bench, section), args.device)
        print(f"({section}: {seconds:.1f} s)", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "torch": torch.__version__, "tiny": args.tiny,
                                         **bench.figures}, indent=1, default=float))


if __name__ == "__main__":
    main()
