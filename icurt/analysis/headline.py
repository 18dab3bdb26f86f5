"""The headline table for the terminal (what `icurt analyze` and `icurt demo` print)."""

from __future__ import annotations

import pandas as pd

from icurt.analysis.report_html import MISSING, is_missing


def headline_text(headline: pd.DataFrame) -> str:
    """The headline table for the terminal: aligned columns, shares as percentages, sizes with units,
    and a legend saying what each column counts."""
    titles = ["direction", "samples", "attacked", "adversarial", "success", "non-zero elements",
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
        "The last three columns are medians over the adversarial samples' best examples: non-zero "
        "elements = (hour, feature) values altered; L1 = sum of |change|; max |P| = largest change; changes in scaled "
        "units (each feature min-max scaled to [0, 1] between its [preprocess].winsorize_percentiles)."])


def _count_share(count, total) -> str:
    return f"{count:,} ({100 * count / total:.1f}%)" if total else f"{count:,}"


def _percent(value) -> str:
    return MISSING if is_missing(value) else f"{100 * value:.1f}%"


def _median(value, form: str) -> str:
    return MISSING if is_missing(value) else form.format(value)
