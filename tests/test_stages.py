"""The stage table and what derives from it: `icurt run`'s reuse key, the generated CLI, and a
stage reading only the settings its row declares."""

import dataclasses
import sys
import typing

import pytest

from icurt.cli import build_parser
from icurt.config import Config, load_config, with_overrides
from icurt.errors import IcurtError
from icurt.pipeline import reuse_plan
from icurt.runs import RunStore
from icurt.stages import STAGE_NAMES, STAGES, settings_read, config_values

# Sections that place the work (where data lives, which database, which Ray) but never shape a result.
PLACEMENT_SECTIONS = {"paths", "db", "ray", "synth"}
SOURCE = {"load_id": "unchanged"}   # what every stage with a source reads, as its fingerprint


@pytest.fixture(autouse=True)
def unchanged_sources(monkeypatch):
    """Sources (query's database) that never change, so these tests need no database."""
    for row in STAGES:
        if row.source:
            monkeypatch.setattr(row.module + ".source_fingerprint", lambda cfg: SOURCE)


def completed_chain(store, cfg):
    """One completed run per stage, each built from the one before, all with config `cfg`."""
    previous = None
    for row in STAGES:
        extra = {"source": SOURCE} if row.source else None
        with store.create(row.name, cfg, inputs=[previous] if previous else [], extra_meta=extra) as writer:
            pass
        previous = writer.run
    return store


def changed_value(cfg: Config, section: str, key: str):
    """An override string giving `section.key` a different value that still validates."""
    value = getattr(getattr(cfg, section), key)
    hint = typing.get_type_hints(type(getattr(cfg, section)))[key]
    if isinstance(value, dict):   # a table setting: change one entry
        name = next(iter(value))
        return f"{section}.{key}.{name}={value[name] * 2}"
    if isinstance(value, bool):
        candidates = [not value]
    elif isinstance(value, (int, float)):
        candidates = [value + 1, value - 1, value * 2, value / 2, 0.5, 1]
    elif isinstance(value, str):
        meta = next(f.metadata for f in dataclasses.fields(type(getattr(cfg, section))) if f.name == key)
        candidates = [c for c in (meta.get("choices") or ()) if c != value] + [value + "x", "x", "postgresql://h/x"]
    else:
        item = typing.get_args(hint)[0]
        if item is str:
            candidates = [value[:1], value[1:], list(reversed(value))]
        else:
            candidates = [[value[0], value[1] * 2 + 1], [value[0] / 2, value[1]], [value[0], value[1] - 1],
                          [value[0], value[1] / 2]]
    for candidate in candidates:
        if candidate == value:
            continue
        text = repr(candidate).replace("'", '"').replace("True", "true").replace("False", "false")
        try:
            changed = with_overrides(cfg, [f"{section}.{key}={text}"])
        except IcurtError:
            continue
        if getattr(getattr(changed, section), key) != value:
            return f"{section}.{key}={text}"
    raise AssertionError(f"found no other valid value for {section}.{key}")


def first_reader(section: str, key: str) -> int | None:
    """Index of the first stage whose reads include this setting (None: no stage reads it)."""
    for index, row in enumerate(STAGES):
        if section in row.reads or f"{section}.{key}" in row.reads:
            return index
    return None


ALL_SETTINGS = [(name, f.name) for name, section in typing.get_type_hints(Config).items()
                for f in dataclasses.fields(section)]


@pytest.mark.parametrize("section,key", ALL_SETTINGS, ids=[f"{s}.{k}" for s, k in ALL_SETTINGS])
def test_a_changed_setting_reruns_its_first_reader_and_everything_after(tmp_path, section, key):
    cfg = load_config(env={})
    store = completed_chain(RunStore(tmp_path), cfg)
    assert all(run is not None for run in reuse_plan(cfg, store).values())
    plan = reuse_plan(with_overrides(cfg, [changed_value(cfg, section, key)]), store)
    reader = first_reader(section, key)
    reused = [name for name, run in plan.items() if run is not None]
    if reader is None:   # read by no stage: only places the work
        assert section in PLACEMENT_SECTIONS and reused == list(STAGE_NAMES)
    else:
        assert reused == list(STAGE_NAMES[:reader]), (section, key)


def test_the_attack_method_shapes_tune_attack_and_attack():
    readers = {row.name for row in STAGES if "attack_method" in row.reads}
    assert readers == {"tune-attack", "attack"}
    assert first_reader("attack_method", "early_stop_patience") == STAGE_NAMES.index("tune-attack")


def test_fresh_reruns_everything_and_a_new_input_reruns_what_follows(tmp_path):
    cfg = load_config(env={})
    store = completed_chain(RunStore(tmp_path), cfg)
    assert set(reuse_plan(cfg, store, fresh=True).values()) == {None}
    with store.create("preprocess", cfg, inputs=[store.latest("query")]):   # a newer preprocess run
        pass
    plan = reuse_plan(cfg, store)
    # the newest preprocess run is reused; no tune-model run was built from it
    assert plan["preprocess"].run_id == store.latest("preprocess").run_id
    assert [name for name, run in plan.items() if run is None] == list(STAGE_NAMES[2:])


def test_settings_read_takes_sections_and_single_keys():
    cfg = with_overrides(load_config(env={}), ["db.schema=other"])
    query = next(row for row in STAGES if row.name == "query")
    assert settings_read(config_values(cfg), query) == {
        "query": dataclasses.asdict(cfg.query), "db.schema": "other", "db.dataset": "mimic-iii",
        "db.hosp_schema": "mimiciv_hosp", "db.icu_schema": "mimiciv_icu"}


# ---- the generated CLI ---------------------------------------------------------------------

def subcommands(parser):
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return action.choices, {choice.dest: choice.help for choice in action._choices_actions}


def test_the_cli_exposes_exactly_the_tables_stages_each_with_from_and_help():
    commands, helps = subcommands(build_parser())
    stage_commands = [name for name in commands if name in STAGE_NAMES]
    assert stage_commands == list(STAGE_NAMES)
    assert set(commands) - set(STAGE_NAMES) == {"config", "runs", "db", "show", "run", "demo"}
    for row in STAGES:
        parser = commands[row.name]
        flags = {flag for action in parser._actions for flag in action.option_strings}
        assert ("--from" in flags) == (row.input is not None), row.name
        assert {o.flag for o in row.options} <= flags
        assert helps[row.name] == row.summary and row.summary.strip()
        assert row.summary in parser.format_help().replace("\n", " ").replace("  ", " ") or parser.description
    shows, show_helps = subcommands(commands["show"])
    assert list(shows) == list(STAGE_NAMES)
    for name, parser in shows.items():
        assert show_helps[name].strip()
        flags = {flag for action in parser._actions for flag in action.option_strings}
        assert "--config" in flags


def test_every_command_and_subcommand_has_a_one_line_description():
    def walk(parser, path):
        choices, helps = subcommands(parser) if any(
            a.__class__.__name__ == "_SubParsersAction" for a in parser._actions) else ({}, {})
        for name, child in choices.items():
            assert helps.get(name) and "\n" not in helps[name], path + [name]
            walk(child, path + [name])

    walk(build_parser(), ["icurt"])


def test_from_names_the_stage_of_a_run_of_another_stage(tmp_path, capsys):
    from icurt.cli import main

    cfg = load_config(env={})
    store = completed_chain(RunStore(tmp_path), cfg)
    preprocess_id = store.latest("preprocess").run_id
    capsys.readouterr()
    assert main(["train", "--from", preprocess_id, "--set", f"paths.data={tmp_path}", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"icurt: error: run '{preprocess_id}' is a preprocess run; `icurt train --from` takes a "
                   "tune-model run (`icurt runs tune-model` lists them)")


def test_show_names_the_stage_of_a_run_of_another_stage(tmp_path, capsys):
    from icurt.cli import main

    cfg = load_config(env={})
    store = completed_chain(RunStore(tmp_path), cfg)
    query_id = store.latest("query").run_id
    capsys.readouterr()
    assert main(["show", "train", query_id, "--set", f"paths.data={tmp_path}", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"icurt: error: run '{query_id}' is a query run; `icurt show train` takes a train run "
                   "(`icurt runs train` lists them)")


# ---- each stage reads only the settings its row declares -----------------------------------

class Recorder:
    """The config sections read, per stage, outside the config's own (de)serialising."""

    def __init__(self):
        self.stage = None
        self.read: dict[str, set] = {}

    def note(self, section: str) -> None:
        caller = sys._getframe(2).f_code.co_filename
        own = ("dataclasses.py", "icurt/config.py", "icurt/config_sections.py", "icurt/stage_table.py",
               "icurt/stages/__init__.py")
        if self.stage and not caller.endswith(own):
            self.read.setdefault(self.stage, set()).add(section)


def recording(cfg: Config, recorder: Recorder) -> Config:
    sections = set(typing.get_type_hints(Config))

    class RecordingConfig(Config):
        def __getattribute__(self, name):
            if name in sections:
                recorder.note(name)
            return object.__getattribute__(self, name)

    return RecordingConfig(**{name: getattr(cfg, name) for name in sections})


@pytest.mark.slow
def test_each_stage_reads_only_the_sections_it_declares(tmp_path, pg_dsn, ray_session):
    """The whole pipeline on a tiny synthetic cohort, noting which config sections each stage
    reads: every one is in its row's `reads` or only places the work."""
    from pathlib import Path

    from icurt.db.synth.cohort import run_synth
    from icurt.stages import run_stage

    tiny = Path(__file__).parent / "deploy" / "tiny.toml"
    cfg = with_overrides(load_config(tiny, env={}), [f"db.dsn={pg_dsn}", "db.schema=stagereads",
                                                     f"paths.data={tmp_path}", "ray.device=cpu"])
    run_synth(cfg, stays=cfg.synth.stays, seed=cfg.synth.seed)
    recorder = Recorder()
    watched = recording(cfg, recorder)
    store = RunStore(tmp_path)
    previous = None
    for row in STAGES:
        recorder.stage = row.name
        previous = run_stage(row.name, watched, previous, store=store)
    recorder.stage = None
    for row in STAGES:
        declared = {item.split(".")[0] for item in row.reads}
        assert recorder.read[row.name] - declared <= PLACEMENT_SECTIONS, row.name
        assert declared <= recorder.read[row.name] | {"db"}, row.name   # nothing declared in vain
