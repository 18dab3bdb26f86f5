"""Stage 6, attack: the tuned sparse attack on the whole dataset, sharded over a pool of Ray actors.

Reads the tune-attack run (best_attack_hparams.json), the model of its train run
(fold_<k>/best.pt + model.json, k the fold that run tuned on) and the dataset of its preprocess run. Up to
[attack].max_num_samples samples (chosen with [attack].seed, kept in dataset order) are cut into
batches of the tuned batch size (or [attack].batch_size); writes results.parquet,
perturbations.npz, attack_config.json and feature_names.json.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import numpy as np

from icurt.attack.actors import AttackPool, PoolSpec
from icurt.attack.attacker import AttackHparams
from icurt.attack.samples import SampleResults
from icurt.attack.results import merge_perturbations, results_table, sparse_perturbations, write_results
from icurt.config import Config
from icurt.dataset import Dataset, load_dataset
from icurt.errors import IcurtError
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")
BEST_HPARAMS_FILE = "best_attack_hparams.json"
PROGRESS_EVERY_S = 10.0


@dataclass(frozen=True)
class AttackInputs:
    hp: AttackHparams
    state_dict: dict
    model_spec: dict
    dataset: Dataset
    fold: int
    train_run: Run
    preprocess_run: Run


def load_inputs(cfg: Config, store: RunStore, tune_run: Run) -> AttackInputs:
    """Hyperparameters, model weights and dataset named by the tune-attack run's lineage."""
    import torch

    path = tune_run.file(BEST_HPARAMS_FILE)
    if not path.is_file():
        raise IcurtError(f"tune-attack run {tune_run.run_id} has no {BEST_HPARAMS_FILE}; "
                         "rerun `icurt tune-attack` or pass another run with --from")
    tuned = json.loads(path.read_text())
    batch_size = cfg.attack.batch_size or int(tuned.get("batch_size", 0))
    hp = AttackHparams.from_dict({**tuned, "batch_size": batch_size, "max_perts": cfg.tune_attack.max_perts,
                                  **cfg.attack.method_settings()})
    # the fold the tune-attack run attacked (its run.json records it), not today's setting
    fold = int(tune_run.meta.get("fold", tuned.get("fold", cfg.tune_attack.fold)))
    train_run = store.ancestor(tune_run, "train")
    fold_dir = train_run.path / f"fold_{fold}"
    if not (fold_dir / "best.pt").is_file() or not (fold_dir / "model.json").is_file():
        raise IcurtError(f"train run {train_run.run_id} has no fold_{fold}/best.pt and model.json; "
                         "set tune_attack.fold to a trained fold")
    state_dict = torch.load(fold_dir / "best.pt", map_location="cpu", weights_only=True)
    model_spec = json.loads((fold_dir / "model.json").read_text())
    preprocess_run = store.ancestor(tune_run, "preprocess")
    dataset = load_dataset(preprocess_run.path)
    if int(model_spec["num_features"]) != dataset.features.shape[2]:
        raise IcurtError(f"the model of train run {train_run.run_id} expects {model_spec['num_features']} "
                         f"features but the dataset has {dataset.features.shape[2]}; retrain on this dataset")
    return AttackInputs(hp, state_dict, model_spec, dataset, fold, train_run, preprocess_run)


def select_samples(num_samples: int, max_num_samples: int, seed: int) -> np.ndarray:
    """Dataset rows to attack: all of them, or max_num_samples drawn with `seed`, in dataset order."""
    if num_samples <= max_num_samples:
        return np.arange(num_samples, dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(num_samples, size=max_num_samples, replace=False)
    return np.sort(chosen).astype(np.int64)


def cut_batches(sample_index: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [sample_index[i:i + batch_size] for i in range(0, len(sample_index), batch_size)]


def pool_spec(cfg: Config, ray, num_batches: int) -> PoolSpec:
    """Actors: [attack].num_actors, else one per GPU, else one per CPU slot (never more than batches)."""
    gpus = float(ray.cluster_resources().get("GPU", 0.0))
    if cfg.ray.device == "cuda" and gpus == 0:
        raise IcurtError("[ray].device is 'cuda' but the Ray cluster has no GPU; set ray.device=auto or cpu")
    use_gpu = gpus > 0 and cfg.ray.device != "cpu" and cfg.attack.gpus_per_actor > 0
    if cfg.attack.num_actors:
        count = cfg.attack.num_actors
    elif use_gpu:
        count = int(gpus // cfg.attack.gpus_per_actor)
    else:
        count = int(float(ray.cluster_resources().get("CPU", 1.0)) // cfg.attack.cpus_per_actor)
    return PoolSpec(num_actors=max(1, min(count, num_batches)), cpus_per_actor=cfg.attack.cpus_per_actor,
                    gpus_per_actor=cfg.attack.gpus_per_actor if use_gpu else 0.0,
                    max_restarts=cfg.attack.max_batch_retries, max_batch_retries=cfg.attack.max_batch_retries)


class ProgressLog:
    """Collects batch results as table rows and COO arrays; logs samples done and successes."""

    def __init__(self, dataset: Dataset, batches: list[np.ndarray]):
        self.dataset, self.batches = dataset, batches
        self.total = int(sum(len(b) for b in batches))
        self.tables, self.perturbations = [], []
        self.done = self.successes = 0
        self.started = self.last_log = time.perf_counter()

    def __call__(self, batch: int, results: SampleResults) -> None:
        index = self.batches[batch]
        self.tables.append(results_table(index, self.dataset.stay_ids[index], self.dataset.labels[index], results))
        self.perturbations.append(sparse_perturbations(index, results))
        self.done += len(index)
        self.successes += int(results.success.sum())
        now = time.perf_counter()
        if now - self.last_log >= PROGRESS_EVERY_S or self.done == self.total:
            self.last_log = now
            log.info("attack: %d/%d samples done, %d successes so far (%.1f samples/s)", self.done,
                     self.total, self.successes, self.done / max(now - self.started, 1e-9))


def run(cfg: Config, tune_attack_run: Run | None = None, store: RunStore | None = None) -> Run:
    """Attack the dataset with the tuned hyperparameters; returns the completed attack run."""
    import pandas as pd

    from icurt.ray_runtime import init_ray

    store = store or RunStore.from_config(cfg)
    tune_run = tune_attack_run or store.latest("tune-attack")
    inputs = load_inputs(cfg, store, tune_run)
    features, labels = inputs.dataset.features, inputs.dataset.labels
    sample_index = select_samples(len(labels), cfg.attack.max_num_samples, cfg.attack.seed)
    batches = cut_batches(sample_index, inputs.hp.batch_size)
    with store.create("attack", cfg, inputs=[tune_run]) as writer:
        ray = init_ray(cfg)
        spec = pool_spec(cfg, ray, len(batches))
        log.info("attack: %d samples in %d batches of %d on %d actor(s) (%s), %d iterations each",
                 len(sample_index), len(batches), inputs.hp.batch_size, spec.num_actors,
                 "GPU" if spec.gpus_per_actor else "CPU", cfg.attack.epochs_per_batch)
        progress = ProgressLog(inputs.dataset, batches)
        pool = AttackPool(ray, spec, inputs.state_dict, inputs.model_spec, inputs.hp,
                          cfg.attack.epochs_per_batch, cfg.tune_attack.attack_misclassified_samples)
        try:
            pool.run(features, labels, batches, on_batch=progress, keep_results=False)
        finally:
            pool.shutdown()
        table = pd.concat(progress.tables, ignore_index=True) if progress.tables else None
        if table is None or len(table) != len(sample_index):
            raise IcurtError("the attack returned no results for some samples; run `icurt attack` again")
        write_results(writer.path, table, merge_perturbations(progress.perturbations), features.shape)
        attack_config = {**inputs.hp.to_dict(), "iterations": cfg.attack.epochs_per_batch,
                         "attack_misclassified_samples": cfg.tune_attack.attack_misclassified_samples,
                         "fold": inputs.fold, "seed": cfg.attack.seed, "num_samples": int(len(sample_index)),
                         "num_actors": spec.num_actors, "device": "cuda" if spec.gpus_per_actor else "cpu",
                         "tune_attack_run": tune_run.run_id, "train_run": inputs.train_run.run_id}
        (writer.path / "attack_config.json").write_text(json.dumps(attack_config, indent=2))
        (writer.path / "feature_names.json").write_text(json.dumps(list(inputs.dataset.feature_names)))
        attacked = int(table["attacked"].sum())
        writer.update_meta(summary={"samples": int(len(table)), "attacked": attacked,
                                    "successes": int(table["success"].sum())})
        log.info("attack: %d samples, %d attacked, %d adversarial examples", len(table), attacked,
                 int(table["success"].sum()))
    return writer.run
