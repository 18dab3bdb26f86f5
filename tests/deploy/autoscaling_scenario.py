"""Run in a fresh process by test_autoscaling.py: the cluster cluster.yaml describes, simulated on
this machine with Ray's fake multi-node autoscaler — a CPU-only head and a GPU worker type that
autoscales from zero (fake GPU resources). With [ray].device = "auto", the real tune-model stage and
the real full attack must ask for GPUs, so the autoscaler adds GPU workers and the trials and
attack actors run there. Prints, as JSON, the nodes of each kind and where the work ran.

The head is started with `ray start --head` on free ports and everything it started is stopped
by its GCS address at the end, so no other Ray on the machine is touched (Ray's own
AutoscalingCluster helper runs `ray stop --force`, which would)."""

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ray

from icurt.config import load_config, with_overrides
from icurt.dataset import save_dataset
from icurt.model import checkpoint
from icurt.model.hparams import ModelHparams
from icurt.model.lstm import LSTMClassifier
from icurt.planted import planted_dataset
from icurt.runs import RunStore

GPU_WORKER = {"resources": {"CPU": 2, "GPU": 1, "object_store_memory": 200 * 1024 ** 2},
              "node_config": {}, "min_workers": 0, "max_workers": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def autoscaling_config(gcs_address: str) -> dict:
    """A fake-multinode cluster config: a CPU head (its resources given to `ray start`) and GPU workers."""
    return {
        "cluster_name": "icurt-autoscaling-test", "max_workers": 2, "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True, "gcs_address": gcs_address},
        "available_node_types": {"ray.head.default": {"resources": {"CPU": 2}, "node_config": {},
                                                      "max_workers": 0},
                                 "gpu_worker": GPU_WORKER},
        "head_node_type": "ray.head.default", "auth": {}, "docker": {}, "file_mounts": {},
        "cluster_synced_files": [], "file_mounts_sync_continuously": False, "rsync_exclude": [],
        "rsync_filter": [], "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def start_head(workdir: Path):
    from ray._private.services import get_node_ip_address

    port = free_port()
    gcs_address = f"{get_node_ip_address()}:{port}"
    config = workdir / "autoscaling.json"
    config.write_text(json.dumps(autoscaling_config(gcs_address)))
    ray_cli = str(Path(sys.executable).parent / "ray")
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--num-cpus=2", "--num-gpus=0", f"--port={port}",
         f"--autoscaling-config={config}", "--include-dashboard=false",
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--ray-client-server-port={free_port()}",
         f"--runtime-env-agent-port={free_port()}", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=workdir)
    return head, gcs_address


def stop_everything_of(gcs_address: str, head) -> None:
    """Stop the head, then every process still attached to this cluster (its fake worker nodes)."""
    import psutil

    head.send_signal(signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        head.kill()
    for process in psutil.process_iter(["cmdline"]):
        if any(gcs_address in arg for arg in process.info.get("cmdline") or []):
            try:
                process.kill()
            except psutil.Error:
                pass
    # `ray start` recorded this head as the machine's current cluster; Ray APIs called later
    # without an address would wait on it
    from ray._common.utils import get_ray_address_file

    record = Path(get_ray_address_file(None))
    if record.is_file() and record.read_text().strip().endswith(gcs_address.rsplit(":", 1)[1]):
        record.unlink()


def node_kinds() -> dict[str, list[str]]:
    head, gpu = [], []
    for node in ray.nodes():
        if node["Alive"]:
            (gpu if node["Resources"].get("GPU", 0) > 0 else head).append(node["NodeID"])
    return {"head": sorted(head), "gpu_workers": sorted(gpu)}


def nodes_of(class_name: str) -> list[str]:
    from ray._private.state import actors

    return sorted({a["Address"]["NodeID"] for a in actors().values()
                   if class_name in a["ActorClassName"] and a["Address"]["NodeID"]})


def main(data_root: str, dsn: str) -> None:
    from icurt.placement import cluster_capacity
    from icurt.stages.attack import run as run_attack
    from icurt.stages.tune_model import run as run_tune_model

    workdir = Path(tempfile.mkdtemp())
    head, gcs_address = start_head(workdir)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ray.init(address=gcs_address)
                break
            except Exception:
                assert time.monotonic() < deadline, "the Ray head did not come up"
                time.sleep(1)
        capacity = cluster_capacity(ray)
        at_start = node_kinds()
        cfg = with_overrides(load_config(env={}), [
            f"paths.data={data_root}", f"db.dsn={dsn}", "ray.device=auto",
            "tune_model.num_trials=2", "tune_model.num_folds=2", "tune_model.cv_epochs=1",
            "tune_model.epochs_per_cv_epoch=1", "tune_model.lstm_hidden_exponents=[3, 3]",
            "tune_model.fc_size_exponents=[3, 3]", "tune_model.batch_size_exponents=[5, 5]",
            "tune_model.gpus_per_trial=0.5", "tune_model.optuna_startup_trials=2",
            "attack.epochs_per_batch=5", "attack.samples=all", "attack.max_num_samples=64", "attack.batch_size=16",
            "attack.gpus_per_actor=1.0",
        ])
        store = RunStore(data_root)
        with store.create("preprocess", cfg) as w:
            save_dataset(w.path, planted_dataset(120, seed=3).dataset)
        tune_run = run_tune_model(cfg, w.run, store=store)
        trial_nodes = nodes_of("ImplicitFunc")   # how Ray Tune names function-trainable actors
        with store.create("train", cfg, inputs=[tune_run]) as t:
            hp = ModelHparams.from_dict(json.loads(tune_run.file("best_hparams.json").read_text()))
            checkpoint.save(t.path / "fold_0", checkpoint.Checkpoint.of(LSTMClassifier(19, hp), hp, 19))
        with store.create("tune-attack", cfg, inputs=[t.run], extra_meta={"fold": 0}) as a:
            (a.path / "best_attack_hparams.json").write_text(json.dumps(
                {"kappa": 0.0, "lambda_1": 1e-3, "learning_rate": 0.05, "optimizer": "adam", "batch_size": 16,
                 "method": dataclasses.asdict(cfg.attack_method), "objective": 1.0,
                 "objective_name": "sparse_small", "trial": 0, "fold": 0}))
        attack_run = run_attack(cfg, a.run, store=store)
        print("RESULT " + json.dumps({
            "max_gpus_at_start": capacity.max_gpus, "gpus_at_start": capacity.gpus,
            "nodes_at_start": at_start, "nodes": node_kinds(), "trial_nodes": trial_nodes,
            "actor_nodes": nodes_of("AttackWorker"),
            "actor_resources": json.loads(attack_run.file("attack_config.json").read_text())["resources_per_actor"],
        }), flush=True)
        ray.shutdown()
    finally:
        stop_everything_of(gcs_address, head)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
