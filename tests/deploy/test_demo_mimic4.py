"""`icurt demo --dataset mimic-iv` end to end: the synthetic cohort in MIMIC-IV's schema, queried with
sql/mimic-iv/, through every stage to the report."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from icurt.stages import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
# --go-on: tiny.toml tunes 2 trials of 2 one-epoch cv epochs, which by design learn next to nothing
# (icurt run/demo would stop after tune-model; that stop is tested in tests/model/test_learned_nothing.py)
def test_demo_on_mimic4(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICURT_")}
    env["ICURT_DATA"] = str(tmp_path / "data")
    icurt = [sys.executable, "-m", "icurt.cli"]
    try:
        result = subprocess.run(icurt + ["demo", "--go-on", "--dataset", "mimic-iv", "--stays", "400", "--config",
                                         str(ROOT / "tests/deploy/tiny.toml")],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1500)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "synthetic cohort in MIMIC-IV's schema, in mimiciv_hosp, mimiciv_icu: 400 ICU stays" in result.stdout
        for stage in STAGE_NAMES:
            assert f"] {stage}: " in result.stderr  # every stage ran
        report = Path([ln for ln in result.stdout.splitlines() if ln.startswith("report: ")][-1].split(": ", 1)[1])
        assert report.exists()
        shown = subprocess.run(icurt + ["show", "query"], capture_output=True, text=True, env=env, cwd=tmp_path,
                               timeout=120)
        assert "dataset: MIMIC-IV v2.2+ (schemas mimiciv_hosp, mimiciv_icu)" in shown.stdout, shown.stderr[-2000:]
    finally:
        subprocess.run(icurt + ["db", "stop"], env=env, cwd=tmp_path, timeout=120)
