"""Run store: atomic finalize, failed runs never look complete, lineage, newest, unknown ids."""

import json
import time

import pytest

from icurt.config import load_config
from icurt.errors import IcurtError
from icurt.runs import RunStore
from icurt.termination import Terminated


@pytest.fixture
def cfg():
    return load_config(overrides=["db.dsn=postgresql://bob:hunter2@localhost/mimic"], env={})


def make_run(store, stage, cfg, inputs=(), payload="x"):
    with store.create(stage, cfg, inputs=list(inputs)) as w:
        (w.path / "out.txt").write_text(payload)
    return w.run


def test_completed_run_has_snapshot_meta_and_log(tmp_path, cfg):
    store = RunStore(tmp_path)
    run = make_run(store, "query", cfg)
    assert run.path == tmp_path / "query" / run.run_id
    assert run.meta["status"] == "completed" and run.meta["stage"] == "query"
    assert run.meta["profile"] == "default"      # the config's [profile].name
    assert run.meta["profile_changes"] == []      # the DSN says where, not what: no change
    assert (run.path / "out.txt").read_text() == "x"
    snapshot = (run.path / "config.toml").read_text()
    assert "[train]" in snapshot and "hunter2" not in snapshot and "bob:***@" in snapshot
    assert "query run" in (run.path / "run.log").read_text()
    assert not [p for p in (tmp_path / "query").iterdir() if p.name.startswith(".tmp-")]


def test_stage_that_raises_leaves_no_completed_run(tmp_path, cfg):
    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.create("preprocess", cfg) as w:
            (w.path / "partial.npz").write_text("half")
            raise RuntimeError("boom")
    assert store.list("preprocess") == []
    with pytest.raises(IcurtError, match="no completed preprocess run"):
        store.latest("preprocess")
    failed = store.failed("preprocess")
    assert failed == [w.run_id]
    meta = json.loads((tmp_path / "preprocess" / f".failed-{w.run_id}" / "run.json").read_text())
    assert meta["status"] == "failed" and "boom" in meta["error"]
    with pytest.raises(IcurtError, match="failed"):
        store.get("preprocess", w.run_id)


def test_keyboard_interrupt_also_marks_failed(tmp_path, cfg):
    store = RunStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with store.create("train", cfg):
            raise KeyboardInterrupt
    assert store.list("train") == [] and len(store.failed("train")) == 1


def test_newest_and_lineage(tmp_path, cfg):
    store = RunStore(tmp_path)
    q1 = make_run(store, "query", cfg)
    time.sleep(0.01)
    q2 = make_run(store, "query", cfg)
    assert store.latest("query").run_id == q2.run_id
    assert [r.run_id for r in store.list("query")] == [q2.run_id, q1.run_id]
    p = make_run(store, "preprocess", cfg, inputs=[q1])
    t = make_run(store, "tune-model", cfg, inputs=[p])
    assert [r.run_id for r in store.lineage(t)] == [t.run_id, p.run_id, q1.run_id]
    assert store.ancestor(t, "query").run_id == q1.run_id
    assert store.resolve("query", None).run_id == q2.run_id
    assert store.resolve("query", q1.run_id).run_id == q1.run_id
    assert store.find(p.run_id).stage == "preprocess"


def test_run_ids_sort_by_time(tmp_path, cfg):
    store = RunStore(tmp_path)
    ids = []
    for _ in range(3):
        ids.append(make_run(store, "query", cfg).run_id)
    assert ids == sorted(ids)


@pytest.mark.parametrize("bad_id", ["nope", "../query", ".tmp-x"])
def test_unknown_run_id_is_a_one_line_error(tmp_path, cfg, bad_id):
    store = RunStore(tmp_path)
    make_run(store, "query", cfg)
    with pytest.raises(IcurtError) as err:
        store.get("query", bad_id)
    assert "\n" not in str(err.value) and "icurt runs query" in str(err.value)


def test_unknown_stage(tmp_path):
    with pytest.raises(IcurtError, match="unknown stage"):
        RunStore(tmp_path).list("bogus")


def test_resume_reopens_a_failed_run(tmp_path, cfg):
    store = RunStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.create("tune-model", cfg) as w:
            (w.path / "trial_0.json").write_text("{}")
            raise RuntimeError("interrupted")
    with store.create("tune-model", cfg, resume_id=w.run_id) as again:
        assert (again.path / "trial_0.json").exists()
    run = store.get("tune-model", w.run_id)
    assert run.meta["resumed"] == 1 and run.meta["status"] == "completed"
    with pytest.raises(IcurtError, match="already completed"):
        with store.create("tune-model", cfg, resume_id=w.run_id):
            pass
    with pytest.raises(IcurtError, match="no interrupted"):
        with store.create("tune-model", cfg, resume_id="20990101T000000000000-abcd"):
            pass


def test_a_failure_is_recorded_in_the_run_not_on_the_console(tmp_path, cfg, capsys):
    from icurt.cli import configure_logging

    configure_logging(debug=False, quiet=False)
    store = RunStore(tmp_path)
    with pytest.raises(IcurtError):
        with store.create("preprocess", cfg) as w:
            raise IcurtError("no ICU stay is left after the min_age filter")
    assert "failed" not in capsys.readouterr().err          # the command says it once (icurt.cli.main)
    failed = tmp_path / "preprocess" / f".failed-{w.run_id}"
    assert "preprocess run %s failed: no ICU stay is left" % w.run_id in (failed / "run.log").read_text()
    with pytest.raises(KeyboardInterrupt) as interrupted:
        with store.create("preprocess", cfg) as w2:
            raise KeyboardInterrupt
    meta = json.loads((tmp_path / "preprocess" / f".failed-{w2.run_id}" / "run.json").read_text())
    assert meta["error"] == "interrupted (Ctrl-C or SIGINT)"
    assert "failed: interrupted (Ctrl-C or SIGINT)" in (tmp_path / "preprocess" / f".failed-{w2.run_id}"
                                                        / "run.log").read_text()
    assert interrupted.value.icurt_failed_run[:2] == ("preprocess", w2.run_id)
    with pytest.raises(Terminated):
        with store.create("preprocess", cfg) as w3:
            raise Terminated   # what icurt's SIGTERM handler raises (icurt/termination.py)
    meta = json.loads((tmp_path / "preprocess" / f".failed-{w3.run_id}" / "run.json").read_text())
    assert meta["error"] == "terminated (SIGTERM)"


def test_unfinished_runs_and_prune(tmp_path, cfg):
    import os
    import subprocess
    import sys

    store = RunStore(tmp_path)
    done = make_run(store, "query", cfg)
    with pytest.raises(RuntimeError):
        with store.create("preprocess", cfg, inputs=[done]) as failed:
            raise RuntimeError("boom")
    # a run whose process was killed (its pid is gone) and one still being written (this process)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name, pid in (("20200101T000000000000-dead", int(gone.stdout)), ("20990101T000000000000-live", os.getpid())):
        folder = tmp_path / "tune-model" / f".tmp-{name}"
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(json.dumps({"pid": pid, "host": __import__("socket").gethostname()}))
    states = {(u.stage, u.run_id): (u.state, u.error) for u in store.unfinished()}
    assert states == {("preprocess", failed.run_id): ("failed", "RuntimeError: boom"),
                      ("tune-model", "20200101T000000000000-dead"): ("killed", ""),
                      ("tune-model", "20990101T000000000000-live"): ("running", "")}
    assert [u.run_id for u in store.prune("tune-model")] == ["20200101T000000000000-dead"]
    assert [u.run_id for u in store.prune()] == [failed.run_id]
    assert [(u.stage, u.state) for u in store.unfinished()] == [("tune-model", "running")]
    assert [r.run_id for r in store.list()] == [done.run_id]


def test_a_run_still_being_written_cannot_be_resumed(tmp_path, cfg):
    import os
    import socket

    folder = tmp_path / "attack" / ".tmp-20990101T000000000000-live"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    with pytest.raises(IcurtError, match=f"still being written \\(by process {os.getpid()}\\)"):
        RunStore(tmp_path).interrupted_folder("attack", "20990101T000000000000-live")


def test_a_full_disk_as_the_run_completes_keeps_it_as_failed_with_the_reason(tmp_path, cfg, monkeypatch):
    import errno

    from icurt import files

    write_text = files.write_text

    def full_for_the_last_write(path, text):
        if '"status": "completed"' in text:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_text(path, text)

    monkeypatch.setattr(files, "write_text", full_for_the_last_write)
    store = RunStore(tmp_path)
    with pytest.raises(IcurtError) as error:
        with store.create("tune-model", cfg) as w:
            pass
    kept = tmp_path / "tune-model" / f".failed-{w.run_id}"
    reason = (f"the disk is full (writing {tmp_path / 'tune-model' / f'.tmp-{w.run_id}' / 'run.json'}); free space "
              "on that disk (or point ICURT_DATA / --set paths.data=... at a larger one)")
    assert str(error.value) == (f"{reason}; tune-model run {w.run_id} is kept as {kept} (then continue it with "
                                f"`icurt tune-model --resume {w.run_id}`)")
    (unfinished,) = store.unfinished("tune-model")
    assert unfinished.state == "failed" and unfinished.error == reason and store.list("tune-model") == []
