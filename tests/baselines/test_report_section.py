"""The report's baselines section: the banner, one row per model and the paired difference."""

from icurt.baselines.report_section import baselines_section


def _estimate(value):
    return {"value": value, "low": value - 0.02, "high": value + 0.02}


def test_section_shows_banner_rows_and_difference():
    result = {"n_samples": 500, "summaries": ["mean", "slope"], "warnings": ["the BiLSTM is not better <here>"],
              "bilstm": {"auroc": _estimate(0.7), "auprc": _estimate(0.3)},
              "models": {"logistic_regression": {"label": "logistic regression", "auroc": _estimate(0.8),
                                                 "auprc": _estimate(0.4)},
                         "boosted_trees": {"label": "boosted trees", "auroc": _estimate(0.75),
                                           "auprc": _estimate(0.35)}},
              "best": "logistic_regression", "difference": {"value": -0.1, "low": -0.13, "high": -0.07}}
    html = baselines_section(result)
    assert '<p class="banner">Warning: the BiLSTM is not better &lt;here&gt;.</p>' in html
    assert html.count("<tr>") == 4                                  # header + BiLSTM + two baselines
    assert "0.800 [0.780, 0.820]" in html and "0.750 [0.730, 0.770]" in html
    assert "BiLSTM − logistic regression (the best baseline) AUROC: -0.100 [-0.130, -0.070]" in html
    assert "mean, slope" in html and "500 stays" in html


def test_section_without_baselines_says_why():
    html = baselines_section(None)
    assert "No baselines" in html and "baselines.json" in html and "<table>" not in html
