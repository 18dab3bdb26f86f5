"""The report's HTML building blocks: one look (CSS), values formatted once, tables, notes and
figures inlined as base64 PNG data URIs, so the report is one self-contained file."""

from __future__ import annotations

import base64
import html
import json
import math

import pandas as pd

from icurt.analysis.plots import Plot

COLUMN_TITLES = {
    "success_rate": "success rate", "median_n_nonzero_best": "best: median n_nonzero",
    "median_l1_best": "best: median L1", "median_maxabs_best": "best: median max |P|",
    "score": "S_j", "susceptibility": "H_t", "nonzero_elements": "non-zero elements",
    "sample_frequency": "fraction of samples", "max_abs": "max |P|", "peak_hour": "peak hour",
    "median_abs_p": "median |P| (scaled)", "scale_min": "scale min", "scale_max": "scale max",
    "median_change": "typical change", "max_change": "largest change",
}
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


def is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def fmt(value) -> str:
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python
    if is_missing(value):
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


def table(headers: list[str], rows: list[list]) -> str:
    def cell(tag, value):
        text_class = ' class="text"' if isinstance(value, str) and tag == "td" else ""
        return f"<{tag}{text_class}>{fmt(value)}</{tag}>"

    head = "".join(cell("th", COLUMN_TITLES.get(h, h)) for h in headers)
    body = "".join("<tr>" + "".join(cell("td", v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def frame(df: pd.DataFrame, columns: list[str] | None = None) -> str:
    columns = columns or list(df.columns)
    rows = [list(row) for row in df[columns].itertuples(index=False)]
    return table(columns, rows)


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def figure(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return (f'<figure><img alt="{html.escape(plot.name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(plot.caption)}</figcaption></figure>")
