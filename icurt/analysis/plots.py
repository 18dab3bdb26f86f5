"""PNG plots of an attack analysis (matplotlib, Agg canvas, no pyplot global state).

Every plot is drawn even when its group has no successful sample: it then says so in the
figure, so the report and the run folder always hold the same set of images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from icurt.analysis.stats import (DIRECTIONS, GROUP_TITLE, KINDS, METRIC_TITLE, METRICS, Analysis,
                                  histogram_edges, successful_rows)

COLORS = {"0to1": "#1f77b4", "1to0": "#d62728"}
EMPTY_TEXT = "no successful samples"
# The report's name for each size (one name per quantity: n_nonzero is "non-zero elements" everywhere)
METRIC_LABEL = {**METRIC_TITLE, "n_nonzero": "non-zero elements"}


@dataclass(frozen=True)
class Plot:
    name: str      # file name, e.g. hist_l1.png
    section: str   # distributions | features | hours | maps
    caption: str
    png: bytes


def _new_figure(width: float, height: float, rows: int = 1, cols: int = 1):
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes.ravel()


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _say_empty(ax) -> None:
    ax.text(0.5, 0.5, EMPTY_TEXT, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_by_direction(ax, table, kind: str, draw, offsets=(0.0, 0.0)) -> bool:
    """draw(rows, offset, direction) for each direction that has rows of `kind` in `table`; when
    none has, the axes say so and False is returned."""
    drawn = False
    for offset, direction in zip(offsets, DIRECTIONS):
        rows = table[(table["kind"] == kind) & (table["direction"] == direction)] if len(table) else table
        if len(rows):
            draw(rows, offset, direction)
            drawn = True
    if not drawn:
        _say_empty(ax)
    return drawn


def histogram_plot(analysis: Analysis, metric: str) -> Plot:
    """First and best example side by side; one outline per direction on shared bins."""
    fig, axes = _new_figure(10, 3.6, 1, 2)
    for ax, kind in zip(axes, KINDS):
        column = f"{metric}_{kind}"
        values = {d: successful_rows(analysis.results, d)[column].to_numpy(dtype=float) for d in DIRECTIONS}
        pooled = np.concatenate(list(values.values()))
        ax.set_title(f"{kind} example")
        if not np.isfinite(pooled).any():
            _say_empty(ax)
            continue
        edges = histogram_edges(pooled, integer=metric == "n_nonzero")
        for direction, v in values.items():
            if len(v):
                counts, _ = np.histogram(v[np.isfinite(v)], bins=edges)
                ax.stairs(counts, edges, color=COLORS[direction], linewidth=1.8,
                          label=f"{GROUP_TITLE[direction]} (n={len(v)})")
        ax.set_xlabel(METRIC_LABEL[metric] + ("" if metric == "n_nonzero" else " (scaled units)"))
        ax.set_ylabel("samples")
        ax.legend(frameon=False)
    return Plot(f"hist_{metric}.png", "distributions",
                f"Distribution of {METRIC_LABEL[metric]} over successful samples, by direction.", _png(fig))


def feature_plot(analysis: Analysis, kind: str) -> Plot:
    """Per feature: fraction of samples perturbed there, and S_j, one bar per direction."""
    names = analysis.feature_names
    x = np.arange(len(names))
    fig, axes = _new_figure(11, 6, 2, 1)
    panels = (("sample_frequency", "fraction of samples perturbed"), ("susceptibility", "S_j = Σ_t S_tj"))
    for ax, (column, label) in zip(axes, panels):
        def bars(rows, offset, direction):
            ax.bar(x + offset, rows[column].to_numpy(), width=0.4, color=COLORS[direction],
                   label=GROUP_TITLE[direction])

        if not _draw_by_direction(ax, analysis.feature_stats, kind, bars, offsets=(-0.2, 0.2)):
            continue
        ax.set_ylabel(label)
        ax.set_xticks(x, names, rotation=45, ha="right")
        ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # room for the legend above the bars
        ax.legend(frameon=False, ncols=2, loc="upper right")
    axes[0].set_title(f"{kind} example: where perturbations fall, by feature")
    return Plot(f"features_{kind}.png", "features",
                f"By feature ({kind} example): fraction of successful samples with a non-zero "
                "perturbation of the feature (top) and its susceptibility score S_j (bottom).", _png(fig))


def hour_plot(analysis: Analysis, kind: str) -> Plot:
    """Per hour: fraction of samples perturbed then, and H_t = Σ_j S_tj, one curve per direction."""
    fig, axes = _new_figure(10, 5.6, 2, 1)
    panels = (("sample_frequency", "fraction of samples perturbed"), ("susceptibility", "H_t = Σ_j S_tj"))
    for ax, (column, label) in zip(axes, panels):
        def curves(rows, _, direction):
            ax.plot(rows["hour"], rows[column], marker="o", markersize=3, color=COLORS[direction],
                    label=GROUP_TITLE[direction])

        if not _draw_by_direction(ax, analysis.hour_stats, kind, curves):
            continue
        ax.set_ylabel(label)
        ax.set_xlabel("hour of the observation window")
        ax.legend(frameon=False)
    axes[0].set_title(f"{kind} example: where perturbations fall, by hour")
    return Plot(f"hours_{kind}.png", "hours",
                f"By hour ({kind} example): fraction of successful samples perturbed at that hour "
                "(top) and the hour's susceptibility H_t (bottom).", _png(fig))


def map_plot(analysis: Analysis, direction: str, kind: str) -> Plot:
    """Feature × hour heat maps of PP_tj and S_tj for one direction."""
    st = analysis.locations[kind, direction]
    names = analysis.feature_names
    fig, axes = _new_figure(12, 8, 2, 1)
    title = f"{GROUP_TITLE[direction]}, {kind} example"
    if not st.n_samples:
        for ax in axes:
            _say_empty(ax)
        axes[0].set_title(title)
    else:
        panels = ((st.frequency, "PP_tj: fraction of samples perturbed", "Blues"),
                  (st.susceptibility, "S_tj = MP_tj · PP_tj", "Reds"))
        for ax, (grid, label, cmap) in zip(axes, panels):
            image = ax.imshow(grid.T, aspect="auto", cmap=cmap, vmin=0, interpolation="nearest")
            ax.set_yticks(np.arange(len(names)), names, fontsize=8)
            ax.set_xlabel("hour of the observation window")
            ax.set_title(f"{title}: {label} (n={st.n_samples})")
            fig.colorbar(image, ax=ax)
    return Plot(f"map_{direction}_{kind}.png", "maps",
                f"Feature × hour maps for {title}: perturbation frequency PP_tj and "
                "susceptibility S_tj.", _png(fig))


def discovery_plot(analysis: Analysis) -> Plot:
    """Per direction: the share of attacked samples with a first / best example by iteration."""
    fig, axes = _new_figure(10, 3.6, 1, 2)
    table = analysis.discovery
    for ax, direction in zip(axes, DIRECTIONS):
        ax.set_title(GROUP_TITLE[direction])
        rows = table[table["direction"] == direction] if table is not None and len(table) else None
        if rows is None or not len(rows) or not rows["attacked"].iloc[0]:
            _say_empty(ax)
            continue
        for kind, style in zip(KINDS, ("-", "--")):
            part = rows[rows["kind"] == kind]
            ax.plot(part["iteration"], part["share"], style, color=COLORS[direction],
                    label=f"{kind} (end {part['share'].iloc[-1]:.1%})")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("iteration")
        ax.set_ylabel("share of attacked samples")
        # beside the axes: inside, it would cover a curve that climbs to the lower right corner
        ax.legend(frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncols=2, fontsize=8)
    return Plot("discovery.png", "discovery",
                "Share of attacked samples whose first (solid) and best (dashed) adversarial example was found "
                "by each iteration; the end value is the success rate.", _png(fig))


MAGNITUDE_MAPS = {"ganzp": ("ganzp_tj: mean non-zero |P|", "viridis"),
                  "sensitivity": ("sensitivity_tj = gpp_tj / ganzp_tj (log colour scale)", "magma")}


def magnitude_map_plot(analysis: Analysis, quantity: str) -> Plot:
    """Feature × hour maps of ganzp or sensitivity: rows directions, columns first / best."""
    from icurt.analysis.reference_stats import mean_nonzero_map, sensitivity_map

    label, cmap = MAGNITUDE_MAPS[quantity]
    names = analysis.feature_names
    fig, axes = _new_figure(13, 8, 2, 2)
    for ax, (direction, kind) in zip(axes, [(d, k) for d in DIRECTIONS for k in KINDS]):
        st = analysis.locations[kind, direction]
        ax.set_title(f"{GROUP_TITLE[direction]}, {kind} (n={st.n_samples})", fontsize=10)
        if not st.n_samples:
            _say_empty(ax)
            continue
        grid = mean_nonzero_map(st) if quantity == "ganzp" else sensitivity_map(st)
        grid = np.ma.masked_invalid(grid.T)
        # sensitivity spans orders of magnitude (a rare, tiny perturbation scores high): log colours
        norm = LogNorm() if quantity == "sensitivity" and grid.count() and grid.min() > 0 else None
        image = ax.imshow(grid, aspect="auto", cmap=cmap, interpolation="nearest", norm=norm)
        ax.set_yticks(np.arange(len(names)), names, fontsize=7)
        ax.set_xlabel("hour of the observation window")
        fig.colorbar(image, ax=ax)
    fig.suptitle(label + " (blank: never perturbed)")
    return Plot(f"map_{quantity}.png", "reference_maps",
                f"Feature × hour maps of {label} over the successful samples, by direction and example.",
                _png(fig))


def sign_plot(analysis: Analysis) -> Plot:
    """Per feature: non-zero elements that raised it (up) and lowered it (down), by direction and example."""
    names = analysis.feature_names
    x = np.arange(len(names))
    fig, axes = _new_figure(12, 7, 2, 2)
    for ax, (direction, kind) in zip(axes, [(d, k) for d in DIRECTIONS for k in KINDS]):
        ax.set_title(f"{GROUP_TITLE[direction]}, {kind} example", fontsize=10)
        signs = analysis.signs
        rows = signs[(signs["direction"] == direction) & (signs["kind"] == kind)] if signs is not None else None
        if rows is None or not (rows["raised"].sum() + rows["lowered"].sum()):
            _say_empty(ax)
            continue
        ax.bar(x, rows["raised"], color=COLORS[direction], label="raised (P > 0)")
        ax.bar(x, -rows["lowered"].to_numpy(), color="gray", label="lowered (P < 0)")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(x, names, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("non-zero elements")
        ax.legend(frameon=False, fontsize=8)
    return Plot("signs.png", "signs", "Whether the attack raised or lowered each feature: non-zero elements "
                "with P > 0 (up) and P < 0 (down), over the successful samples.", _png(fig))


def all_plots(analysis: Analysis) -> list[Plot]:
    """Every plot of the report, in report order."""
    plots = [histogram_plot(analysis, metric) for metric in (*METRICS, "mean_nonzero")]
    plots += [feature_plot(analysis, kind) for kind in KINDS]
    plots += [hour_plot(analysis, kind) for kind in KINDS]
    plots += [map_plot(analysis, d, kind) for d in DIRECTIONS for kind in KINDS]
    plots += [discovery_plot(analysis), magnitude_map_plot(analysis, "ganzp"),
              magnitude_map_plot(analysis, "sensitivity"), sign_plot(analysis)]
    return plots
