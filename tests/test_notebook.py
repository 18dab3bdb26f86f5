"""notebooks/walkthrough.ipynb: kept as make_walkthrough.py writes it (outputs cleared), and executed
on a real Jupyter kernel over a tiny synthetic cohort with its own embedded PostgreSQL; any cell
error fails the test."""

import importlib.util
import tomllib
from pathlib import Path

import nbformat
import pytest

import tiny_flips

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "walkthrough.ipynb"
TINY = ROOT / "tests" / "deploy" / "tiny.toml"


def _maker():
    spec = importlib.util.spec_from_file_location("make_walkthrough", ROOT / "notebooks" / "make_walkthrough.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notebook_is_what_its_script_writes_with_outputs_cleared():
    assert NOTEBOOK.read_text() == _maker().render(), "run `python notebooks/make_walkthrough.py`"
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)
    stages = "".join(cell.source for cell in code)
    for stage in ("query", "preprocess", "tune-model", "train", "tune-attack", "attack", "fragility", "analyze"):
        assert f'icurt.run("{stage}"' in stages   # every stage, through the API


def tiny_config(folder: Path) -> Path:
    """tests/deploy/tiny.toml with a model and an attack just strong enough to find adversarial
    examples (tests/helpers/tiny_flips.py), so every cell shows something."""
    from icurt.config_toml import dict_to_toml

    raw = tiny_flips.merged(tomllib.loads(TINY.read_text()))
    path = folder / "notebook_tiny.toml"
    path.write_text(dict_to_toml(raw))
    return path


@pytest.mark.slow
def test_the_notebook_runs_cell_by_cell_on_a_tiny_cohort(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    import icurt

    for name in ("ICURT_DSN", "ICURT_OPTUNA_DSN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ICURT_DATA", str(tmp_path / "data"))
    config = tiny_config(tmp_path)
    monkeypatch.setenv("ICURT_NOTEBOOK_CONFIG", str(config))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()          # CellExecutionError on the first cell that raises
    finally:
        icurt.stop_database(icurt.load_config(config))

    def outputs_of(text: str) -> list:
        cell = next(c for c in notebook.cells if c.cell_type == "code" and text in c.source)
        return cell.outputs

    printed = "".join(o.get("text", "") for o in outputs_of('icurt.run("fragility"'))
    assert "by changing at most 4 measured values" in printed   # tiny.toml's headline_k (either direction: the tiny model may predict no death at P(died) > 0.5)
    for text in ('figures["fragility_curves.png"]', 'figures["features_best.png"]', "stay[["):
        assert any("image/png" in o.get("data", {}) for o in outputs_of(text)), text
    example = outputs_of("attack.example(sample)")          # an adversarial example's changed cells
    assert any("before" in o.get("data", {}).get("text/plain", "") for o in example), example
    runs = icurt.list_runs(cfg=icurt.load_config(config))
    assert sorted({r.stage for r in runs}) == sorted(["query", "preprocess", "tune-model", "train", "tune-attack",
                                                      "attack", "fragility", "analyze"])
