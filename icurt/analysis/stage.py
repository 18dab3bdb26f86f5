"""Stage 7, analyze: statistics, PNG plots and one self-contained report.html for an attack run.

Reads the attack run (results.parquet, perturbations.npz, feature_names.json, attack_config.json)
and, through its lineage, the preprocess run (normalisation, cohort, imputation) and the train
run (summary.json). Only the attack run's results are required; a missing summary is named in
the report instead.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from icurt.analysis.plots import all_plots
from icurt.analysis.report import ReportContext, build_report
from icurt.analysis.stats import DIRECTIONS, KINDS, Analysis, analyse, perturbations_from_arrays
from icurt.config import Config
from icurt.errors import IcurtError
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")


def _read_json(path: Path, what: str, missing: dict[str, str], key: str):
    """The JSON at `path`, or None with the reason recorded under `key` in `missing`."""
    if not path.is_file():
        missing[key] = f"{path.name} is missing from {what}"
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        missing[key] = f"{path.name} in {what} could not be read ({exc.__class__.__name__})"
        return None


def _ancestor(store: RunStore, run: Run, stage: str) -> Run | None:
    try:
        return store.ancestor(run, stage)
    except IcurtError:
        return None


def load_attack(run: Run):
    """results.parquet and perturbations.npz of an attack run: (results, {kind: COO}, shape)."""
    results_path, pert_path = run.file("results.parquet"), run.file("perturbations.npz")
    for path in (results_path, pert_path):
        if not path.is_file():
            raise IcurtError(f"attack run '{run.run_id}' has no {path.name}; it is not a complete "
                             "attack run — rerun `icurt attack` or pass another with --from")
    results = pd.read_parquet(results_path)
    with np.load(pert_path, allow_pickle=False) as arrays:
        perturbations, shape = perturbations_from_arrays({k: arrays[k] for k in arrays.files})
    return results, perturbations, shape


def _feature_names(attack: Run, preprocess: Run | None, count: int) -> list[str]:
    for run in (attack, preprocess):
        path = run.file("feature_names.json") if run else None
        if path and path.is_file():
            names = json.loads(path.read_text())
            if len(names) == count:
                return [str(n) for n in names]
    log.warning("no feature_names.json with %d names in the attack or preprocess run; "
                "features are named by index", count)
    return [f"feature_{j}" for j in range(count)]


def _context(attack: Run, preprocess: Run | None, train: Run | None) -> ReportContext:
    missing: dict[str, str] = {}
    ctx = ReportContext(analyze_run_id="", lineage=[], missing=missing)
    ctx.attack_config = _read_json(attack.file("attack_config.json"), f"attack run {attack.run_id}",
                                   missing, "attack_config")
    if preprocess is None:
        for key in ("cohort", "imputation", "normalisation"):
            missing[key] = "no preprocess run in the attack run's lineage"
    else:
        where = f"preprocess run {preprocess.run_id}"
        ctx.cohort = _read_json(preprocess.file("cohort.json"), where, missing, "cohort")
        ctx.imputation = _read_json(preprocess.file("imputation.json"), where, missing, "imputation")
    if train is None:
        missing["cv_summary"] = "no train run in the attack run's lineage"
    else:
        ctx.cv_summary = _read_json(train.file("summary.json"), f"train run {train.run_id}",
                                    missing, "cv_summary")
    return ctx


def write_tables(folder: Path, analysis: Analysis, attack_run_id: str) -> None:
    """headline.json/.csv, distributions, feature/hour stats, susceptibility and clinical CSVs."""
    headline = json.loads(analysis.headline.to_json(orient="records"))
    (folder / "headline.json").write_text(json.dumps({"attack_run": attack_run_id, "rows": headline},
                                                     indent=2, ensure_ascii=False))
    analysis.headline.to_csv(folder / "headline.csv", index=False)
    analysis.distributions.to_csv(folder / "distributions.csv", index=False)
    analysis.feature_stats.to_csv(folder / "feature_stats.csv", index=False)
    analysis.hour_stats.to_csv(folder / "hour_stats.csv", index=False)
    clinical = []
    for direction in DIRECTIONS:
        for kind in KINDS:
            analysis.susceptibility[direction, kind].to_csv(
                folder / f"susceptibility_{direction}_{kind}.csv", index=False)
            clinical.append(analysis.clinical[direction, kind].assign(direction=direction, kind=kind))
    pd.concat(clinical, ignore_index=True).to_csv(folder / "clinical_changes.csv", index=False)


def run(cfg: Config, attack_run: Run | None = None, store: RunStore | None = None) -> Run:
    """Analyse `attack_run` (default: the newest completed attack run) into a new analyze run."""
    store = store or RunStore.from_config(cfg)
    attack_run = attack_run or store.latest("attack")
    results, perturbations, shape = load_attack(attack_run)
    preprocess = _ancestor(store, attack_run, "preprocess")
    ctx = _context(attack_run, preprocess, _ancestor(store, attack_run, "train"))
    normalisation = {}
    if preprocess is not None:
        normalisation = _read_json(preprocess.file("normalisation.json"), f"preprocess run "
                                   f"{preprocess.run_id}", ctx.missing, "normalisation") or {}
    names = _feature_names(attack_run, preprocess, shape[2])
    ctx.top_features = cfg.analyze.top_features
    with store.create("analyze", cfg, inputs=[attack_run]) as writer:
        for piece, why in ctx.missing.items():
            log.warning("analyze: %s not shown (%s)", piece, why)
        analysis = analyse(results, perturbations, shape, names, normalisation, cfg.analyze.top_features)
        write_tables(writer.path, analysis, attack_run.run_id)
        plots = all_plots(analysis)
        for plot in plots:
            (writer.path / plot.name).write_bytes(plot.png)
        ctx.analyze_run_id = writer.run_id
        ctx.lineage = [("analyze", writer.run_id)] + [(r.stage, r.run_id) for r in store.lineage(attack_run)]
        (writer.path / "report.html").write_text(build_report(analysis, ctx, plots), encoding="utf-8")
    log.info("analyze: %d samples, %d plots, report at %s", len(results), len(plots),
             writer.run.file("report.html"))
    return writer.run
