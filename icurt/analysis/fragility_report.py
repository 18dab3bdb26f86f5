"""The fragility part of the report: the headline, success-vs-budget curves with 95 % intervals,
the distribution of each sample's minimal k, and worked patient examples in clinical units."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from icurt.analysis.fragility import DIRECTIONS, changes_table, minimal_budgets, success_curves, worked_examples
from icurt.analysis.report_html import figure, note, number, table, unit_of
from icurt.analysis.plots import COLORS, Plot, _new_figure, _png, _say_empty
from icurt.analysis.stats import CLINICAL_UNITS, GROUP_TITLE
from icurt.analysis.summary import DECISION_THRESHOLD
from icurt.attack.budget import to_clinical
from icurt.attack.fragility_run import FragilityRun, example_of

CELL_STYLE = {"measured": "-", "all": "--"}
CURVE_TITLE = {"k": "L0 budget k (non-zero elements), each |change| ≤ its clinical step",
               "linf": "L∞ scale s (|change| ≤ s × clinical step), any number of non-zero elements"}


@dataclass
class WorkedExample:
    stay_id: int
    label: int
    minimal_k: float
    p_died_before: float
    p_died_after: float
    changes: pd.DataFrame                       # hour, feature, before, after, unit
    trajectories: dict = field(default_factory=dict)   # feature -> (before (T,), after (T,)) clinical


@dataclass
class FragilityView:
    """What the report shows of a fragility run."""

    summary: dict
    curves: pd.DataFrame
    minimal: pd.DataFrame
    examples: list[WorkedExample]


def build_view(run: FragilityRun, features: np.ndarray | None, feature_names: list[str], normalisation: dict,
               count: int = 3) -> FragilityView:
    """The curves, minimal budgets and `count` worked examples of a fragility run.

    `features` (N, T, F) are the dataset's scaled inputs, indexed by sample_index (None: no
    worked examples)."""
    curves = success_curves(run.sweep)
    cells = "measured" if (run.sweep["cells"] == "measured").any() else "all"
    minimal = minimal_budgets(run.sweep, "k", cells)
    cell_index = {(c["curve"], c["cells"], c["budget"]): i for i, c in enumerate(run.summary["cells"])}
    examples = []
    for sample in worked_examples(minimal, count) if features is not None else []:
        row = minimal[minimal["sample_index"] == sample].iloc[0]
        cell = cell_index["k", cells, row["minimal_budget"]]
        swept = run.sweep[(run.sweep["sample_index"] == sample) & (run.sweep["cell"] == cell)].iloc[0]
        x = features[sample]
        p = example_of(run, cell, sample, x.shape)
        before = to_clinical(x, normalisation, feature_names)
        after = to_clinical(np.clip(x + p, 0, 1), normalisation, feature_names)
        changes = changes_table(p, feature_names, before, after, CLINICAL_UNITS)
        trajectories = {name: (before[:, feature_names.index(name)], after[:, feature_names.index(name)])
                        for name in dict.fromkeys(changes["feature"])}
        examples.append(WorkedExample(int(row["stay_id"]), int(row["label"]), float(row["minimal_budget"]),
                                      float(swept["p_died_before"]), float(swept["p_died_after"]), changes,
                                      trajectories))
    return FragilityView(run.summary, curves, minimal, examples)


def curves_plot(view: FragilityView) -> Plot:
    fig, axes = _new_figure(11, 4.2, 1, 2)
    for ax, curve in zip(axes, ("k", "linf")):
        part = view.curves[view.curves["curve"] == curve]
        if part.empty:
            _say_empty(ax)
            continue
        for (direction, cells), rows in part.groupby(["direction", "cells"]):
            rows = rows.sort_values("budget")
            ax.plot(rows["budget"], rows["success_rate"], CELL_STYLE[cells], marker="o", color=COLORS[direction],
                    label=f"{GROUP_TITLE[direction]}, {cells} cells")
            ax.fill_between(rows["budget"], rows["ci_low"], rows["ci_high"], color=COLORS[direction], alpha=0.12)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(CURVE_TITLE[curve])
        ax.set_ylabel("share of attacked samples flipped")
        ax.legend(frameon=False, fontsize=8, loc="best")
    return Plot("fragility_curves.png", "fragility", "Success rate against the budget, per direction, on "
                "measured cells only (solid) or any cell (dashed); bands are 95 % Wilson intervals.", _png(fig))


def minimal_k_plot(view: FragilityView) -> Plot:
    fig, axes = _new_figure(8, 3.6)
    ax = axes[0]
    budgets = sorted(view.curves.loc[view.curves["curve"] == "k", "budget"].unique())
    if not budgets:
        _say_empty(ax)
    else:
        labels = [f"{b:g}" for b in budgets] + ["not flipped"]
        x = np.arange(len(labels))
        for offset, direction in zip((-0.2, 0.2), DIRECTIONS):
            part = view.minimal[view.minimal["label"] == DIRECTIONS[direction]]["minimal_budget"]
            counts = [int((part == b).sum()) for b in budgets] + [int(part.isna().sum())]
            ax.bar(x + offset, counts, width=0.4, color=COLORS[direction], label=GROUP_TITLE[direction])
        ax.set_xticks(x, labels)
        ax.set_xlabel("each sample's minimal k (non-zero elements, each within its clinical step)")
        ax.set_ylabel("samples")
        ax.legend(frameon=False)
    return Plot("fragility_minimal_k.png", "fragility", "How many non-zero elements each sample needed before "
                "its prediction flipped (the smallest k of the sweep), per direction.", _png(fig))


def example_plot(index: int, example: WorkedExample) -> Plot:
    names = list(example.trajectories)
    fig, axes = _new_figure(9, 1.9 * max(1, len(names)) + 0.6, max(1, len(names)), 1)
    for ax, name in zip(axes, names):
        before, after = example.trajectories[name]
        hours = np.arange(len(before))
        ax.plot(hours, before, color="#555", label="as measured (after preprocessing)")
        changed = example.changes[example.changes["feature"] == name]
        ax.plot(hours, after, "--", color="#d62728", label="adversarial")
        ax.scatter(changed["hour"], changed["after"], color="#d62728", zorder=3)
        ax.set_ylabel(f"{name} ({unit_of(name)})")
        ax.legend(frameon=False, fontsize=8)
    axes[-1].set_xlabel("hour of the observation window")
    return Plot(f"fragility_example_{index}.png", "fragility", f"ICU stay {example.stay_id}: the measurements "
                "the example changes, over the 48 h window, before and after.", _png(fig))


def fragility_plots(view: FragilityView) -> list[Plot]:
    return [curves_plot(view), minimal_k_plot(view), *(example_plot(i, e) for i, e in enumerate(view.examples, 1))]


def predicted(p_died: float) -> str:
    """The predicted class of P(died) at the attack's decision threshold (argmax of two logits)."""
    return "died" if p_died > DECISION_THRESHOLD else "survived"


def probability(p: float) -> str:
    """P(died) to 3 decimals, or more where 3 would round it onto the decision threshold."""
    for digits in range(3, 7):
        text = f"{p:.{digits}f}"
        if p == DECISION_THRESHOLD or float(text) != DECISION_THRESHOLD:
            return text
    return text


def example_sentence(example: WorkedExample) -> str:
    """One worked example in words: its P(died) before and after against the 0.5 decision threshold."""
    return (f"ICU stay {example.stay_id} ({'died' if example.label else 'survived'}): P(died) "
            f"{probability(example.p_died_before)} → {probability(example.p_died_after)} (decision threshold "
            f"{DECISION_THRESHOLD:g}: predicted {predicted(example.p_died_before)} → predicted "
            f"{predicted(example.p_died_after)}) with {len(example.changes)} non-zero element(s) "
            f"(minimal k {number(example.minimal_k)}).")


def fragility_section(view: FragilityView | None, plots: list[Plot]) -> str:
    """The report's fragility section."""
    parts = ["<h2>Fragility under a budget</h2>"]
    if view is None:
        return "".join(parts) + note("No fragility run in this analysis' lineage.")
    headlines = view.summary.get("headline", {})
    parts += [f"<p><b>{html.escape(h['sentence'])}.</b></p>" for h in headlines.values()]
    if headlines:
        parts.append("<p>These count the samples the attack run attacked (correctly classified ones of its "
                     "fold; see the summary's Samples attacked), not the whole cohort. A flip is a change of "
                     f"the predicted class at P(died) > {DECISION_THRESHOLD:g}.</p>")
    parts.append("<p>A budget bounds the adversarial change: at most k non-zero elements (changed hour × "
                 "feature values, L0), "
                 "each change at most s × the feature's clinical step (L∞, the steps below, in clinical "
                 "units), on measured cells only (never an interpolated or imputed value) or on any cell. "
                 "An example found under a smaller budget also satisfies every larger one, so the curves "
                 "never fall. Intervals are 95 % Wilson intervals.</p>")
    parts.append(baseline_comparison(view.summary.get("baseline")))
    steps = view.summary.get("clinical_step", {})
    parts.append(table(["feature", "clinical step", "unit"],
                       [[name, value, unit_of(name)] for name, value in steps.items()]))
    parts += [figure(p) for p in plots if p.section == "fragility" and not p.name.startswith("fragility_example")]
    shown = view.curves.copy()
    shown["direction"] = shown["direction"].map(lambda d: GROUP_TITLE.get(d, d))
    for column in ("success_rate", "ci_low", "ci_high"):
        shown[column] = [None if pd.isna(v) else f"{100 * v:.1f} %" for v in shown[column]]
    parts.append(table(list(shown.columns), [list(r) for r in shown.itertuples(index=False)]))
    parts.append("<h3>Worked examples</h3>")
    if not view.examples:
        return "".join(parts) + note("No sample flipped within the L0 budgets of the sweep.")
    parts.append(f"<p>Predicted class at the decision threshold P(died) > {DECISION_THRESHOLD:g} (the argmax "
                 "of the model's two outputs), the rule the attack flips.</p>")
    for index, example in enumerate(view.examples, 1):
        parts.append(f"<p>{html.escape(example_sentence(example))}</p>")
        parts.append(table(["hour", "feature", "before", "after", "unit"],
                           [[r.hour, r.feature, r.before, r.after, unit_of(r.feature, r.unit)]
                            for r in example.changes.itertuples(index=False)]))
        parts += [figure(p) for p in plots if p.name == f"fragility_example_{index}.png"]
    return "".join(parts)


def baseline_comparison(baseline: dict | None) -> str:
    """The BiLSTM's and the logistic-regression baseline's L0 curves side by side on the samples
    both classify correctly (icurt/baselines/fragility.py), or "" for a run without one."""
    if not baseline:
        return ""
    rate = lambda r, name: f"{100 * r[name + '_rate']:.1f} % ({100 * r[name + '_ci_low']:.1f}–{100 * r[name + '_ci_high']:.1f} %)"  # noqa: E731
    rows = [[r["budget"], GROUP_TITLE.get(r["direction"], r["direction"]), r["samples"], rate(r, "bilstm"),
             rate(r, "baseline")] for r in baseline["rows"] if r["samples"]]
    parts = [f"<h3>Beside a {html.escape(baseline['model'])}</h3>",
             *[f"<p>{html.escape(s[0].upper() + s[1:])}.</p>" for s in baseline["headline"].values()],
             "<p>The same budgets and attack settings (tuned on the BiLSTM) on the fold's "
             f"{html.escape(baseline['model'])} baseline (fitted on the same training fold), over the "
             f"{baseline['samples']:,} swept samples both models classify correctly.</p>"]
    if rows:
        parts.append(table(["L0 budget k", "direction", "samples", "BiLSTM success (95 % CI)",
                            f"{baseline['model']} success (95 % CI)"], rows))
    return "".join(parts)
