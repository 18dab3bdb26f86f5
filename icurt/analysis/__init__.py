"""Stage 7: attack statistics, plots and the HTML report."""
