"""bench/gpu.py runs on a CPU at tiny sizes (what CI can check of it: every section runs and its
figures hold together; the speed figures themselves come from a GPU run, README's Measured)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_every_section_runs_on_a_cpu_at_tiny_sizes(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--device", "cpu", "--tiny",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    for section in ("train", "batch", "full", "sweep", "parity", "verify"):
        assert f"== {section}" in done.stdout
    figures = json.loads(out.read_text())
    assert figures["tiny"] is True

    rates = figures["train"]["samples_per_s"]
    from icurt.model.precision import cpu_runs_bf16_lstm

    bf16 = {"Trainer bf16"} if cpu_runs_bf16_lstm() else set()   # refused where oneDNN has no bf16 LSTM
    assert {"Trainer fp32", "DataLoader fp32 (baseline)"} | bf16 <= set(rates)
    assert ("Trainer bf16" in rates) == bool(bf16)
    assert "Trainer fp16" not in rates                    # a CPU cannot train in fp16: refused, not measured
    assert all(rate > 0 and math.isfinite(rate) for rate in rates.values())
    assert all(0.0 <= auroc <= 1.0 for auroc in figures["train"]["auroc"].values())

    batch = figures["batch"]
    assert set(batch["rates"]) == {"8", "32", "128"} and all(r > 0 for r in batch["rates"].values())
    # icurt's method attacks each sample on its own: batches of 4 and of 24 agree up to the float
    # rounding of the LSTM kernels at other batch sizes
    assert batch["independence_same_success"] is True
    assert batch["independence_max_dp"] <= 1e-5

    full = figures["full"]
    assert full["auto_batch"] == 64 and full["iterations"] == 100 and full["seconds_auto"] > 0
    assert 0 <= full["attacked"] <= full["samples"] == 256
    assert figures["sweep"]["samples"] == 32 and figures["sweep"]["seconds"] > 0
    assert figures["parity"] is None                      # the device is the CPU: nothing to compare

    verify = figures["verify"]
    # a CPU has no TF32: the attack with it "on" is the same computation as with it off
    assert verify["TF32 on"] == verify["TF32 off"]
    assert verify["TF32 off"]["unconfirmed"]["cpu"] <= verify["TF32 off"]["claimed"]
    recorded = verify["recorded"]
    assert recorded["successes"] + recorded["unverified"] == verify["TF32 off"]["claimed"]
