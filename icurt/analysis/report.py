"""One self-contained HTML report: inline CSS, tables, plots as base64 PNG data URIs, no links out."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone

from icurt.analysis.fragility_report import fragility_section
from icurt.analysis.report_html import (CSS, MISSING, figure, fmt, frame, is_missing, note, table, threshold_text,
                                        unit_of)
from icurt.analysis.plots import METRIC_LABEL, Plot
from icurt.analysis.stats import DIRECTIONS, GROUP_TITLE, KINDS, Analysis
from icurt.analysis.summary import (lineage_profile_changes, profile_line,  # noqa: F401 (imported from here)
                                    report_summary)
from icurt.baselines.report_section import baselines_section

CV_METRICS = ("auroc", "auprc", "brier", "f1", "precision", "recall", "accuracy", "val_loss")
@dataclass
class ReportContext:
    """What the report shows beyond the statistics: lineage and the other stages' summaries."""

    analyze_run_id: str
    lineage: list[tuple[str, str]]                # (stage, run_id), analyze first
    cohort: dict | None = None
    imputation: dict | None = None
    cv_summary: dict | None = None
    verdict: dict | None = None                   # the train run's verdict.json (analysis/verdict.py)
    attack_config: dict | None = None
    missing: dict[str, str] = field(default_factory=dict)  # piece -> why it is not shown
    top_features: int = 10
    fragility: object | None = None               # analysis/fragility_report.FragilityView
    profile: str = ""                             # the config's profile (default, reference, ...)
    profile_changes: list[str] | None = None      # settings the lineage changed from it (lineage_profile_changes)
    baselines: dict | None = None                 # the train run's baselines.json (icurt/baselines/compare.py)
    source: dict | None = None                    # the query run's source fingerprint (icurt/db/stamp.py)
    dataset: dict | None = None                   # the query run's dataset: {"dataset", "release", "schemas"}


HOW_TO_READ = """
<p>Each correctly classified sample (48 hours × the features, scaled to [0, 1]) was attacked: the
attack searched for a sparse perturbation P that flips the model's prediction (its predicted class:
"died" when P(died) > 0.5, the argmax of its two outputs). The <b>first</b>
example is the first flip found, the <b>best</b> the lowest-loss one. A <b>direction</b> is the
original label: <b>0 → 1</b> pushes a survivor to "died", <b>1 → 0</b> the reverse. Sizes of P are in
scaled units (1 = the feature's whole scaling range) unless a table says it is in clinical units.
<b>Non-zero elements</b> counts the (hour, feature) values a perturbation changes (P<sub>tj</sub> ≠ 0):
the L0 size of P, and what an L0 budget k bounds.</p>
<p>For hour t and feature j, over the successful samples of a direction: PP<sub>tj</sub> is the
fraction of samples with P<sub>tj</sub> ≠ 0, MP<sub>tj</sub> the largest |P<sub>tj</sub>|,
S<sub>tj</sub> = MP<sub>tj</sub> · PP<sub>tj</sub> the susceptibility of that location (Sun et al.,
KDD 2018); S<sub>j</sub> = Σ<sub>t</sub> S<sub>tj</sub> ranks the features and
H<sub>t</sub> = Σ<sub>j</sub> S<sub>tj</sub> the hours. A high score means the model's decision is
often and strongly changed by editing that measurement. “–” marks a value that does not exist
(a rate with no attacked sample, a mean size where nothing was perturbed); the note column says
why. Success rates count attacked samples only; misclassified samples are skipped, not failed.</p>
"""


def _cohort_section(ctx: ReportContext) -> str:
    parts = ["<h2>Cohort</h2>"]
    if ctx.cohort:
        n, died = ctx.cohort.get("n_samples"), ctx.cohort.get("n_died")
        rate = (f"{100 * died / n:.1f} %" if isinstance(n, (int, float)) and n
                and isinstance(died, (int, float)) else None)
        parts.append(table(["samples", "died", "survived", "death rate"],
                            [[n, died, ctx.cohort.get("n_survived"), rate]]))
        filters = ctx.cohort.get("filters") or {}
        if filters:
            parts.append(table(["filter", "rows left"], [[k, v] for k, v in filters.items()]))
    else:
        parts.append(note(f"Cohort summary not available: {ctx.missing.get('cohort', 'not found')}."))
    if ctx.imputation:
        parts.append("<p>Features never measured during a stay (filled by imputation):</p>")
        parts.append(table(["feature", "stays never measured"],
                            [[k, f"{100 * float(v):.1f} %"] for k, v in ctx.imputation.items()]))
    else:
        parts.append(note(f"Imputation summary not available: {ctx.missing.get('imputation', 'not found')}."))
    return "".join(parts)


def _cv_section(ctx: ReportContext) -> str:
    from icurt.model.summary import rule_text

    parts = ["<h2>Model: cross-validation</h2>"]
    summary = ctx.cv_summary
    if not summary or not summary.get("folds"):
        return "".join(parts) + note(f"Cross-validation summary not available: "
                                      f"{ctx.missing.get('cv_summary', 'summary.json has no folds')}.")
    found = {k for fold in summary["folds"] for k in (fold.get("metrics") or {})}
    metrics = [m for m in CV_METRICS if m in found] + sorted(found - set(CV_METRICS))
    rows = [[f"fold {fold.get('fold')}", fold.get("best_epoch"), threshold_text(fold.get("threshold")),
             *[(fold.get("metrics") or {}).get(m) for m in metrics]] for fold in summary["folds"]]
    mean, sd = summary.get("mean") or {}, summary.get("sd") or {}
    rows.append(["mean ± sd", None, None, *[f"{fmt(mean.get(m))} ± {fmt(sd.get(m))}" for m in metrics]])
    train_mean, train_sd = summary.get("train_mean") or {}, summary.get("train_sd") or {}
    if train_mean:
        rows.append(["training fold, mean ± sd", None, None,
                     *[f"{fmt(train_mean.get(m))} ± {fmt(train_sd.get(m))}" for m in metrics]])
    parts.append(f"<p>{html.escape(rule_text(summary.get('rule') or {}))}.</p>")
    parts.append(table(["fold", "best epoch", "F1 threshold on P(died)", *metrics], rows))
    parts.append("<p>Metrics on each fold's held-out samples at the natural class distribution; F1, "
                 "precision, recall and accuracy at the fold's threshold on P(died) (chosen to maximise F1 on "
                 "its validation data; used for these metrics only: a flip is judged at 0.5, see the "
                 "summary). The mean row averages the folds' own scores; the verdict above pools the folds' "
                 "held-out predictions before computing F1, precision and recall, so the two differ a little. "
                 "The last row measures the same checkpoints on the samples they were fitted on: its "
                 "distance from the held-out rows is the overfitting gap.</p>")
    return "".join(parts)


def _ci(estimate: dict | None) -> str:
    if not estimate:
        return MISSING
    return f"{fmt(estimate.get('value'))} [{fmt(estimate.get('low'))}, {fmt(estimate.get('high'))}]"


def verdict_section(ctx: ReportContext, plots: list[Plot]) -> str:
    """Model quality: the warning banner, AUROC/AUPRC with intervals, Brier, the threshold metrics,
    the oracle and ceiling on a synthetic cohort, the attack targets, the reliability plot."""
    parts = ["<h2>Model quality: the verdict</h2>"]
    v = ctx.verdict
    if not v:
        return "".join(parts) + note(f"No verdict: {ctx.missing.get('verdict', 'the train run has no verdict.json')}.")
    parts += [f'<p class="banner">Warning: {html.escape(w)}.</p>' for w in v.get("warnings") or []]
    t = v.get("at_threshold") or {}
    rows = [["AUROC", _ci(v.get("auroc"))], ["AUPRC", _ci(v.get("auprc"))], ["Brier score", v.get("brier")],
            ["F1 at the fold thresholds", t.get("f1")], ["precision", t.get("precision")], ["recall", t.get("recall")]]
    for name, what in (("oracle", "oracle AUROC (knows the latent severity)"),
                       ("ceiling", "achievable ceiling AUROC (what the measurements carry)")):
        if v.get(name):
            rows += [[what, v[name].get("auroc")], [f"model − {name}", _ci(v[name].get("gap"))]]
    parts.append(table(["measure", "value [95 % interval]"], rows))
    parts.append(f"<p>Over the held-out predictions of all folds: {v.get('n_samples')} samples, "
                 f"{v.get('n_died')} died. AUROC and AUPRC are the mean over the folds (weighted by size) of "
                 "each fold model's score on its own held-out stays; intervals are "
                 f"{v.get('resamples')} bootstrap resamples drawn within each fold and class (percentile "
                 "method). F1, precision and recall count all folds' held-out predictions together, each "
                 "judged at its own fold's F1 threshold; the cross-validation table's mean row instead "
                 "averages each fold's own F1, precision and recall, hence the small difference.</p>")
    config = ctx.attack_config or {}
    if "samples" in config:
        which = ("the held-out samples of fold" if config["samples"] == "held_out" else "all samples; the model of fold")
        parts.append(f"<p>Attack targets: {html.escape(which)} {fmt(config.get('fold'))} "
                     f"({fmt(config.get('fold_choice'))}): {fmt(config.get('num_samples'))} of "
                     f"{fmt(config.get('candidates'))} candidates.</p>")
    parts += [figure(p) for p in plots if p.section == "verdict"]
    return "".join(parts)


def _attack_section(ctx: ReportContext) -> str:
    if not ctx.attack_config:
        return "<h2>Attack settings</h2>" + note(
            f"Attack settings not available: {ctx.missing.get('attack_config', 'not found')}.")
    settings = {k: v for k, v in ctx.attack_config.items() if not isinstance(v, dict)}
    parts = ["<h2>Attack settings</h2>", table(["setting", "value"], [[k, v] for k, v in settings.items()])]
    for name, nested in ctx.attack_config.items():
        if isinstance(nested, dict):
            parts.append(f"<p>{html.escape(name)}:</p>")
            parts.append(table(["setting", "value"], [[k, v] for k, v in nested.items()]) if nested
                         else note(f"The {name} records no settings."))
    return "".join(parts)


def _headline_section(analysis: Analysis) -> str:
    shown = analysis.headline.copy()
    shown["success_rate"] = [None if is_missing(v) else f"{100 * v:.1f} %" for v in shown["success_rate"]]
    return ("<h2>Attack success</h2>" + frame(shown) + "<p>A success is a flip of the predicted class at the "
            "decision threshold P(died) > 0.5; misclassified samples are not attacked.</p>")


def _distribution_section(analysis: Analysis, plots: list[Plot]) -> str:
    parts = ["<h2>Perturbation sizes</h2>"]
    if analysis.distributions.empty:
        return "".join(parts) + note("No successful sample: there are no adversarial examples to measure.")
    shown = analysis.distributions.copy()
    shown["metric"] = shown["metric"].map(METRIC_LABEL)
    parts.append(frame(shown))
    parts += [figure(p) for p in plots if p.section == "distributions"]
    return "".join(parts)


def _where_section(analysis: Analysis, plots: list[Plot]) -> str:
    parts = ["<h2>Where perturbations fall</h2>"]
    if not _any_success(analysis):
        return "".join(parts) + note(NO_SUCCESS)
    for group in DIRECTIONS:
        if not analysis.locations["best", group].n_samples:
            parts.append(note(f"No successful {GROUP_TITLE[group]} sample: its plots are empty."))
    parts += [figure(p) for p in plots if p.section in ("features", "hours", "maps")]
    return "".join(parts)


def _susceptibility_section(analysis: Analysis) -> str:
    parts = ["<h2>Susceptibility by feature and hour</h2>"]
    if not _any_success(analysis):
        return "".join(parts) + note(NO_SUCCESS)
    hours = analysis.hour_stats
    for direction in DIRECTIONS:
        for kind in KINDS:
            title = f"{GROUP_TITLE[direction]}, {kind} example"
            parts.append(f"<h3>{html.escape(title)}</h3>")
            ranked = analysis.susceptibility[direction, kind]
            if ranked.empty:
                parts.append(note(f"No successful {GROUP_TITLE[direction]} sample: no susceptibility."))
                continue
            parts.append(frame(ranked))
            top = hours[(hours["kind"] == kind) & (hours["direction"] == direction)]
            top = top.sort_values("susceptibility", ascending=False, kind="stable").head(5)
            parts.append("<p>Most susceptible hours (H<sub>t</sub>):</p>")
            parts.append(frame(top, ["hour", "susceptibility", "sample_frequency", "nonzero_elements"]))
    parts.append("<p>S_j: the feature's susceptibility score; peak hour: the hour of its largest "
                 "S<sub>tj</sub> (– when never perturbed); H_t: the hour's score.</p>")
    return "".join(parts)


def _clinical_section(analysis: Analysis, ctx: ReportContext) -> str:
    parts = [f"<h2>Most susceptible measurements in clinical units (top {ctx.top_features})</h2>",
             "<p>median |P| (scaled) is the typical size of a non-zero perturbation of the feature; "
             "typical change and largest change are the median and the largest |P| in the feature's "
             "clinical unit: |P| × (scale max − scale min), the range that scaling maps onto [0, 1].</p>"]
    if "normalisation" in ctx.missing:
        parts.append(note(f"No scaling statistics ({ctx.missing['normalisation']}): sizes stay in "
                           "scaled units."))
    if not _any_success(analysis):
        return "".join(parts) + note(NO_SUCCESS)
    for direction in DIRECTIONS:
        for kind in KINDS:
            shown = analysis.clinical[direction, kind].copy()
            shown["unit"] = [unit_of(f, u) for f, u in zip(shown["feature"], shown["unit"])]
            parts.append(f"<h3>{html.escape(GROUP_TITLE[direction])}, {kind} example</h3>")
            parts.append(frame(shown) if len(shown) else
                         note(f"No perturbed feature for {GROUP_TITLE[direction]} ({kind} example)."))
    return "".join(parts)


def _discovery_section(analysis: Analysis, plots: list[Plot]) -> str:
    from icurt.analysis.reference_stats import discovery_summary

    parts = ["<h2>When adversarial examples are found</h2>"]
    if not _any_success(analysis):
        return "".join(parts) + note(NO_SUCCESS)
    if analysis.discovery is None or analysis.discovery.empty:
        parts.append(note("The attack run records no iterations: no discovery curve."))
    else:
        parts.append("<p>Share of attacked samples with a first / best example by iteration (the reference "
                     "study's discovery curve); the last column is the success rate.</p>")
        parts.append(frame(discovery_summary(analysis.discovery)))
    return "".join(parts + [figure(p) for p in plots if p.section == "discovery"])


def _magnitude_and_sign_section(analysis: Analysis, plots: list[Plot]) -> str:
    parts = ["<h2>Size and sign of the perturbations by location</h2>",
             "<p>ganzp<sub>tj</sub>: the mean |P<sub>tj</sub>| of the non-zero elements at hour t and "
             "feature j; sensitivity<sub>tj</sub> = PP<sub>tj</sub> / ganzp<sub>tj</sub>, high where small "
             "perturbations often make an example (the reference study's maps). ↑ counts the non-zero "
             "elements that raised a feature, ↓ those that lowered it.</p>"]
    if not _any_success(analysis):
        return "".join(parts) + note(NO_SUCCESS)
    parts += [figure(p) for p in plots if p.section == "reference_maps"]
    signs = analysis.signs
    if signs is not None and (signs["raised"].sum() + signs["lowered"].sum()):
        columns = {f"{GROUP_TITLE[d]}, {k}": signs[(signs["direction"] == d) & (signs["kind"] == k)]
                   for d in DIRECTIONS for k in KINDS}
        rows = [[name, *[f"{int(t['raised'].iloc[j])} ↑ / {int(t['lowered'].iloc[j])} ↓" for t in columns.values()]]
                for j, name in enumerate(analysis.feature_names)]
        parts.append(table(["feature", *columns], rows))
    parts += [figure(p) for p in plots if p.section == "signs"]
    return "".join(parts)


NO_SUCCESS = "The attack flipped no sample: there is nothing to show here."


def _any_success(analysis: Analysis) -> bool:
    return any(analysis.locations["best", d].n_samples for d in DIRECTIONS)


def build_report(analysis: Analysis, ctx: ReportContext, plots: list[Plot]) -> str:
    """The whole report as one HTML document: a list of sections, the summary first."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lineage = table(["stage", "run id"], [list(item) for item in ctx.lineage])
    body = "".join([
        "<h1>icurt: adversarial attack analysis</h1>",
        f"<p>Analyze run {html.escape(ctx.analyze_run_id)}, written {created}.</p>",
        report_summary(analysis, ctx),
        f"<p><b>{html.escape(profile_line(ctx.profile, ctx.profile_changes))}</b></p>",
        "<h2>How to read this</h2>", HOW_TO_READ,
        "<h2>Lineage</h2>", lineage,
        _cohort_section(ctx), verdict_section(ctx, plots), baselines_section(ctx.baselines),
        _cv_section(ctx), _attack_section(ctx),
        _headline_section(analysis), _distribution_section(analysis, plots),
        _discovery_section(analysis, plots), _where_section(analysis, plots),
        _magnitude_and_sign_section(analysis, plots), _susceptibility_section(analysis),
        _clinical_section(analysis, ctx),
        fragility_section(ctx.fragility, plots),
    ])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>icurt attack analysis {html.escape(ctx.analyze_run_id)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")
