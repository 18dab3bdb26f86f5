"""One self-contained HTML report: inline CSS, tables, plots as base64 PNG data URIs, no links out."""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

import pandas as pd

from icurt.analysis.fragility_report import fragility_section
from icurt.analysis.plots import Plot
from icurt.analysis.stats import DIRECTIONS, GROUP_TITLE, KINDS, METRIC_TITLE, Analysis

COLUMN_TITLES = {
    "success_rate": "success rate", "median_n_nonzero_best": "best: median n_nonzero",
    "median_l1_best": "best: median L1", "median_maxabs_best": "best: median max |P|",
    "score": "S_j", "susceptibility": "H_t", "nonzero_elements": "non-zero elements",
    "sample_frequency": "fraction of samples", "max_abs": "max |P|", "peak_hour": "peak hour",
    "median_abs_p": "median |P| (scaled)", "scale_min": "scale min", "scale_max": "scale max",
    "median_change": "typical change", "max_change": "largest change",
}
CV_METRICS = ("auroc", "auprc", "brier", "f1", "precision", "recall", "accuracy", "val_loss")
MISSING = "–"
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td.text,th.text{text-align:left}
.note{color:#8a5a00;background:#fff7e0;padding:.4em .7em;border-left:3px solid #e0a000}
.banner{color:#7a0000;background:#ffe8e8;padding:.5em .8em;border-left:4px solid #c00000;font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}
"""


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


def _is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fmt(value) -> str:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python
    if _is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list]) -> str:
    def cell(tag, value):
        text_class = ' class="text"' if isinstance(value, str) and tag == "td" else ""
        return f"<{tag}{text_class}>{_fmt(value)}</{tag}>"

    head = "".join(cell("th", COLUMN_TITLES.get(h, h)) for h in headers)
    body = "".join("<tr>" + "".join(cell("td", v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _frame(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    columns = columns or list(df.columns)
    rows = [list(row) for row in df[columns].itertuples(index=False)]
    return _table(columns, rows)


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (f'<figure><img alt="{html.escape(plot.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(plot.caption)}</figcaption></figure>")


HOW_TO_READ = """
<p>Each correctly classified sample (48 hours × the features, scaled to [0, 1]) was attacked: the
attack searched for a sparse perturbation P that flips the model's prediction. The <b>first</b>
example is the first flip found, the <b>best</b> the lowest-loss one. A <b>direction</b> is the
original label: <b>0 → 1</b> pushes a survivor to "died", <b>1 → 0</b> the reverse. Sizes of P are in
scaled units (1 = the feature's whole scaling range) unless a table says it is in clinical units.</p>
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
        parts.append(_table(["samples", "died", "survived", "death rate"],
                            [[n, died, ctx.cohort.get("n_survived"), rate]]))
        filters = ctx.cohort.get("filters") or {}
        if filters:
            parts.append(_table(["filter", "rows left"], [[k, v] for k, v in filters.items()]))
    else:
        parts.append(_note(f"Cohort summary not available: {ctx.missing.get('cohort', 'not found')}."))
    if ctx.imputation:
        parts.append("<p>Features never measured during a stay (filled by imputation):</p>")
        parts.append(_table(["feature", "stays never measured"],
                            [[k, f"{100 * float(v):.1f} %"] for k, v in ctx.imputation.items()]))
    else:
        parts.append(_note(f"Imputation summary not available: {ctx.missing.get('imputation', 'not found')}."))
    return "".join(parts)


def _cv_section(ctx: ReportContext) -> str:
    from icurt.model.summary import rule_text

    parts = ["<h2>Model: cross-validation</h2>"]
    summary = ctx.cv_summary
    if not summary or not summary.get("folds"):
        return "".join(parts) + _note(f"Cross-validation summary not available: "
                                      f"{ctx.missing.get('cv_summary', 'summary.json has no folds')}.")
    found = {k for fold in summary["folds"] for k in (fold.get("metrics") or {})}
    metrics = [m for m in CV_METRICS if m in found] + sorted(found - set(CV_METRICS))
    rows = [[f"fold {fold.get('fold')}", fold.get("best_epoch"), fold.get("threshold"),
             *[(fold.get("metrics") or {}).get(m) for m in metrics]] for fold in summary["folds"]]
    mean, sd = summary.get("mean") or {}, summary.get("sd") or {}
    rows.append(["mean ± sd", None, None, *[f"{_fmt(mean.get(m))} ± {_fmt(sd.get(m))}" for m in metrics]])
    train_mean, train_sd = summary.get("train_mean") or {}, summary.get("train_sd") or {}
    if train_mean:
        rows.append(["training fold, mean ± sd", None, None,
                     *[f"{_fmt(train_mean.get(m))} ± {_fmt(train_sd.get(m))}" for m in metrics]])
    parts.append(f"<p>{html.escape(rule_text(summary.get('rule') or {}))}.</p>")
    parts.append(_table(["fold", "best epoch", "threshold", *metrics], rows))
    parts.append("<p>Metrics on each fold's held-out samples at the natural class distribution; F1, "
                 "precision, recall and accuracy at the fold's threshold (chosen to maximise F1 on its "
                 "validation data). The last row measures the same checkpoints on the samples they were "
                 "fitted on: its distance from the held-out rows is the overfitting gap.</p>")
    return "".join(parts)


def _ci(estimate: dict | None) -> str:
    if not estimate:
        return MISSING
    return f"{_fmt(estimate.get('value'))} [{_fmt(estimate.get('low'))}, {_fmt(estimate.get('high'))}]"


def verdict_section(ctx: ReportContext, plots: list[Plot]) -> str:
    """Model quality: the warning banner, AUROC/AUPRC with intervals, Brier, the threshold metrics,
    the oracle and ceiling on a synthetic cohort, the attack targets, the reliability plot."""
    parts = ["<h2>Model quality: the verdict</h2>"]
    v = ctx.verdict
    if not v:
        return "".join(parts) + _note(f"No verdict: {ctx.missing.get('verdict', 'the train run has no verdict.json')}.")
    parts += [f'<p class="banner">Warning: {html.escape(w)}.</p>' for w in v.get("warnings") or []]
    t = v.get("at_threshold") or {}
    rows = [["AUROC", _ci(v.get("auroc"))], ["AUPRC", _ci(v.get("auprc"))], ["Brier score", v.get("brier")],
            ["F1 at the fold thresholds", t.get("f1")], ["precision", t.get("precision")], ["recall", t.get("recall")]]
    for name, what in (("oracle", "oracle AUROC (knows the latent severity)"),
                       ("ceiling", "achievable ceiling AUROC (what the measurements carry)")):
        if v.get(name):
            rows += [[what, v[name].get("auroc")], [f"model − {name}", _ci(v[name].get("gap"))]]
    parts.append(_table(["measure", "value [95 % interval]"], rows))
    parts.append(f"<p>Over the held-out predictions of all folds: {v.get('n_samples')} samples, "
                 f"{v.get('n_died')} died. AUROC and AUPRC are the mean over the folds (weighted by size) of "
                 "each fold model's score on its own held-out stays; intervals are "
                 f"{v.get('resamples')} bootstrap resamples drawn within each fold and class (percentile "
                 "method).</p>")
    config = ctx.attack_config or {}
    if "samples" in config:
        which = ("the held-out samples of fold" if config["samples"] == "held_out" else "all samples; the model of fold")
        parts.append(f"<p>Attack targets: {html.escape(which)} {_fmt(config.get('fold'))} "
                     f"({_fmt(config.get('fold_choice'))}): {_fmt(config.get('num_samples'))} of "
                     f"{_fmt(config.get('candidates'))} candidates.</p>")
    parts += [_figure(p) for p in plots if p.section == "verdict"]
    return "".join(parts)


def _attack_section(ctx: ReportContext) -> str:
    if not ctx.attack_config:
        return "<h2>Attack settings</h2>" + _note(
            f"Attack settings not available: {ctx.missing.get('attack_config', 'not found')}.")
    return "<h2>Attack settings</h2>" + _table(["setting", "value"], [[k, v] for k, v in ctx.attack_config.items()])


def _headline_section(analysis: Analysis) -> str:
    shown = analysis.headline.copy()
    shown["success_rate"] = [None if _is_missing(v) else f"{100 * v:.1f} %" for v in shown["success_rate"]]
    return "<h2>Attack success</h2>" + _frame(shown)


def _distribution_section(analysis: Analysis, plots: list[Plot]) -> str:
    parts = ["<h2>Perturbation sizes</h2>"]
    if analysis.distributions.empty:
        parts.append(_note("No successful sample: there are no adversarial examples to measure."))
    else:
        shown = analysis.distributions.copy()
        shown["metric"] = shown["metric"].map(METRIC_TITLE)
        parts.append(_frame(shown))
    parts += [_figure(p) for p in plots if p.section == "distributions"]
    return "".join(parts)


def _where_section(analysis: Analysis, plots: list[Plot]) -> str:
    parts = ["<h2>Where perturbations fall</h2>"]
    for group in DIRECTIONS:
        if not analysis.locations["best", group].n_samples:
            parts.append(_note(f"No successful {GROUP_TITLE[group]} sample: its plots are empty."))
    parts += [_figure(p) for p in plots if p.section in ("features", "hours", "maps")]
    return "".join(parts)


def _susceptibility_section(analysis: Analysis) -> str:
    parts = ["<h2>Susceptibility by feature and hour</h2>"]
    hours = analysis.hour_stats
    for direction in DIRECTIONS:
        for kind in KINDS:
            title = f"{GROUP_TITLE[direction]}, {kind} example"
            parts.append(f"<h3>{html.escape(title)}</h3>")
            ranked = analysis.susceptibility[direction, kind]
            if ranked.empty:
                parts.append(_note(f"No successful {GROUP_TITLE[direction]} sample: no susceptibility."))
                continue
            parts.append(_frame(ranked))
            top = hours[(hours["kind"] == kind) & (hours["direction"] == direction)]
            top = top.sort_values("susceptibility", ascending=False, kind="stable").head(5)
            parts.append("<p>Most susceptible hours (H<sub>t</sub>):</p>")
            parts.append(_frame(top, ["hour", "susceptibility", "sample_frequency", "nonzero_elements"]))
    parts.append("<p>S_j: the feature's susceptibility score; peak hour: the hour of its largest "
                 "S<sub>tj</sub> (– when never perturbed); H_t: the hour's score.</p>")
    return "".join(parts)


def _clinical_section(analysis: Analysis, ctx: ReportContext) -> str:
    parts = [f"<h2>Most susceptible measurements in clinical units (top {ctx.top_features})</h2>",
             "<p>median |P| (scaled) is the typical size of a non-zero perturbation of the feature; "
             "typical change and largest change are the median and the largest |P| in the feature's "
             "clinical unit: |P| × (scale max − scale min), the range that scaling maps onto [0, 1].</p>"]
    if "normalisation" in ctx.missing:
        parts.append(_note(f"No scaling statistics ({ctx.missing['normalisation']}): sizes stay in "
                           "scaled units."))
    for direction in DIRECTIONS:
        for kind in KINDS:
            table = analysis.clinical[direction, kind]
            parts.append(f"<h3>{html.escape(GROUP_TITLE[direction])}, {kind} example</h3>")
            parts.append(_frame(table) if len(table) else
                         _note(f"No perturbed feature for {GROUP_TITLE[direction]} ({kind} example)."))
    return "".join(parts)


def _discovery_section(analysis: Analysis, plots: list[Plot]) -> str:
    from icurt.analysis.reference_stats import discovery_summary

    parts = ["<h2>When adversarial examples are found</h2>"]
    if analysis.discovery is None or analysis.discovery.empty:
        parts.append(_note("The attack run records no iterations: no discovery curve."))
    else:
        parts.append("<p>Share of attacked samples with a first / best example by iteration (the reference "
                     "study's discovery curve); the last column is the success rate.</p>")
        parts.append(_frame(discovery_summary(analysis.discovery)))
    return "".join(parts + [_figure(p) for p in plots if p.section == "discovery"])


def _magnitude_and_sign_section(analysis: Analysis, plots: list[Plot]) -> str:
    parts = ["<h2>Size and sign of the perturbations by location</h2>",
             "<p>ganzp<sub>tj</sub>: the mean |P<sub>tj</sub>| of the non-zero elements at hour t and "
             "feature j; sensitivity<sub>tj</sub> = PP<sub>tj</sub> / ganzp<sub>tj</sub>, high where small "
             "perturbations often make an example (the reference study's maps). ↑ counts the non-zero "
             "elements that raised a feature, ↓ those that lowered it.</p>"]
    parts += [_figure(p) for p in plots if p.section == "reference_maps"]
    signs = analysis.signs
    if signs is not None and (signs["raised"].sum() + signs["lowered"].sum()):
        columns = {f"{GROUP_TITLE[d]}, {k}": signs[(signs["direction"] == d) & (signs["kind"] == k)]
                   for d in DIRECTIONS for k in KINDS}
        rows = [[name, *[f"{int(t['raised'].iloc[j])} ↑ / {int(t['lowered'].iloc[j])} ↓" for t in columns.values()]]
                for j, name in enumerate(analysis.feature_names)]
        parts.append(_table(["feature", *columns], rows))
    parts += [_figure(p) for p in plots if p.section == "signs"]
    return "".join(parts)


def profile_line(profile: str) -> str:
    """The report's line naming the profile its config came from."""
    what = {"reference": " (the reference study's choices, configs/reference.toml)",
            "default": " (icurt's method, configs/default.toml)"}.get(profile, "")
    return f"Profile: {profile or 'unknown'}{what}"


def build_report(analysis: Analysis, ctx: ReportContext, plots: list[Plot]) -> str:
    """The whole report as one HTML document."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lineage = _table(["stage", "run id"], [list(item) for item in ctx.lineage])
    body = "".join([
        "<h1>icurt: adversarial attack analysis</h1>",
        f"<p>Analyze run {html.escape(ctx.analyze_run_id)}, written {created}.</p>",
        f"<p><b>{html.escape(profile_line(ctx.profile))}</b></p>",
        "<h2>How to read this</h2>", HOW_TO_READ,
        "<h2>Lineage</h2>", lineage,
        _cohort_section(ctx), verdict_section(ctx, plots), _cv_section(ctx), _attack_section(ctx),
        _headline_section(analysis), _distribution_section(analysis, plots),
        _discovery_section(analysis, plots), _where_section(analysis, plots),
        _magnitude_and_sign_section(analysis, plots), _susceptibility_section(analysis),
        _clinical_section(analysis, ctx),
        fragility_section(ctx.fragility, plots, _table, _figure, _note),
    ])
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>icurt attack analysis {html.escape(ctx.analyze_run_id)}</title>"
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def headline_text(headline: pd.DataFrame) -> str:
    """The headline table for the terminal: aligned columns, shares as percentages, sizes with units,
    and a legend saying what each column counts."""
    titles = ["direction", "samples", "attacked", "adversarial", "success", "cells changed",
              "L1 (scaled)", "max |P| (scaled)", "note"]
    rows = []
    for row in headline.to_dict(orient="records"):
        samples = row.get("samples", row["attacked"] + row["skipped"])
        rows.append([str(row["direction"]), f"{samples:,}", _count_share(row["attacked"], samples),
                     f"{row['successful']:,}", _percent(row["success_rate"]),
                     _median(row["median_n_nonzero_best"], "{:.3g}"), _median(row["median_l1_best"], "{:.3f}"),
                     _median(row["median_maxabs_best"], "{:.3f}"), str(row.get("note") or "")])
    widths = [max(len(t), *(len(r[i]) for r in rows)) for i, t in enumerate(titles)]
    right = {1, 2, 3, 4, 5, 6, 7}
    line = lambda cells: "  ".join(c.rjust(w) if i in right else c.ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(titles)] + [line(r) for r in rows] + [
        "attacked: samples the attack ran on (% of the samples; the others, e.g. misclassified ones, were "
        "skipped); adversarial: those it flipped; success: adversarial / attacked.",
        "The last three columns are medians over the adversarial samples' best examples: cells changed = "
        "(hour, feature) values altered; L1 = sum of |change|; max |P| = largest change; changes in scaled "
        "units (each feature min-max scaled to [0, 1] between its [preprocess].winsorize_percentiles)."])


def _count_share(count, total) -> str:
    return f"{count:,} ({100 * count / total:.1f}%)" if total else f"{count:,}"


def _percent(value) -> str:
    return MISSING if _is_missing(value) else f"{100 * value:.1f}%"


def _median(value, form: str) -> str:
    return MISSING if _is_missing(value) else form.format(value)
