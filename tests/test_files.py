"""Damaged run files: each reader of icurt/files.py (and the checkpoint's) turns a truncated,
overwritten or foreign file into one line naming the file, its run and what to do, through the
CLI too (exit 2, no traceback); `icurt runs` lists around a damaged run.json; a full disk is one line."""

import errno
import json

import numpy as np
import pandas as pd
import pytest
import torch

from icurt.cli import main
from icurt.config import load_config
from icurt.dataset import Dataset, load_dataset, save_dataset
from icurt.errors import IcurtError
from icurt.files import disk_full, read_json, read_npz, read_parquet, write_json
from icurt.runs import RunStore


@pytest.fixture
def cfg():
    return load_config(env={})


def truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def one_error_line(capsys) -> str:
    """The command's stderr (run with -q), checked to be exactly one `icurt: error:` line."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("icurt: error: "), err
    return lines[0]


def preprocess_run(store, cfg, features=None):
    x = np.random.default_rng(0).random((4, 3, 2)).astype(np.float32) if features is None else features
    with store.create("preprocess", cfg) as w:
        save_dataset(w.path, Dataset(x, np.array([0, 1, 0, 1]), np.arange(4) + 100, ["a", "b"],
                                     {"a": {"p_low": 0, "p_high": 1}, "b": {"p_low": 0, "p_high": 1}}))
        write_json(w.path / "cohort.json", {"filters": {}})
        write_json(w.path / "imputation.json", {"a": 0.0, "b": 0.0})
    return w.run


def show(tmp_path, stage, run_id, capsys):
    capsys.readouterr()   # what the test's own runs logged
    return main(["show", stage, run_id, "-q", "--set", f"paths.data={tmp_path}"])


# ---- the readers --------------------------------------------------------------------------------

def test_each_reader_names_the_file_the_damage_and_the_run_to_redo(tmp_path):
    run = tmp_path / "attack" / "20240101T000000000000-abcd"
    run.mkdir(parents=True)
    pd.DataFrame({"a": range(50)}).to_parquet(run / "results.parquet")
    np.savez(run / "perturbations.npz", shape=np.array([1, 2, 3]))
    write_json(run / "attack_config.json", {"fold": 0})
    for name in ("results.parquet", "perturbations.npz", "attack_config.json"):
        truncate(run / name)
    advice = "rerun `icurt attack` or pass another attack run with --from"
    with pytest.raises(IcurtError) as parquet:
        read_parquet(run / "results.parquet")
    assert str(parquet.value) == (f"{run / 'results.parquet'} is damaged (not a complete Parquet file: "
                                  f"truncated or overwritten); {advice}")
    with pytest.raises(IcurtError) as npz:
        read_npz(run / "perturbations.npz")
    assert str(npz.value) == (f"{run / 'perturbations.npz'} is damaged (not a complete zip archive: "
                              f"truncated or overwritten); {advice}")
    with pytest.raises(IcurtError, match=r"attack_config.json is damaged \(not valid JSON at line 2, column 3: Unterminated string\)"):
        read_json(run / "attack_config.json")
    # the last stage has no --from to pass it to; a file of an unfinished run: start a new one
    report = tmp_path / "analyze" / "20240101T000000000000-abcd" / "headline.json"
    report.parent.mkdir(parents=True)
    report.write_text("{")
    with pytest.raises(IcurtError, match=r"damaged \(.*\); rerun `icurt analyze`$"):
        read_json(report)
    batch = tmp_path / "fragility" / ".failed-20240101T000000000000-abcd" / "tasks" / "plan.json"
    batch.parent.mkdir(parents=True)
    batch.write_text("[1,")
    with pytest.raises(IcurtError, match="start a new fragility run instead of resuming this one$"):
        read_json(batch)
    with pytest.raises(FileNotFoundError):        # a missing file is its caller's to explain
        read_json(tmp_path / "absent.json")


def test_object_arrays_are_refused_never_unpickled(tmp_path):
    path = tmp_path / "preprocess" / "20240101T000000000000-abcd" / "dataset.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, features=np.array([{"not": "numbers"}], dtype=object))
    with pytest.raises(IcurtError, match="holds Python objects, which icurt never writes and will not unpickle"):
        read_npz(path)


def test_disk_full_is_found_in_the_chain():
    full = OSError(errno.ENOSPC, "No space left on device", "/d/x.npz")
    try:
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("writing failed") from inner
    except RuntimeError as outer:
        assert disk_full(outer) is full
    assert disk_full(OSError(errno.EDQUOT, "Disk quota exceeded")).errno == errno.EDQUOT
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None and disk_full(None) is None


# ---- the dataset: damage and non-finite features ------------------------------------------------

@pytest.mark.parametrize("damage, words", [
    ("truncated", "dataset.npz is damaged (not a complete zip archive: truncated or overwritten)"),
    ("object", "dataset.npz is damaged (it holds Python objects, which icurt never writes and will not unpickle)"),
    ("nan", "dataset.npz is damaged (3 of its 24 feature values are NaN or infinite)"),
])
def test_a_damaged_or_non_finite_dataset_is_one_line_through_the_cli(damage, words, tmp_path, cfg, capsys):
    store = RunStore(tmp_path)
    run = preprocess_run(store, cfg)
    path = run.file("dataset.npz")
    if damage == "truncated":
        truncate(path)
    else:
        arrays = dict(np.load(path))
        if damage == "object":
            arrays["labels"] = np.array([0, 1, "x", None], dtype=object)
        else:                                    # 4 × 3 × 2 = 24 values, three of them not finite
            arrays["features"][0, 0, 0] = arrays["features"][1, 2, 1] = np.nan
            arrays["features"][3, 1, 0] = np.inf
        np.savez(path, **arrays)
    with pytest.raises(IcurtError) as direct:
        load_dataset(run.path)
    assert str(direct.value) == (f"{path} is damaged ({words.split('(', 1)[1]}; rerun `icurt preprocess` or "
                                 "pass another preprocess run with --from")
    assert show(tmp_path, "preprocess", run.run_id, capsys) == 2
    assert one_error_line(capsys) == f"icurt: error: {direct.value}"


def test_a_finite_dataset_still_loads(tmp_path, cfg, capsys):
    run = preprocess_run(RunStore(tmp_path), cfg)
    assert load_dataset(run.path).features.shape == (4, 3, 2)


# ---- a truncated Parquet file -------------------------------------------------------------------

def test_a_truncated_parquet_file_is_one_line_through_the_cli(tmp_path, cfg, capsys):
    store = RunStore(tmp_path)
    with store.create("attack", cfg) as w:
        pd.DataFrame({"sample_index": range(100)}).to_parquet(w.path / "results.parquet")
        np.savez(w.path / "perturbations.npz", shape=np.array([1, 1, 1]))
    truncate(w.run.file("results.parquet"), keep=0.9)
    assert show(tmp_path, "attack", w.run_id, capsys) == 2
    assert one_error_line(capsys) == (f"icurt: error: {w.run.file('results.parquet')} is damaged (not a complete "
                                      "Parquet file: truncated or overwritten); rerun `icurt attack` or pass "
                                      "another attack run with --from")


# ---- run.json: `icurt runs` and `icurt show` go on ---------------------------------------------

def test_runs_lists_around_a_truncated_run_json_and_marks_it(tmp_path, cfg, capsys):
    store = RunStore(tmp_path)
    with store.create("query", cfg) as older:
        pass
    with store.create("query", cfg) as damaged:
        pass
    with store.create("preprocess", cfg, inputs=[older.run]) as newest:
        pass
    with pytest.raises(RuntimeError):
        with store.create("train", cfg) as failed:
            raise RuntimeError("out of memory")
    truncate(damaged.run.file("run.json"))
    truncate(tmp_path / "train" / f".failed-{failed.run_id}" / "run.json")
    root = ["-q", "--set", f"paths.data={tmp_path}"]
    capsys.readouterr()
    assert main(["runs", *root]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["preprocess", newest.run_id], ["query", damaged.run_id],
                                                 ["query", older.run_id]]
    assert out[1].startswith(f"query        {damaged.run_id}  damaged: run.json unreadable (not valid JSON at line ")
    assert out[0].endswith(f"from query {older.run_id}")
    assert main(["runs", "--failed", *root]) == 0         # a failed run with a damaged run.json: no reason
    assert capsys.readouterr().out.split()[:3] == ["train", failed.run_id, "failed"]
    # another run shows; the newest readable one is the default; the damaged one is one line
    assert main(["show", "query", older.run_id, "--settings", *root]) == 0
    assert "[train]" in capsys.readouterr().out
    assert store.latest("query").run_id == older.run_id      # passed over, with a warning
    capsys.readouterr()
    assert main(["show", "query", damaged.run_id, *root]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"icurt: error: {damaged.run.file('run.json')} is damaged (not valid JSON at line ")
    assert line.endswith(f"delete {damaged.run.path} or restore its run.json; `icurt runs` lists the readable runs")


# ---- checkpoints: refused before any tune-attack trial -----------------------------------------

def train_run(store, cfg):
    """A train run whose fold_0 holds a real (tiny) BiLSTM checkpoint of 2 input features."""
    from icurt.model.checkpoint import Checkpoint, save
    from icurt.model.hparams import ModelHparams
    from icurt.model.lstm import LSTMClassifier

    hparams = ModelHparams(lstm_hidden=4, fc_size=3)
    with store.create("train", cfg) as w:
        save(w.path / "fold_0", Checkpoint.of(LSTMClassifier(2, hparams), hparams, 2))
    return w.run


@pytest.mark.parametrize("damage, words", [
    ("not a state_dict", "is damaged (not a plain state_dict of tensors: refused to unpickle it (weights_only))"),
    ("a bare tensor", "is damaged (it holds a Tensor, not a state_dict of tensors)"),
    ("truncated", "is damaged (not a complete zip archive: truncated or overwritten)"),
    ("model.json of another network", "does not fit the network its model.json describes (size mismatch for "
                                      "lstm.weight_ih_l0: copying a param with shape torch.Size([16, 2]) from "
                                      "checkpoint, the shape in current model is torch.Size([24, 2]))"),
])
def test_a_damaged_checkpoint_stops_tune_attack_before_any_trial(damage, words, tmp_path, pg_dsn, cfg, capsys):
    store = RunStore(tmp_path)
    run = train_run(store, cfg)
    weights, spec = run.file("fold_0/best.pt"), run.file("fold_0/model.json")
    if damage == "not a state_dict":
        torch.save({"weight": torch.ones(2), "how": ["a", "list"], "then": print}, weights)
    elif damage == "a bare tensor":
        torch.save(torch.ones(2), weights)
    elif damage == "truncated":
        truncate(weights)
    else:                          # LSTM input weights are (4 gates × hidden, features): 16 × 2 vs 24 × 2
        values = json.loads(spec.read_text())
        values["hparams"]["lstm_hidden"] = 6
        spec.write_text(json.dumps(values))
    capsys.readouterr()
    code = main(["tune-attack", "--from", run.run_id, "--fold", "0", "-q", "--set", f"paths.data={tmp_path}",
                 "--set", f"db.dsn={pg_dsn}"])
    assert code == 2
    assert one_error_line(capsys) == (f"icurt: error: {weights} {words}; rerun `icurt train` or pass another "
                                      "train run with --from")
    assert store.list("tune-attack") == [] and store.unfinished("tune-attack") == []   # no trial, no run


def test_a_matching_checkpoint_loads(tmp_path, cfg):
    from icurt.model.checkpoint import load_fold

    checkpoint = load_fold(train_run(RunStore(tmp_path), cfg), 0)
    assert checkpoint.num_features == 2 and checkpoint.hparams.lstm_hidden == 4
