"""`icurt demo` end to end as a new user runs it: nothing configured, a fresh data root."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from icurt.stages import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
# --go-on: tiny.toml tunes 2 trials of 2 one-epoch cv epochs, which by design learn next to nothing
# (icurt run/demo would stop after tune-model; that stop is tested in tests/model/test_learned_nothing.py)
def test_demo_end_to_end_on_a_small_cohort(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICURT_")}
    env["ICURT_DATA"] = str(tmp_path / "data")
    icurt = [sys.executable, "-m", "icurt.cli"]
    try:
        result = subprocess.run(icurt + ["demo", "--go-on", "--stays", "400", "--config",
                                         str(ROOT / "tests/deploy/tiny.toml")],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=1500)
        assert result.returncode == 0, result.stderr[-3000:]
        report_lines = [ln for ln in result.stdout.splitlines() if ln.startswith("report: ")]
        assert report_lines, result.stdout
        report = Path(report_lines[-1].split("report: ", 1)[1])
        assert report.exists() and report.read_text().lstrip().lower().startswith("<!doctype html")
        html = report.read_text()
        # the verdict: a 400-stay cohort is too small to trust, and synth's oracle and ceiling stand beside the model
        assert "Model quality: the verdict" in html and 'class="banner"' in html and "fewer than 1,000" in html
        assert "oracle AUROC" in html and "achievable ceiling AUROC" in html
        assert "Attack targets: the held-out samples of fold" in html
        for stage in STAGE_NAMES:
            assert f"] {stage}: " in result.stderr  # progress for every stage
        assert "flip to survival by changing at most 4 measured values" in result.stdout   # the headline
        # icurt's own lines only: Ray's notices, raylet messages and core-worker lines stay in its logs
        foreign = [ln for ln in result.stderr.splitlines() if not re.match(r"\d\d:\d\d:\d\d ", ln)]
        assert foreign == [], foreign
        assert "(raylet)" not in result.stdout and "core_worker" not in result.stdout
        assert "score" in result.stdout and "scaled units" in result.stdout

        again = subprocess.run(icurt + ["demo", "--go-on", "--stays", "400", "--config",
                                        str(ROOT / "tests/deploy/tiny.toml")],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.stderr.count("reusing run") == len(STAGE_NAMES)  # a rerun picks up every completed stage
    finally:
        subprocess.run(icurt + ["db", "stop"], env=env, cwd=tmp_path, timeout=120)
