"""Tuning benchmark: icurt's Ray Tune + OptunaSearch + ASHA with parallel trials vs a sequential
Optuna study with a median pruner, on the same data, search space, trial budget and trial code.

    python bench/tuning.py [--trials 16] [--parallel 2] [--samples 3000] [--folds 3] [--cv-epochs 6]
                           [--grace 2] [--sequential-threads 2]

(a) icurt.study_runner.run_study: Ray Tune, TPE (OptunaSearch, study in PostgreSQL), ASHA on the cv
    epoch, `--parallel` trials at once with 1 CPU each (Ray started with --parallel CPUs).
(b) optuna.create_study(TPE, MedianPruner) in this process, one trial after another with
    trial.report / should_prune after every cv epoch, torch using --sequential-threads threads.
Both studies live in the same throwaway embedded PostgreSQL, and both run the same
cross_validation_rounds (one Trainer per stratified fold). Reported: each one's wall time, best
mean validation loss and when it was found, the cv epochs it trained, then the wall time (a) needs
to first complete a trial at or below (b)'s best loss, as a ratio of (b)'s time to its best and of
(b)'s whole run; and, as a target both always reach, the time each needs to reach the worse of
the two best losses. Ray start-up is timed apart and excluded from (a).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from icurt.config import load_config, with_overrides  # noqa: E402
from icurt.planted import planted_dataset  # noqa: E402


def bench_config(args, data_root: str):
    return with_overrides(load_config(env={}), [
        f"paths.data={data_root}", "db.dsn=", "db.optuna_dsn=", "ray.device=cpu",
        f"tune_model.num_trials={args.trials}", f"tune_model.num_folds={args.folds}",
        f"tune_model.cv_epochs={args.cv_epochs}", "tune_model.epochs_per_cv_epoch=1",
        "tune_model.batch_size_exponents=[5, 7]", "tune_model.lstm_hidden_exponents=[4, 5]",
        "tune_model.fc_size_exponents=[3, 5]", f"tune_model.optuna_startup_trials={args.startup}",
        f"tune_model.asha_grace_period={args.grace}", "tune_model.asha_reduction_factor=2",
        f"tune_model.max_concurrent_trials={args.parallel}", "tune_model.cpus_per_trial=1.0",
        f"tune_model.seed={args.seed}", "tune_model.split=stay"])   # planted data has no patients


def sequential_study(cfg, features, labels, storage_url: str, threads: int):
    """(b): TPE + MedianPruner, ask/tell one trial at a time in this process; returns the study and t0."""
    import optuna
    import torch

    from icurt.model.folds import make_folds
    from icurt.model.hparams import ModelHparams
    from icurt.stages.tune_model import cross_validation, search_space
    from icurt.tuning.space import decode_params

    torch.set_num_threads(threads)
    tm, space = cfg.tune_model, search_space(cfg.tune_model)
    study = optuna.create_study(
        storage=storage_url, study_name=f"bench-sequential-{time.time_ns()}", direction="minimize",
        sampler=optuna.samplers.TPESampler(n_startup_trials=tm.optuna_startup_trials, seed=tm.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=tm.optuna_startup_trials,
                                           n_warmup_steps=tm.asha_grace_period - 1))
    folds = make_folds(labels, None, tm.num_folds, tm.fold_seed, tm.split)
    started = datetime.now()
    for _ in range(tm.num_trials):
        trial = study.ask(space)
        hp = ModelHparams.from_dict(decode_params(trial.params))
        for cv_epoch, metrics in enumerate(cross_validation(hp, features, labels, folds, tm, cfg.model), start=1):
            if metrics["diverged"]:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                break
            trial.report(metrics["val_loss"], cv_epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, metrics["val_loss"])
    return study, started


def ray_study(cfg, features, labels, storage_url: str, results_dir: Path):
    """(a): icurt's Ray Tune + OptunaSearch + ASHA; returns the study and t0."""
    from ray import tune

    from icurt.dataset import Dataset
    from icurt.placement import Placement
    from icurt.stages.tune_model import tuning_task
    from icurt.tuning.stage import study_plan
    from icurt.tuning.study import run_study

    dataset = Dataset(features, labels, np.arange(len(labels)), [f"f{j}" for j in range(features.shape[2])], {})
    task = tuning_task(cfg, None, dataset, Placement({"CPU": 1.0}))
    plan = study_plan(task, f"bench-{time.time_ns()}")
    trainable = tune.with_parameters(task.trainable, **task.data)
    started = datetime.now()
    study = run_study(plan, trainable, task.space, storage_url, results_dir, "bench")
    return study, started


def complete_trials(trials: list) -> list:
    return sorted((t for t in trials if t.value is not None and t.state.name == "COMPLETE"),
                  key=lambda t: t.datetime_complete)


def seconds_to_reach(trials: list, started: datetime, target: float) -> float | None:
    """Seconds from `started` until a trial completed with a loss at or below `target`."""
    reached = next((t for t in complete_trials(trials) if t.value <= target), None)
    return (reached.datetime_complete - started).total_seconds() if reached else None


def summary(trials: list, started: datetime) -> dict:
    end = max(t.datetime_complete for t in trials if t.datetime_complete)
    best = min(t.value for t in complete_trials(trials))
    return {"wall_s": (end - started).total_seconds(), "best": best,
            "to_best_s": seconds_to_reach(trials, started, best),
            "cv_epochs": sum(max(t.intermediate_values, default=0) for t in trials),
            "complete": len(complete_trials(trials)), "pruned": sum(t.state.name == "PRUNED" for t in trials)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=2, help="Ray trials at once (Ray gets this many CPUs)")
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--cv-epochs", type=int, default=6)
    parser.add_argument("--grace", type=int, default=2, help="ASHA grace period (median pruner warm-up + 1)")
    parser.add_argument("--startup", type=int, default=4, help="TPE start-up trials (and median-pruner start-up)")
    parser.add_argument("--sequential-threads", type=int, default=2, help="torch threads of study (b)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ray

    from icurt.db.connection import optuna_storage_url
    from icurt.db.server import embedded_server

    planted = planted_dataset(args.samples, seed=args.seed, death_rate=0.2).dataset
    features, labels = planted.features, planted.labels
    with tempfile.TemporaryDirectory(prefix="icurt-bench-tuning-") as root:
        cfg = bench_config(args, root)
        storage_url = optuna_storage_url(cfg)  # starts the throwaway embedded server
        try:
            print(f"{args.samples} samples × 48 × 19 ({labels.mean():.0%} died), {args.folds} folds, "
                  f"{args.cv_epochs} cv epochs, {args.trials} trials", flush=True)
            seq_study, seq_start = sequential_study(cfg, features, labels, storage_url, args.sequential_threads)
            seq = seq_study.trials
            t0 = time.perf_counter()
            ray.init(address="local", num_cpus=args.parallel, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            ray_start_s = time.perf_counter() - t0
            par_study, par_start = ray_study(cfg, features, labels, storage_url, Path(root) / "ray_results")
            par = par_study.trials
        finally:
            ray.shutdown()
            embedded_server(root, cfg.db.embedded_port).stop()
    a, b = summary(par, par_start), summary(seq, seq_start)
    print(f"{'':38} {'wall s':>7} {'best loss':>10} {'to best s':>10} {'cv epochs':>10} {'complete':>9} "
          f"{'pruned':>7}")
    for name, row in ((f"(a) Ray Tune+ASHA, {args.parallel} parallel", a),
                      (f"(b) sequential Optuna+median, {args.sequential_threads} threads", b)):
        print(f"{name:38} {row['wall_s']:7.1f} {row['best']:10.4f} {row['to_best_s']:10.1f} "
              f"{row['cv_epochs']:10d} {row['complete']:9d} {row['pruned']:7d}")
    print(f"Ray start-up (excluded from (a)): {ray_start_s:.1f} s")
    to_b_best = seconds_to_reach(par, par_start, b["best"])
    if to_b_best is None:
        print(f"(a) never reached (b)'s best loss {b['best']:.4f}")
    else:
        print(f"(a) reached (b)'s best loss {b['best']:.4f} after {to_b_best:.1f} s: ratio to (b)'s time to "
              f"its best = {to_b_best / b['to_best_s']:.2f}, to (b)'s whole run = {to_b_best / b['wall_s']:.2f} "
              "(target <= 0.33)")
    common = max(a["best"], b["best"])
    ta, tb = seconds_to_reach(par, par_start, common), seconds_to_reach(seq, seq_start, common)
    print(f"time to reach {common:.4f} (the worse best): (a) {ta:.1f} s, (b) {tb:.1f} s, ratio a/b = {ta / tb:.2f}; "
          f"whole-run wall ratio a/b = {a['wall_s'] / b['wall_s']:.2f}")


if __name__ == "__main__":
    main()
