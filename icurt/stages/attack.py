"""Stage 6, `icurt attack`: the tuned sparse attack on the dataset, its batches sharded over a pool
of Ray actors (icurt/attack/actors.py).

Reads the tune-attack run's record (best hyperparameters, the attack method they were tuned with
and the fold), that fold's model from the train run and the dataset of the preprocess run. The
attack runs the recorded method; when today's [attack_method] differs, one line says so. The
targets are that fold's held-out samples (the model never trained on them), or every sample with
[attack].samples = "all" (the reference); up to [attack].max_num_samples of them (chosen with
[attack].seed, in dataset order) are cut into batches of [attack].batch_size, or when it is 0 of
the throughput size of the actors' device where the method keeps samples independent and the
tuned size where it couples them (icurt/attack/batching.py; attack_config.json records the size
and why); with the method's optimizer_state "carried" (the reference's optimizer that
carries its state from batch to batch) all samples go to one actor as one unit, which attacks
their batches in order (attack_samples), so the result equals one process's and a retry redoes the
whole chain. Each finished batch (or chain) is written to the run as it lands (batches/);
`--resume RUN` continues an interrupted run with the settings and input it started with,
attacking only its missing batches (the attack is deterministic per batch, so the result equals
an uninterrupted run's). Every claimed flip is re-verified by a separate forward pass before it
is recorded (attack_samples); one that fails counts as a failure, flagged in results.parquet's
`unverified` and counted in the run's summary. Writes results.parquet, perturbations.npz,
attack_config.json and feature_names.json (icurt/attack/results.py).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

from icurt.config import Config
from icurt.errors import IcurtError
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")
STAGE = "attack"


def method_notice(recorded, today) -> str | None:
    """One line naming the [attack_method] settings that differ from the recorded method, or None."""
    changed = [f"{k} {v} (today {getattr(today, k)})" for k, v in asdict(recorded).items()
               if getattr(today, k) != v]
    if not changed:
        return None
    return ("attack: using the attack method the tune-attack run was tuned with; today's "
            f"[attack_method] differs: {', '.join(changed)}")


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore, resume: str | None = None) -> Run:
    """Attack the dataset with the tuned attack (or finish the interrupted attack run `resume`);
    returns the completed attack run."""
    from icurt.attack.actors import AttackPool, PoolSpec
    from icurt.attack.batching import batch_choice, resumed_batch_choice
    from icurt.attack.batches import BATCHES_FOLDER, BatchCollector, cut_batches, select_samples
    from icurt.attack.results import BatchStore, write_attack_run
    from icurt.attack.tuned import read_tuned
    from icurt.dataset import load_dataset
    from icurt.model.checkpoint import load_fold
    from icurt.model.train_run import candidate_rows
    from icurt.progress import progress_bar
    from icurt.placement import cluster_capacity, place, units_that_fit
    from icurt.ray_runtime import init_ray
    from icurt.resume import input_run as resolve_input, settings_at_start

    if resume:
        cfg = settings_at_start(store, STAGE, resume, cfg)
    tune_run = resolve_input(store, STAGE, input_run, resume)
    tuned = read_tuned(tune_run)
    train_run = store.ancestor(tune_run, "train")
    checkpoint = load_fold(train_run, tuned.fold)
    dataset = load_dataset(store.ancestor(tune_run, "preprocess").path)
    checkpoint.check_features(dataset.features.shape[2], f"train run {train_run.run_id}")
    candidates = candidate_rows(train_run, tuned.fold, cfg.attack.samples, len(dataset.labels))
    sample_index = candidates[select_samples(len(candidates), cfg.attack.max_num_samples, cfg.attack.seed)]
    ray = init_ray(cfg)
    capacity = cluster_capacity(ray)
    placement = place(cfg.ray.device, capacity, "attack", cfg.attack.cpus_per_actor,
                      cfg.attack.gpus_per_actor, unit="actor")
    batch_size, batch_reason = batch_choice(tuned.method, tuned.hp.batch_size, cfg.attack.batch_size,
                                            placement.device)
    if resume:
        batch_size, batch_reason = resumed_batch_choice((batch_size, batch_reason), BatchStore.recorded_plan(
            store.interrupted_folder(STAGE, resume) / BATCHES_FOLDER))
    hp = replace(tuned.hp, batch_size=batch_size)
    # carried optimizer state chains the batches: they run in order, as one unit on one actor
    unit = len(sample_index) if tuned.method.optimizer_state == "carried" else hp.batch_size
    batches = cut_batches(sample_index, max(unit, 1))
    notice = method_notice(tuned.method, cfg.attack_method)
    actors = cfg.attack.num_actors or max(1, units_that_fit(placement, capacity))
    spec = PoolSpec(num_actors=min(actors, len(batches)), placement=placement,
                    max_restarts=cfg.attack.max_batch_retries, max_batch_retries=cfg.attack.max_batch_retries)
    with store.create(STAGE, cfg, inputs=[tune_run], resume_id=resume) as writer:
        if notice:
            log.warning("%s", notice)
        log.info("attack: %d samples (of %d, %s of fold %d) in %d %s of %d (%s) on %d actor(s) (%s), "
                 "%d iterations each", len(sample_index), len(candidates), cfg.attack.samples, tuned.fold,
                 len(batches), "chain(s) of batches" if unit != hp.batch_size else "batches", hp.batch_size,
                 batch_reason, spec.num_actors, placement.device.upper(), cfg.attack.epochs_per_batch)
        attack_config = {**asdict(hp), "batch_size_reason": batch_reason, "method": asdict(tuned.method),
                         "objective": tuned.objective_name,
                         "iterations": cfg.attack.epochs_per_batch,
                         "fold": tuned.fold, "fold_choice": tuned.fold_choice, "samples": cfg.attack.samples,
                         "candidates": int(len(candidates)), "seed": cfg.attack.seed,
                         "num_samples": int(len(sample_index)),
                         "num_actors": spec.num_actors, "resources_per_actor": placement.resources,
                         "tune_attack_run": tune_run.run_id, "train_run": train_run.run_id}
        collector = BatchCollector(writer.path, dataset, batches, plan={
            k: v for k, v in attack_config.items()
            if k not in ("num_actors", "resources_per_actor", "batch_size_reason")})
        todo = collector.missing()
        if resume:
            log.info("attack: resuming run %s: %d of %d batches were finished, attacking the other %d",
                     resume, collector.resumed_batches, len(batches), len(todo))
        if todo:
            pool = AttackPool(ray, replace(spec, num_actors=min(spec.num_actors, len(todo))), checkpoint, hp,
                              tuned.method, cfg.attack.epochs_per_batch)
            bar = progress_bar(sum(len(batches[b]) for b in todo), "attack", "sample")

            def on_batch(batch, results):
                collector(batch, results)
                bar.update(len(batches[batch]))

            try:
                pool.run(dataset.features, dataset.labels, batches, on_batch=on_batch, keep_results=False,
                         only=todo)
            finally:
                bar.close()
                pool.shutdown()
        table, perturbations = collector.results()
        if table is None or len(table) != len(sample_index):
            raise IcurtError("the attack returned no results for some samples; run `icurt attack` again")
        write_attack_run(writer.path, table, perturbations, dataset.features.shape, attack_config,
                         dataset.feature_names)
        collector.store.remove()
        summary = {"samples": int(len(table)), "attacked": int(table["attacked"].sum()),
                   "successes": int(table["success"].sum()), "unverified": int(table["unverified"].sum())}
        writer.update_meta(summary=summary)
        log.info("attack: %d samples, %d attacked, %d adversarial examples; %d claimed flips failed their "
                 "re-verification and count as failures", *summary.values())
    return writer.run


def show(run: Run, cfg: Config) -> str:
    from icurt.attack.results import read_attack_run

    attack = read_attack_run(run.path)
    table = attack.table
    lines = [f"attack run {run.run_id}: {int(table['success'].sum())} adversarial examples from "
             f"{int(table['attacked'].sum())} attacked of {len(table)} samples"]
    lines += [f"  {key} = {value}" for key, value in attack.config.items()]
    return "\n".join(lines)
