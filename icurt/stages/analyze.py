"""Stage 8, `icurt analyze`: statistics, PNG plots and one self-contained report.html for a fragility
run and the attack run it swept.

Reads the attack run (results.parquet, perturbations.npz, feature_names.json, attack_config.json)
and, through its lineage, the preprocess run (normalisation, cohort, imputation) and the train
run (summary.json). Only the attack run's results are required; a missing summary is named in
the report instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

from icurt.config import Config
from icurt.errors import IcurtError
from icurt.files import read_json, write_text
from icurt.runs import Run, RunStore

log = logging.getLogger("icurt")
STAGE, REPORT_FILE = "analyze", "report.html"


def _read_json(path: Path, what: str, missing: dict[str, str], key: str):
    """The JSON at `path`, or None with the reason recorded under `key` in `missing`."""
    if not path.is_file():
        missing[key] = f"{path.name} is missing from {what}"
        return None
    try:
        return read_json(path)
    except (OSError, IcurtError) as exc:
        missing[key] = f"{path.name} in {what} could not be read ({exc})"
        return None


def _ancestor(store: RunStore, run: Run, stage: str) -> Run | None:
    try:
        return store.ancestor(run, stage)
    except IcurtError:
        return None


def _feature_names(recorded: list | None, preprocess: Run | None, count: int) -> list[str]:
    path = preprocess.file("feature_names.json") if preprocess else None
    for names in (recorded, read_json(path) if path and path.is_file() else None):
        if names and len(names) == count:
            return [str(n) for n in names]
    log.warning("no feature_names.json with %d names in the attack or preprocess run; "
                "features are named by index", count)
    return [f"feature_{j}" for j in range(count)]


def _context(attack: Run, attack_config: dict | None, preprocess: Run | None, train: Run | None):
    from icurt.analysis.report import ReportContext

    missing: dict[str, str] = {}
    ctx = ReportContext(analyze_run_id="", lineage=[], missing=missing)
    ctx.attack_config = attack_config
    if attack_config is None:
        missing["attack_config"] = f"attack_config.json is missing from attack run {attack.run_id}"
    if preprocess is None:
        for key in ("cohort", "imputation", "normalisation"):
            missing[key] = "no preprocess run in the attack run's lineage"
    else:
        where = f"preprocess run {preprocess.run_id}"
        ctx.cohort = _read_json(preprocess.file("cohort.json"), where, missing, "cohort")
        ctx.imputation = _read_json(preprocess.file("imputation.json"), where, missing, "imputation")
    if train is None:
        missing["cv_summary"] = missing["verdict"] = "no train run in the attack run's lineage"
    else:
        ctx.cv_summary = _read_json(train.file("summary.json"), f"train run {train.run_id}",
                                    missing, "cv_summary")
        ctx.verdict = _read_json(train.file("verdict.json"), f"train run {train.run_id}", missing, "verdict")
        ctx.baselines = _read_json(train.file("baselines.json"), f"train run {train.run_id}", missing, "baselines")
    return ctx


def _verdict_plots(verdict: dict | None) -> list:
    """The reliability plot of the train run's verdict (none without a verdict or a curve)."""
    from icurt.analysis.plots import Plot
    from icurt.analysis.verdict import reliability_png

    png = reliability_png(verdict) if verdict else None
    caption = ("Reliability of the held-out P(died): mean prediction (x) against the observed death rate (y) "
               "per tenth of the predictions; points below the diagonal mean the model overestimates the "
               "risk (predicts more deaths than occur, expected after training on oversampled deaths), "
               "points above it that it underestimates the risk")
    return [Plot("reliability.png", "verdict", caption, png)] if png else []


def run(cfg: Config, input_run: Run | None = None, *, store: RunStore) -> Run:
    """Analyse a fragility run and the attack run it swept (default: the newest fragility run)."""
    from icurt.analysis.fragility_report import build_view, fragility_plots
    from icurt.analysis.plots import all_plots
    from icurt.analysis.report import build_report, lineage_profile_changes
    from icurt.analysis.stats import analyse
    from icurt.analysis.tables import write_tables
    from icurt.attack.fragility_run import read_fragility_run
    from icurt.attack.results import read_attack_run
    from icurt.config import profile_changes
    from icurt.stages import stage as stage_row
    from icurt.dataset import load_dataset
    from icurt.resume import input_run as resolve_input

    fragility_run = resolve_input(store, STAGE, input_run)
    fragility = read_fragility_run(fragility_run.path)
    attack_run = store.ancestor(fragility_run, "attack")
    attack = read_attack_run(attack_run.path)
    preprocess = _ancestor(store, attack_run, "preprocess")
    ctx = _context(attack_run, attack.config, preprocess, _ancestor(store, attack_run, "train"))
    query = _ancestor(store, attack_run, "query")
    if query is not None:
        ctx.source, ctx.dataset = query.meta.get("source"), query.meta.get("dataset")
    elif preprocess is not None:   # a preprocess run copies its query run's dataset
        ctx.dataset = preprocess.meta.get("dataset")
    normalisation = {}
    if preprocess is not None:
        normalisation = _read_json(preprocess.file("normalisation.json"), f"preprocess run "
                                   f"{preprocess.run_id}", ctx.missing, "normalisation") or {}
    names = _feature_names(attack.feature_names, preprocess, attack.shape[2])
    ctx.top_features = cfg.analyze.top_features
    features = None
    if preprocess is not None and normalisation:
        try:
            features = load_dataset(preprocess.path).features
        except IcurtError as exc:
            ctx.missing["fragility_examples"] = str(exc)
    ctx.fragility = build_view(fragility, features, names, normalisation)
    ctx.profile = cfg.profile.name
    ctx.profile_changes = lineage_profile_changes(
        [(STAGE, {"profile": cfg.profile.name, "profile_changes": profile_changes(cfg, stage_row(STAGE).reads)})]
        + [(r.stage, r.meta) for r in store.lineage(fragility_run)], cfg.profile.name)
    # analyze records what its whole lineage changed from the profile (show and the report name it)
    with store.create(STAGE, cfg, inputs=[fragility_run],
                      extra_meta={"profile_changes": ctx.profile_changes}) as writer:
        for piece, why in ctx.missing.items():
            log.warning("analyze: %s not shown (%s)", piece, why)
        analysis = analyse(attack.table, attack.perturbations, attack.shape, names, normalisation,
                           cfg.analyze.top_features, iterations=(attack.config or {}).get("iterations"))
        write_tables(writer.path, analysis, attack_run.run_id, fragility.summary.get("headline", {}))
        plots = (all_plots(analysis) + _verdict_plots(ctx.verdict)
                 + (fragility_plots(ctx.fragility) if ctx.fragility else []))
        for warning in (ctx.verdict or {}).get("warnings") or []:
            log.warning("model quality: %s", warning)
        for plot in plots:
            (writer.path / plot.name).write_bytes(plot.png)
        ctx.analyze_run_id = writer.run_id
        ctx.lineage = [("analyze", writer.run_id)] + [(r.stage, r.run_id) for r in store.lineage(fragility_run)]
        write_text(writer.path / REPORT_FILE, build_report(analysis, ctx, plots))
    log.info("analyze: %d samples, %d plots, report at %s", len(attack.table), len(plots),
             writer.run.file(REPORT_FILE))
    return writer.run


def show(run: Run, cfg: Config) -> str:
    """The data's source, the headline table, the fragility sentences, the best baseline beside the
    BiLSTM (and its banner), the profile line and the report's path."""
    from icurt.analysis.headline import headline_text
    from icurt.analysis.report import profile_line
    from icurt.analysis.summary import baselines_text, data_source_text
    from icurt.analysis.tables import read_fragility_headline, read_headline
    from icurt.baselines.compare import read_baselines

    store = RunStore.from_config(cfg)
    query, preprocess, train = (_ancestor(store, run, stage) for stage in ("query", "preprocess", "train"))
    source = query.meta.get("source") if query else None
    dataset = (query or preprocess).meta.get("dataset") if (query or preprocess) else None
    baselines = read_baselines(train.path) if train else None
    sentences = [f"{h['sentence']}." for h in read_fragility_headline(run.path).values()]
    return "\n".join([f"data: {data_source_text(source, dataset)}", headline_text(read_headline(run.path)),
                      *sentences, f"baselines: {baselines_text(baselines)}",
                      profile_line(run.meta.get("profile", ""), run.meta.get("profile_changes")),
                      f"report: {run.file(REPORT_FILE).resolve()}"])
