"""Run store: one folder per stage, one per run, finalized atomically by a rename.

    <data>/<stage>/<run_id>/            a completed run
    <data>/<stage>/.tmp-<run_id>/       a run in progress (never listed, never an input)
    <data>/<stage>/.failed-<run_id>/    a run whose stage raised or was interrupted (kept for its log)

Each run holds run.json (stage, id, status, times, input run ids, the config's profile and the
settings it reads that depart from it (analyze: those of its whole lineage), the process that wrote it), config.toml (the effective config, passwords redacted) and run.log. A run's failure
goes to its run.log and run.json only; the command that ran it says it once (icurt/cli.py).
run.log's handler is icurt/run_log.py; what an unfinished run is and why it stopped, icurt/unfinished.py.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
from contextlib import contextmanager
from importlib import metadata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from icurt.config import Config, config_to_dict, profile_changes
from icurt.config_toml import dict_to_toml
from icurt.errors import IcurtError
from icurt.files import damaged, disk_full, disk_full_line, read_json, write_json
from icurt.processes import ProcessId
from icurt.run_log import FILE_ONLY, attach_log, detach_log
from icurt.stage_table import INPUT_STAGE, RESUME, STAGE_NAMES, stage as stage_row
from icurt.unfinished import FAILED_PREFIX, TMP_PREFIX, Unfinished, failure_reason, unfinished_run

log = logging.getLogger("icurt")


@dataclass(frozen=True)
class Run:
    """A completed run: its folder and its run.json."""

    stage: str
    run_id: str
    path: Path
    meta: dict

    @property
    def inputs(self) -> dict[str, str]:
        return dict(self.meta.get("inputs", {}))

    def file(self, name: str) -> Path:
        return self.path / name


@dataclass
class RunWriter:
    """A run being written: write files under `path`; it becomes a Run when the stage succeeds."""

    stage: str
    run_id: str
    path: Path
    meta: dict
    run: Run | None = None  # set once finalized

    def update_meta(self, **values) -> None:
        self.meta.update(values)
        write_json(self.path / "run.json", self.meta, sort_keys=True)


def new_run_id(now: datetime | None = None) -> str:
    """A sortable id: UTC time to the microsecond, then a random suffix."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S%f") + "-" + secrets.token_hex(2)


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()  # absolute: Ray storage paths and actors need it

    @classmethod
    def from_config(cls, cfg: Config) -> "RunStore":
        return cls(cfg.paths.data)

    def stage_dir(self, stage: str) -> Path:
        _check_stage(stage)
        return self.root / stage

    def list(self, stage: str | None = None) -> list[Run]:
        """Completed runs, newest first (all stages when `stage` is None); a run whose run.json is
        damaged is left out (`damaged` lists those)."""
        runs = []
        for name, child in self._completed_folders(stage):
            try:
                runs.append(self._load(name, child))
            except IcurtError:
                continue
        return sorted(runs, key=lambda r: r.run_id, reverse=True)

    def damaged(self, stage: str | None = None) -> list["Unfinished"]:
        """The completed runs whose run.json cannot be read (state "damaged"), newest first."""
        found = []
        for name, child in self._completed_folders(stage):
            try:
                self._load(name, child)
            except IcurtError as exc:
                why = getattr(exc, "damage", str(exc))
                found.append(Unfinished(name, child.name, child, "damaged", f"run.json unreadable ({why})"))
        return sorted(found, key=lambda u: u.run_id, reverse=True)

    def _completed_folders(self, stage: str | None) -> Iterator[tuple[str, Path]]:
        for name in [stage] if stage else list(STAGE_NAMES):
            folder = self.stage_dir(name)
            if folder.is_dir():
                for child in folder.iterdir():
                    if child.is_dir() and not child.name.startswith(".") and (child / "run.json").exists():
                        yield name, child

    def get(self, stage: str, run_id: str) -> Run:
        path = self.stage_dir(stage) / run_id
        if "/" in run_id or run_id.startswith(".") or not (path / "run.json").is_file():
            hint = f"`icurt runs {stage}` lists them"
            if (self.stage_dir(stage) / f"{FAILED_PREFIX}{run_id}").exists():
                raise IcurtError(f"{stage} run '{run_id}' failed and has no results; see its run.log "
                                 f"under {self.stage_dir(stage) / (FAILED_PREFIX + run_id)}")
            raise IcurtError(f"no completed {stage} run '{run_id}' under {self.root}; {hint}")
        return self._load(stage, path)

    def latest(self, stage: str) -> Run:
        """The newest completed run of `stage` whose run.json can be read (a newer damaged one is
        passed over with a warning)."""
        runs = self.list(stage)
        for bad in self.damaged(stage):
            if not runs or bad.run_id > runs[0].run_id:
                log.warning("passing over %s run %s: %s", stage, bad.run_id, bad.error)
        if not runs:
            raise IcurtError(f"no completed {stage} run under {self.root}; run `icurt {stage}` first "
                             "(or point ICURT_DATA / --set paths.data=... at the right data root)")
        return runs[0]

    def resolve(self, stage: str, run_id: str | None) -> Run:
        """The run `run_id` of `stage`, or its newest completed run when `run_id` is None."""
        return self.latest(stage) if run_id is None else self.get(stage, run_id)

    def find(self, run_id: str) -> Run:
        """The completed run with this id, whatever its stage."""
        for stage in STAGE_NAMES:
            if (self.stage_dir(stage) / run_id / "run.json").is_file():
                return self.get(stage, run_id)
        raise IcurtError(f"no completed run '{run_id}' under {self.root}; `icurt runs` lists them")

    def lineage(self, run: Run) -> list[Run]:
        """The run and every run it was built from, nearest first."""
        chain, current = [run], run
        while True:
            parent_stage = INPUT_STAGE.get(current.stage)
            parent_id = current.inputs.get(parent_stage) if parent_stage else None
            if not parent_id:
                return chain
            try:
                current = self.get(parent_stage, parent_id)
            except IcurtError:
                return chain
            chain.append(current)

    def ancestor(self, run: Run, stage: str) -> Run:
        """The run of `stage` that `run` was built from (the run itself if it is of that stage)."""
        for candidate in self.lineage(run):
            if candidate.stage == stage:
                return candidate
        raise IcurtError(f"{run.stage} run '{run.run_id}' was not built from a {stage} run "
                         "(or that run was deleted)")

    @contextmanager
    def create(self, stage: str, cfg: Config, inputs: list[Run] | tuple[Run, ...] = (),
               resume_id: str | None = None, extra_meta: dict | None = None) -> Iterator[RunWriter]:
        """Write a new run (or continue a failed one with `resume_id`); finalize on success.

        On an exception (KeyboardInterrupt included) the folder is renamed .failed-<id> with its
        log, the exception propagates, and no completed run appears. A full disk (ENOSPC, EDQUOT)
        anywhere in the stage, its own files included, becomes one IcurtError naming the path and
        the kept run; the reason is recorded where the disk still lets it be written.
        """
        folder = self.stage_dir(stage)
        folder.mkdir(parents=True, exist_ok=True)
        run_id = resume_id or new_run_id()
        tmp = folder / f"{TMP_PREFIX}{run_id}"
        if resume_id:
            interrupted = self.interrupted_folder(stage, resume_id)
            meta = read_json(interrupted / "run.json")   # damaged: said before the folder moves
            os.replace(interrupted, tmp)
        else:
            tmp.mkdir()
            meta = {}
        snapshot = config_to_dict(cfg, redact=True)
        meta.update({
            "stage": stage, "run_id": run_id, "status": "running", "icurt_version": metadata.version("icurt"),
            "profile": snapshot["profile"]["name"], "profile_changes": profile_changes(cfg, stage_row(stage).reads),
            "created": meta.get("created", _now()), "inputs": {r.stage: r.run_id for r in inputs},
            "pid": os.getpid(), "pid_started": ProcessId.this().started, "host": socket.gethostname(),
            **(extra_meta or {}),
        })
        if resume_id:
            meta["resumed"] = meta.get("resumed", 0) + 1
        writer, handler = RunWriter(stage, run_id, tmp, meta), None
        try:
            (tmp / "config.toml").write_text(dict_to_toml(snapshot))
            writer.update_meta()
            handler = attach_log(tmp / "run.log")
            log.info("%s run %s started (inputs: %s)", stage, run_id,
                     ", ".join(f"{r.stage} {r.run_id}" for r in inputs) or "none")
            yield writer
            log.info("%s run %s completed", stage, run_id)
            writer.update_meta(status="completed", finished=_now())
        except BaseException as exc:
            failed = _keep_failed(writer, handler, exc)
            kept = (stage, run_id, failed)
            full = disk_full(exc)
            if full is not None and not isinstance(exc, IcurtError):
                error = IcurtError(f"{disk_full_line(full)}; {stage} run {run_id} is kept as {failed} "
                                   f"(then {_continue_hint(stage, run_id)})")
                error.icurt_failed_run = kept
                raise error from exc
            exc.icurt_failed_run = kept  # for the command's one line
            raise
        detach_log(handler)
        final = folder / run_id
        os.replace(tmp, final)
        writer.path = final
        writer.run = self._load(stage, final)

    def interrupted_folder(self, stage: str, run_id: str) -> Path:
        """The folder of the interrupted run `run_id` (.failed- or a .tmp- a killed process left)."""
        folder = self.stage_dir(stage)
        for name in (f"{FAILED_PREFIX}{run_id}", f"{TMP_PREFIX}{run_id}"):
            if "/" not in run_id and (folder / name / "run.json").is_file():
                if name.startswith(TMP_PREFIX) and unfinished_run(stage, folder / name).state == "running":
                    raise IcurtError(f"{stage} run '{run_id}' is still being written (by process "
                                     f"{read_json(folder / name / 'run.json').get('pid')}); let it finish or stop it first")
                return folder / name
        if (folder / run_id / "run.json").is_file():
            raise IcurtError(f"{stage} run '{run_id}' already completed; start a new run instead of --resume")
        raise IcurtError(f"no interrupted {stage} run '{run_id}' to resume under {self.root}; "
                         f"`icurt runs {stage} --all` lists failed runs")

    def interrupted_meta(self, stage: str, run_id: str) -> dict:
        return read_json(self.interrupted_folder(stage, run_id) / "run.json")

    def failed(self, stage: str) -> list[str]:
        """Ids of the stage's failed or interrupted runs (a run still being written included), newest first."""
        return [run.run_id for run in self.unfinished(stage)]

    def unfinished(self, stage: str | None = None) -> list["Unfinished"]:
        """Failed runs, runs a killed process left and runs in progress, newest first."""
        found = []
        for name in [stage] if stage else list(STAGE_NAMES):
            folder = self.stage_dir(name)
            if folder.is_dir():
                found += [unfinished_run(name, path) for path in folder.iterdir()
                          if path.name.startswith((FAILED_PREFIX, TMP_PREFIX))]
        return sorted(found, key=lambda u: u.run_id, reverse=True)

    def prune(self, stage: str | None = None) -> list["Unfinished"]:
        """Delete the failed runs and those a dead process left (never a run still being written);
        returns what was deleted."""
        gone = [u for u in self.unfinished(stage) if u.state != "running"]
        for run in gone:
            shutil.rmtree(run.path)
        return gone

    @staticmethod
    def _load(stage: str, path: Path) -> Run:
        """The run in `path`; IcurtError (one line) when its run.json is damaged or not a run's."""
        fix = f"delete {path} or restore its run.json; `icurt runs` lists the readable runs"
        meta = read_json(path / "run.json", fix=fix)
        if not isinstance(meta, dict):
            raise damaged(path / "run.json", f"it holds a JSON {type(meta).__name__}, not an object", fix)
        return Run(stage=stage, run_id=path.name, path=path, meta=meta)


def _keep_failed(writer: RunWriter, handler: logging.Handler | None, exc: BaseException) -> Path:
    """Rename the run .failed-<id> (what `create` does on any exception), with its reason in run.json
    and run.log where the disk lets them be written: on a full disk the rename still happens and
    run.json keeps what it held. Returns the new folder."""
    reason = failure_reason(exc)
    try:
        log.error("%s run %s failed: %s", writer.stage, writer.run_id, reason, extra=FILE_ONLY)
        writer.update_meta(status="failed", finished=_now(), error=reason[:2000])
    except OSError as error:
        log.debug("could not record why %s run %s failed: %s", writer.stage, writer.run_id, error)
    if handler is not None:
        detach_log(handler)
    failed = writer.path.with_name(f"{FAILED_PREFIX}{writer.run_id}")
    if failed.exists():
        shutil.rmtree(failed)
    os.replace(writer.path, failed)
    return failed


def _continue_hint(stage: str, run_id: str) -> str:
    if RESUME in stage_row(stage).options:
        return f"continue it with `icurt {stage} --resume {run_id}`"
    return f"rerun `icurt {stage}`"


def _check_stage(stage: str) -> None:
    if stage not in STAGE_NAMES:
        raise IcurtError(f"unknown stage '{stage}'; stages are: {', '.join(STAGE_NAMES)}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
