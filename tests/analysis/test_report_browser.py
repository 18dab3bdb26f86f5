"""The report in a real browser: headless Chromium (Debian's `chromium`, which .ci/run installs where
missing) renders it at 1280 × 900; the summary sits in that first screen and every image decodes.

The report is built from test_report.py's small synthetic attack (no pipeline run). Chromium's layout
is read back by a probe script added to a copy of the report (the report itself has no script): it
writes the summary's box and each image's decoded size into the DOM that --dump-dom prints."""

import base64
import importlib.util
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from icurt.analysis.plots import Plot, all_plots
from icurt.analysis.report import build_report
from icurt.analysis.stats import analyse
from icurt.analysis.verdict import build_verdict, reliability_png
from icurt.attack.results import perturbations_from_arrays

WIDTH, HEIGHT = 1280, 900
PROBE = """<script>
window.addEventListener("load", () => {
  const box = document.querySelector("section.summary").getBoundingClientRect();
  const images = [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]);
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({top: box.top, bottom: box.bottom, height: window.innerHeight, images});
  document.body.appendChild(out);
});
</script></body>"""


def _test_report_module():
    path = Path(__file__).with_name("test_report.py")
    spec = importlib.util.spec_from_file_location("report_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:   # fail, never skip: .ci/run installs Debian's chromium
        pytest.fail("chromium is not installed: `apt-get install -y --no-install-recommends chromium`")
    return found


def run_chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={WIDTH},{HEIGHT}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    fixtures = _test_report_module()
    results, arrays = fixtures.random_attack(np.random.default_rng(7))
    perturbations, shape = perturbations_from_arrays(arrays)
    analysis = analyse(results, perturbations, shape, fixtures.NAMES, {}, top_features=2)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    verdict = build_verdict(pd.DataFrame(
        {"label": labels, "p_died": np.clip(0.3 * labels + rng.random(200) * 0.7, 0, 1), "threshold": 0.5}))
    plots = all_plots(analysis) + [Plot("reliability.png", "verdict", "reliability", reliability_png(verdict))]
    ctx = fixtures.full_context()
    ctx.verdict = verdict
    ctx.source = {"loaded_at": "2026-12-01T10:00:00+00:00", "load_id": "ab", "source": "icurt db synth (200 stays)"}
    ctx.dataset = {"dataset": "mimic-iii", "release": "MIMIC-III v1.4", "schemas": ["mimiciii"]}
    document = build_report(analysis, ctx, plots)
    folder = tmp_path_factory.mktemp("browser")
    (folder / "report.html").write_text(document, encoding="utf-8")
    (folder / "probe.html").write_text(document.replace("</body>", PROBE), encoding="utf-8")
    return folder, document, plots


def test_the_summary_is_in_the_first_screen_and_every_image_decodes_in_chromium(rendered):
    folder, document, plots = rendered
    dumped = run_chromium(folder, "--virtual-time-budget=10000", "--dump-dom", (folder / "probe.html").as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dumped.stdout, re.S)
    assert found, f"chromium printed no probe: {dumped.stderr[-2000:]}"
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    # the first screen: the viewport of a 1280 × 900 window (headless Chromium keeps room for its toolbar)
    assert HEIGHT - 200 <= probe["height"] <= HEIGHT, probe
    assert 0 <= probe["top"] < probe["bottom"] <= probe["height"], probe   # the whole summary, no scrolling
    assert len(probe["images"]) == len(plots) == document.count("<img ")
    for complete, width, height in probe["images"]:
        assert complete and width > 0 and height > 0                 # a broken image decodes to 0 × 0


def test_the_screenshot_is_taken_and_every_embedded_png_opens(rendered):
    folder, document, plots = rendered
    shot = folder / "first_screen.png"
    taken = run_chromium(folder, f"--screenshot={shot}", (folder / "report.html").as_uri())
    assert shot.is_file(), taken.stderr[-2000:]
    with Image.open(shot) as image:
        assert image.size == (WIDTH, HEIGHT)
        colours = image.convert("L").getextrema()
        assert colours[0] < colours[1]                                # not a blank page
    sources = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', document)
    assert len(sources) == len(plots)
    for source in sources:
        with Image.open(io.BytesIO(base64.b64decode(source, validate=True))) as image:
            image.verify()
    assert sorted(base64.b64decode(s) for s in sources) == sorted(plot.png for plot in plots)
