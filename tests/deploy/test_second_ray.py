"""icurt's local Ray never leans on another Ray's dashboard: an `icurt train` keeps all its folds
when a second Ray (head and dashboard on 127.0.0.1:8265, the port a Ray without a dashboard records
by default) starts on the machine mid-run. Before the fix Ray Train's placement-group cleaner asked
that dashboard about icurt's Train controller, heard "no such actor" and removed the fold's
placement group."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icurt.runs import RunStore

from ray_head import ray_head

OTHER_RAYS_DASHBOARD = 8265


def _crossval_module():
    path = Path(__file__).resolve().parents[1] / "model" / "test_crossval.py"
    spec = importlib.util.spec_from_file_location("icurt_test_crossval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fold_started(data: Path) -> bool:
    return any(data.glob("train/*/ray_results/crossval/fold_0"))


@pytest.mark.slow
def test_train_keeps_its_folds_when_a_second_ray_starts_mid_run(tmp_path, make_config, pg_dsn):
    crossval = _crossval_module()
    settings = [*crossval.FAST, "train.epochs=400", "train.eval_interval=100", "train.patience=0"]
    cfg = make_config(*settings)
    tune_run, _ = crossval.fake_tune_run(RunStore.from_config(cfg), cfg)

    overrides = [arg for s in [*settings, f"paths.data={tmp_path}", "ray.num_cpus=2"] for arg in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"ICURT_DSN": pg_dsn}
    train = subprocess.Popen([sys.executable, "-m", "icurt.cli", "train", "--from", tune_run.run_id, *overrides],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while not _fold_started(tmp_path):
            assert train.poll() is None, train.communicate()[0][-3000:]
            assert time.monotonic() < deadline, "train started no fold"
            time.sleep(0.5)
        with ray_head(dashboard_port=OTHER_RAYS_DASHBOARD):
            assert train.poll() is None, "train ended before the second Ray was up: the test proves nothing"
            output, _ = train.communicate(timeout=300)
    finally:
        if train.poll() is None:
            train.kill()
    assert train.returncode == 0, output[-3000:]
    assert not re.search(r"fold \d+ failed|placement group", output), output[-3000:]
    summary = json.loads(RunStore(tmp_path).latest("train").file("summary.json").read_text())
    assert sorted(f["fold"] for f in summary["folds"]) == [0, 1]
