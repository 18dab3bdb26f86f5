"""The report's baselines section: the BiLSTM beside logistic regression and boosted trees on the
same held-out stays (baselines.json, icurt/baselines/compare.py), with the banner."""

from __future__ import annotations

import html

from icurt.analysis.report_html import note, table
from icurt.analysis.verdict import interval_text


def _ci(e: dict | None) -> str:
    if not e:
        return "–"
    return interval_text(e)


def baselines_section(baselines: dict | None) -> str:
    """HTML: the banner, one row per model (AUROC, AUPRC with 95 % intervals) and the paired
    BiLSTM − best baseline difference; a note when the train run has no baselines.json."""
    parts = ["<h2>Model quality: the BiLSTM beside simple baselines</h2>"]
    if not baselines:
        return "".join(parts) + note("No baselines: the train run has no baselines.json (an older icurt).")
    parts += [f'<p class="banner">Warning: {html.escape(w)}.</p>' for w in baselines.get("warnings") or []]
    blocks = ", ".join(baselines.get("summaries") or [])
    parts.append(f"<p>Fitted on the train run's own folds (same fit, choice and held-out stays), on per-feature "
                 f"summaries of the window ({html.escape(blocks)}); fold-mean held-out scores with 95 % bootstrap "
                 f"intervals over {baselines['n_samples']} stays.</p>")
    rows = [["BiLSTM", _ci(baselines["bilstm"]["auroc"]), _ci(baselines["bilstm"]["auprc"])]]
    rows += [[m["label"], _ci(m["auroc"]), _ci(m["auprc"])] for m in baselines["models"].values()]
    d, best = baselines["difference"], baselines["models"][baselines["best"]]["label"]
    parts.append(table(["model", "AUROC [95 % CI]", "AUPRC [95 % CI]"], rows))
    parts.append(f"<p>BiLSTM − {html.escape(best)} (the best baseline) AUROC: {d['value']:+.3f} "
                 f"[{d['low']:+.3f}, {d['high']:+.3f}], paired over the same resampled stays.</p>")
    return "".join(parts)
