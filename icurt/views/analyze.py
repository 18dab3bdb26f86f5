"""The view of an analyze run: its tables as DataFrames and its figures as matplotlib Figures."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from icurt.views.base import RunView


def png_figure(png: bytes | Path):
    """A matplotlib Figure showing a PNG (bytes or a file) at its own size (100 dpi), without axes:
    the report's figure exactly as the report shows it. Jupyter displays it inline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    image = imread(io.BytesIO(png if isinstance(png, bytes) else Path(png).read_bytes()), format="png")
    height, width = image.shape[:2]
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image)
    ax.set_axis_off()
    return fig


class AnalyzeRunView(RunView):
    """An analyze run: statistics, plots and the HTML report of a fragility run and its attack."""

    @property
    def report_path(self) -> Path:
        """report.html: one self-contained file (open it in a browser)."""
        from icurt.stages.analyze import REPORT_FILE

        return self.file(REPORT_FILE)

    def headline(self) -> pd.DataFrame:
        """The headline table: success, sizes and top features per direction."""
        from icurt.analysis.tables import read_headline

        return read_headline(self.path)

    def fragility_headline(self) -> dict:
        """The fragility run's headline per direction (as FragilityRunView.headline())."""
        from icurt.analysis.tables import read_fragility_headline

        return read_fragility_headline(self.path)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table the run wrote (icurt/analysis/tables.py), by name: headline, distributions,
        feature_stats, hour_stats, discovery, signs, susceptibility_<direction>_<kind>,
        clinical_changes."""
        return {path.stem: pd.read_csv(path) for path in sorted(self.path.glob("*.csv"))}

    def figure_names(self) -> list[str]:
        return sorted(path.name for path in self.path.glob("*.png"))

    def figures(self) -> dict:
        """Every plot of the report by file name (e.g. 'hist_l1.png', 'fragility_curves.png'), as
        matplotlib Figures (png_figure)."""
        return {name: png_figure(self.file(name)) for name in self.figure_names()}
