"""Stage `icurt fragility`: how little it takes to flip the model — the attack of an attack run
again under L0 and clinical-unit L∞ budgets (icurt/attack/budget.py, sweep.py), sharded as Ray
tasks per (curve, batch) (icurt/attack/sweep_runner.py), resumable with `--resume`. Batches have
the attack's throughput size (icurt/attack/batching.py) and each task takes [fragility].cpus_per_task
CPUs and, where the cluster has GPUs, a gpus_per_task share of one, so several sweep one GPU at once.

Reads the attack run (its attacked samples, their unbudgeted best examples for warm starts, the
attack and method it ran), the model of its fold and the dataset (the measured mask and the
scaling statistics that turn the clinical steps into scaled units). Writes sweep.parquet,
examples.npz and fragility.json (icurt/attack/fragility_run.py).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import replace

import numpy as np
import pandas as pd

from icurt.config import Config
from icurt.errors import IcurtError
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")
STAGE = "fragility"


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, resume: str | None = None) -> Run:
    """Sweep the budgets over an attack run's attacked samples (the newest attack run by default)."""
    from icurt.analysis.fragility import headline, success_curves
    from icurt.attack import fragility_run as files
    from icurt.attack.attacker import AttackHparams
    from icurt.attack.batches import cut_batches, select_deaths_first
    from icurt.attack.batching import batch_choice, resumed_batch_choice
    from icurt.attack.budget import scaled_steps
    from icurt.attack.results import BatchStore, dense_results, read_attack_run
    from icurt.attack.sweep import sweep_curves
    from icurt.attack.sweep_runner import SweepTask, run_sweep
    from icurt.baselines.compare import read_baselines
    from icurt.baselines.fragility import baseline_sweep
    from icurt.config import section_from_dict
    from icurt.dataset import load_dataset
    from icurt.model.checkpoint import load_fold
    from icurt.placement import cluster_capacity, place
    from icurt.ray_runtime import init_ray
    from icurt.resume import input_run as resolve_input, settings_at_start

    attack_run = resolve_input(store, STAGE, input_run, resume)
    if resume:
        cfg = settings_at_start(store, STAGE, resume, cfg)
    fc = cfg.fragility
    attack = read_attack_run(attack_run.path)
    if not attack.config or "method" not in attack.config:
        raise IcurtError(f"attack run {attack_run.run_id} records no attack method; rerun `icurt attack`")
    if fc.headline_k not in fc.l0_budgets:
        raise IcurtError(f"fragility.headline_k is {fc.headline_k} but fragility.l0_budgets is {fc.l0_budgets}; "
                         "pick one of them")
    hp = AttackHparams.from_dict(attack.config)
    method = section_from_dict("attack_method", attack.config["method"])
    if method.optimizer_state != "carried":   # carried optimizer state needs every sample to run the whole budget
        method = replace(method, early_stop_patience=fc.early_stop_patience or method.early_stop_patience)
    checkpoint = load_fold(store.ancestor(attack_run, "train"), int(attack.config["fold"]))
    dataset = load_dataset(store.ancestor(attack_run, "preprocess").path)
    if "measured" in fc.cells and dataset.measured is None:
        raise IcurtError("the preprocess run has no measured mask (an older icurt wrote it); rerun "
                         "`icurt preprocess`, or set fragility.cells = [\"all\"]")
    steps = scaled_steps(fc.clinical_step, dataset.normalisation, dataset.feature_names)

    table = attack.table[attack.table["attacked"].astype(bool)].sort_values("sample_index")
    chosen = table.iloc[select_deaths_first(table["label"].to_numpy(), fc.max_num_samples, fc.seed)]
    samples = chosen["sample_index"].to_numpy(np.int64)
    warm = dense_results(attack).best_p[np.searchsorted(attack.table["sample_index"].to_numpy(), samples)] \
        if fc.warm_start else None
    curves = sweep_curves(fc)
    offsets, start = {}, 0
    for curve in curves:
        offsets[curve[0].curve, curve[0].cells] = start
        start += len(curve)
    cells = [cell for curve in curves for cell in curve]
    ray = init_ray(cfg)
    placement = place(cfg.ray.device, cluster_capacity(ray), "fragility", fc.cpus_per_task, fc.gpus_per_task,
                      unit="task")
    batch_size, batch_reason = batch_choice(method, hp.batch_size, cfg.attack.batch_size, placement.device)
    if resume:
        batch_size, batch_reason = resumed_batch_choice((batch_size, batch_reason), BatchStore.recorded_plan(
            store.interrupted_folder(STAGE, resume) / files.TASKS_FOLDER))
    hp = replace(hp, batch_size=batch_size)
    batches = cut_batches(np.arange(len(samples)), batch_size)
    tasks = [SweepTask(files.task_name(curve[0].curve, curve[0].cells, b), curve, batch)
             for curve in curves for b, batch in enumerate(batches)]
    plan = {"attack_run": attack_run.run_id, "samples": samples.tolist(), "cells": [c.budget.label for c in cells],
            "iterations": fc.iterations, "warm_start": fc.warm_start, "batch_size": batch_size,
            "scaled_step": steps.tolist(), "method": dataclasses.asdict(method)}
    with store.create(STAGE, cfg, inputs=[attack_run], resume_id=resume) as writer:
        task_store = files.task_store(writer.path, plan)
        done = task_store.done()
        todo = [task for task in tasks if task.name not in done]
        log.info("fragility: %d samples × %d budgets, %d tasks of up to %d samples (%s batch; %d already "
                 "done) on %s, %d iterations each", len(samples), len(cells), len(tasks), batch_size, batch_reason,
                 len(tasks) - len(todo), placement.device.upper(), fc.iterations)
        if todo:
            run_sweep(ray, placement, cfg.attack.max_batch_retries, todo,
                      lambda task, arrays: task_store.write(task.name, pd.DataFrame(), arrays),
                      checkpoint, dataset.features[samples], dataset.labels[samples],
                      None if dataset.measured is None else dataset.measured[samples], warm, hp, method, steps,
                      fc.iterations)
        sweep, examples = files.assemble(task_store, tasks, offsets, samples, attack.table, steps)
        curves_table = success_curves(sweep)
        summary = {
            "attack_run": attack_run.run_id, "samples": int(len(samples)), "iterations": fc.iterations,
            "warm_start": fc.warm_start, "method": attack.config["method"] | {"early_stop_patience":
                                                                              method.early_stop_patience},
            "batch_size": batch_size, "batch_size_reason": batch_reason,
            "unverified": int(sweep["unverified"].sum()),
            "cells": [{"curve": c.curve, "cells": c.cells, "budget": c.value, "label": c.budget.label}
                      for c in cells],
            "clinical_step": dict(fc.clinical_step),
            "scaled_step": {n: float(s) for n, s in zip(dataset.feature_names, steps)},
            "headline": {d: headline(curves_table, fc.headline_k, d,
                                     attacked=int((table["label"] == (1 if d == "1to0" else 0)).sum()))
                         for d in ("1to0", "0to1")}}
        summary["baseline"] = baseline_sweep(
            read_baselines(store.ancestor(attack_run, "train").path), int(attack.config["fold"]),
            dataset.features[samples], dataset.labels[samples], samples,
            None if dataset.measured is None else dataset.measured[samples], sweep, curves, hp, method, steps,
            fc.iterations, fc.headline_k)
        if summary["baseline"]:
            log.info("fragility beside the %s: %s", summary["baseline"]["model"],
                     summary["baseline"]["headline"]["1to0"])
        files.write_fragility_run(writer.path, sweep, examples, summary)
        task_store.remove()
        if summary["unverified"]:
            log.warning("fragility: %d claimed flips (sample × budget) failed their re-verification and count "
                        "as none", summary["unverified"])
        log.info("fragility: %s", summary["headline"]["1to0"]["sentence"])
    return writer.run


def show(run: Run, cfg: Config) -> str:
    from icurt.analysis.fragility import success_curves
    from icurt.attack.fragility_run import read_fragility_run

    fragility = read_fragility_run(run.path)
    curves = success_curves(fragility.sweep)
    lines = [f"fragility run {run.run_id}: {fragility.summary['samples']} samples",
             *(f"  {h['sentence']}" for h in fragility.summary["headline"].values()), "",
             f"{'curve':<6}{'cells':<10}{'budget':>8}{'direction':>11}{'flipped':>10}{'rate':>9}  95 % CI"]
    for r in curves.itertuples():
        rate = "–" if np.isnan(r.success_rate) else f"{100 * r.success_rate:.1f}%"
        ci = "–" if np.isnan(r.ci_low) else f"{100 * r.ci_low:.1f}–{100 * r.ci_high:.1f}%"
        lines.append(f"{r.curve:<6}{r.cells:<10}{r.budget:>8g}{r.direction:>11}{f'{r.successes}/{r.samples}':>10}"
                     f"{rate:>9}  {ci}")
    return "\n".join(lines)
