"""`icurt demo` end to end as a new user runs it: nothing configured, a fresh data root."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_end_to_end_on_a_small_cohort(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ICURT_")}
    env["ICURT_DATA"] = str(tmp_path / "data")
    icurt = [sys.executable, "-m", "icurt.cli"]
    try:
        result = subprocess.run(icurt + ["demo", "--stays", "400", "--config",
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
        for stage in ("query", "preprocess", "tune-model", "train", "tune-attack", "attack", "analyze"):
            assert stage in result.stderr  # progress for every stage

        again = subprocess.run(icurt + ["demo", "--stays", "400", "--config",
                                        str(ROOT / "tests/deploy/tiny.toml")],
                               capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.stderr.count("reusing run") == 7  # a rerun picks up the completed stages
    finally:
        subprocess.run(icurt + ["db", "stop"], env=env, cwd=tmp_path, timeout=120)
