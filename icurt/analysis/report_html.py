"""The report's HTML building blocks: one look (CSS), values formatted once, tables, notes and
figures inlined as base64 PNG data URIs, so the report is one self-contained file."""

from __future__ import annotations

import base64
import html
import math

import pandas as pd

from icurt.analysis.plots import Plot

COLUMN_TITLES = {
    "success_rate": "success rate", "median_n_nonzero_best": "best: median non-zero elements",
    "median_l1_best": "best: median L1", "median_maxabs_best": "best: median max |P|",
    "score": "S_j", "susceptibility": "H_t", "nonzero_elements": "non-zero elements",
    "sample_frequency": "fraction of samples", "max_abs": "max |P|", "peak_hour": "peak hour",
    "median_abs_p": "median |P| (scaled)", "scale_min": "scale min", "scale_max": "scale max",
    "median_change": "typical change", "max_change": "largest change",
    "ci_low": "95 % CI low", "ci_high": "95 % CI high", "successes": "flipped",
}
MISSING = "–"
SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
# Features whose measurement has no unit of its own (CLINICAL_UNITS leaves them blank)
UNITLESS = {"ph": "pH units"}
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #444}h2{margin-top:2em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td.text,th.text{text-align:left}
.note{color:#8a5a00;background:#fff7e0;padding:.4em .7em;border-left:3px solid #e0a000}
.summary th{width:11em;vertical-align:top}table.summary{font-size:.95em;margin-top:0}
.banner{color:#7a0000;background:#ffe8e8;padding:.5em .8em;border-left:4px solid #c00000;font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.85em;color:#555}
"""


def is_missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def number(value, digits: int = 4) -> str:
    """A number as the report prints it, never in e-notation: integers whole, floats to `digits`
    significant digits; below 0.0001 in magnitude as 3.7·10⁻⁵ (two significant digits), from 10,000
    on with thousands separators. "–" when missing (None, NaN)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python
    if is_missing(value):
        return MISSING
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if not math.isfinite(value):
        return "∞" if value > 0 else "−∞"
    if value != 0 and abs(value) < 1e-4:
        mantissa, exponent = f"{value:.1e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
        return f"{mantissa}·10{str(int(exponent)).translate(SUPERSCRIPT)}"
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def threshold_text(threshold) -> str:
    """A fold's decision threshold on P(died) as a probability; a negative one (f1_threshold's code for
    "below every score") in words."""
    if is_missing(threshold):
        return MISSING
    if threshold < 0:
        return "none: every stay predicted died"
    return number(float(threshold), 3)


def unit_of(feature: str, unit: str | None = None) -> str:
    """The clinical unit to print for a feature: `unit` (or CLINICAL_UNITS') when it has one, else
    what the value is measured in ("pH units"), else "–"."""
    from icurt.analysis.stats import CLINICAL_UNITS

    unit = unit if unit else CLINICAL_UNITS.get(feature, "")
    return unit or UNITLESS.get(feature, MISSING)


def fmt(value) -> str:
    """A table cell's HTML: numbers by `number`, yes/no, dicts as "key: value; …", text escaped."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python
    if is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, dict):
        return "; ".join(f"{html.escape(str(k))}: {fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return html.escape(str(value))


def table(headers: list[str], rows: list[list]) -> str:
    def cell(tag, value):
        text_class = ' class="text"' if isinstance(value, str) and tag == "td" else ""
        return f"<{tag}{text_class}>{fmt(value)}</{tag}>"

    if not rows:   # never an empty frame
        return note("Nothing to show: no rows.")
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
