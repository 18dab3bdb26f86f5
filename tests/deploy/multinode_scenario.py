"""Run inside a fresh process by test_multinode.py: a simulated two-node Ray cluster
(`ray.cluster_utils.Cluster`), each node with 2 CPUs and one fake GPU resource. Runs the real
tune-model stage (trials take half a GPU, so four at once need both nodes) and the real full
attack (one actor per GPU), then prints, as JSON, the node each trial and actor ran on."""

import dataclasses
import json
import sys

import ray
from ray.cluster_utils import Cluster

from icurt.config import load_config, with_overrides
from icurt.dataset import save_dataset
from icurt.model import checkpoint
from icurt.model.hparams import ModelHparams
from icurt.model.lstm import LSTMClassifier
from icurt.planted import planted_dataset
from icurt.runs import RunStore


def nodes_of(class_name: str) -> list[str]:
    """Nodes that hosted an actor whose class name contains `class_name` (from the GCS actor table)."""
    from ray._private.state import actors

    table = actors().values()
    return sorted({a["Address"]["NodeID"] for a in table
                   if class_name in a["ActorClassName"] and a["Address"]["NodeID"]})


def main(data_root: str, dsn: str) -> None:
    from icurt.stages.attack import run as run_attack
    from icurt.stages.tune_model import run as run_tune_model

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    cluster.add_node(num_cpus=2, num_gpus=1)
    ray.init(address=cluster.address)
    cluster.wait_for_nodes()
    cfg = with_overrides(load_config(env={}), [
        f"paths.data={data_root}", f"db.dsn={dsn}",
        "tune_model.num_trials=4", "tune_model.num_folds=2", "tune_model.cv_epochs=1",
        "tune_model.epochs_per_cv_epoch=1", "tune_model.lstm_hidden_exponents=[3, 3]",
        "tune_model.fc_size_exponents=[3, 3]", "tune_model.batch_size_exponents=[5, 5]",
        "tune_model.gpus_per_trial=0.5", "tune_model.optuna_startup_trials=4",
        "attack.epochs_per_batch=5", "attack.samples=all", "attack.max_num_samples=128", "attack.batch_size=16",
    ])
    store = RunStore(data_root)
    with store.create("preprocess", cfg) as w:
        save_dataset(w.path, planted_dataset(160).dataset)
    tune_run = run_tune_model(cfg, w.run, store=store)
    trial_nodes = nodes_of("ImplicitFunc")  # how Ray Tune names function-trainable actors

    with store.create("train", cfg, inputs=[tune_run]) as t:
        hp = ModelHparams.from_dict(json.loads(tune_run.file("best_hparams.json").read_text()))
        checkpoint.save(t.path / "fold_0", checkpoint.Checkpoint.of(LSTMClassifier(19, hp), hp, 19))
    with store.create("tune-attack", cfg, inputs=[t.run], extra_meta={"fold": 0}) as a:
        (a.path / "best_attack_hparams.json").write_text(json.dumps(
            {"kappa": 0.0, "lambda_1": 1e-3, "learning_rate": 0.05, "optimizer": "adam", "batch_size": 16,
             "method": dataclasses.asdict(cfg.attack_method), "objective": 1.0, "objective_name": "sparse_small",
             "trial": 0, "fold": 0}))
    attack_run = run_attack(cfg, a.run, store=store)
    print("RESULT " + json.dumps({
        "cluster_nodes": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
        "trial_nodes": trial_nodes,
        "actor_nodes": nodes_of("AttackWorker"),
        "attacked_rows": int(len(__import__("pandas").read_parquet(attack_run.file("results.parquet")))),
    }), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
