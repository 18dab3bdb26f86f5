"""The HTML report: well-formed, every image an embedded PNG, nothing fetched from outside."""

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from icurt.analysis.plots import all_plots
from icurt.analysis.headline import headline_text
from icurt.analysis.report import ReportContext, build_report, lineage_profile_changes, profile_line
from icurt.analysis.stats import analyse
from icurt.attack.results import perturbations_from_arrays

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input", "source", "col", "wbr"}
NAMES = ["potassium", "sodium", "heartrate"]


class StrictParser(HTMLParser):
    """Records tag nesting errors, images and every src/href."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.images, self.links, self.doctype, self.text = [], [], [], [], None, []

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.links += [v for k, v in attrs.items() if k in ("src", "href") and v is not None]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.stack[-1] != "style":
            self.text.append(data)


def parse(document: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(document)
    parser.close()
    return parser


def random_attack(rng, n=24, hours=6, success_rate=0.7):
    labels = rng.integers(0, 2, n)
    attacked = rng.random(n) > 0.1
    success = attacked & (rng.random(n) < success_rate)
    rows, elements = [], {"sample": [], "t": [], "f": [], "value": []}
    for s in range(n):
        k = rng.integers(1, 5) if success[s] else 0
        cells = rng.choice(hours * 3, size=k, replace=False)
        values = rng.uniform(-.5, .5, size=k)
        for c, v in zip(cells, values):
            elements["sample"].append(s), elements["t"].append(c // 3)
            elements["f"].append(c % 3), elements["value"].append(v)
        size = (k, np.abs(values).sum(), np.abs(values).max()) if k else (0, np.nan, np.nan)
        rows.append({"sample_index": s, "label": labels[s], "attacked": attacked[s], "success": success[s],
                     **{f"{m}_{kind}": x for kind in ("first", "best")
                        for m, x in zip(("n_nonzero", "l1", "maxabs"), size)}})
    arrays = {"shape": np.array([n, hours, 3])}
    for kind in ("first", "best"):
        arrays.update({f"{kind}_{key}": np.array(v) for key, v in elements.items()})
    return pd.DataFrame(rows), arrays


def full_context() -> ReportContext:
    folds = [{"fold": k, "best_epoch": 10 * (k + 1),
              "metrics": {"auroc": .8 + k / 100, "auprc": .4, "f1": .5, "precision": .6, "recall": .45,
                          "accuracy": .9, "val_loss": .3}} for k in range(3)]
    return ReportContext(
        analyze_run_id="20250101T000000000000-abcd",
        lineage=[("analyze", "A-1"), ("attack", "B-2"), ("tune-attack", "C-3"), ("train", "D-4"),
                 ("tune-model", "E-5"), ("preprocess", "F-6"), ("query", "G-7")],
        cohort={"n_samples": 200, "n_died": 20, "n_survived": 180,
                "filters": {"adults": 400, "los_hospital >= 1": 300, "48 h observed": 200}},
        imputation={"potassium": .25, "sodium": 0.0, "heartrate": .015},
        cv_summary={"folds": folds, "mean": {"auroc": .81, "auprc": .4, "f1": .5, "precision": .6,
                                             "recall": .45, "accuracy": .9, "val_loss": .3},
                    "sd": {"auroc": .00816, "auprc": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0,
                           "accuracy": 0.0, "val_loss": 0.0}},
        attack_config={"kappa": .5, "lambda_1": 1e-3, "learning_rate": .02, "optimizer": "adam",
                       "batch_size": 64},
        top_features=2, profile="reference")


@pytest.fixture(scope="module")
def report():
    results, arrays = random_attack(np.random.default_rng(7))
    perturbations, shape = perturbations_from_arrays(arrays)
    norm = {"potassium": {"min": 3.0, "max": 5.5}, "sodium": {"min": 130.0, "max": 150.0}}
    analysis = analyse(results, perturbations, shape, NAMES, norm, top_features=2)
    plots = all_plots(analysis)
    return analysis, plots, build_report(analysis, full_context(), plots)


def test_report_is_well_formed_html(report):
    _, _, document = report
    parser = parse(document)
    assert parser.doctype.lower() == "doctype html"
    assert parser.errors == [] and parser.stack == []
    for tag in ("<html", "<head>", "<body>", "<table>", "<h2>"):
        assert tag in document


def test_every_image_is_an_embedded_png(report):
    _, plots, document = report
    parser = parse(document)
    assert len(parser.images) == len(plots) == 4 + 2 + 2 + 4 + 4
    for src in parser.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix)
        assert base64.b64decode(src[len(prefix):], validate=True).startswith(PNG_SIGNATURE)


def test_nothing_is_fetched_from_outside(report):
    _, _, document = report
    parser = parse(document)
    assert all(link.startswith("data:") for link in parser.links)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", document, re.I)
    assert "url(" not in document and "<script" not in document and "<link" not in document


def test_report_carries_cohort_model_attack_and_lineage(report):
    analysis, _, document = report
    text = " ".join(parse(document).text)
    for needle in ("Profile: reference (the reference study's choices", "How to read this", "48 h observed", "25.0 %", "1.5 %", "mean ± sd", "0.81 ± 0.008",
                   "lambda_1", "adam", "G-7", "F-6", "D-4", "B-2", "Susceptibility", "clinical units"):
        assert needle in text, needle
    # every successful direction's ranking appears
    best = analysis.susceptibility["0to1", "best"]
    assert best["feature"].iloc[0] in text


def test_degenerate_input_report_says_so():
    results, arrays = random_attack(np.random.default_rng(3), success_rate=0.0)
    results = results[results["label"] == 0]
    perturbations, shape = perturbations_from_arrays(arrays)
    analysis = analyse(results, perturbations, shape, NAMES, {}, top_features=3)
    ctx = ReportContext(analyze_run_id="X", lineage=[("analyze", "X"), ("attack", "Y")],
                        missing={"cohort": "no preprocess run in the attack run's lineage",
                                 "cv_summary": "summary.json is missing from train run Z"})
    document = build_report(analysis, ctx, all_plots(analysis))
    parser = parse(document)
    assert parser.errors == [] and parser.stack == []
    text = " ".join(parser.text)
    assert "Cohort summary not available: no preprocess run" in text
    assert "Cross-validation summary not available: summary.json is missing" in text
    assert "Attack settings not available" in text
    assert "The attack flipped no sample: there is nothing to show here." in text and "no samples with this label" in text
    assert not re.search(r"\bnan\b", text, re.I)


def test_headline_text_lists_each_direction(report):
    analysis, _, _ = report
    lines = headline_text(analysis.headline).splitlines()
    assert lines[0].startswith("direction") and len(lines) == 6
    rate = analysis.headline["success_rate"].iloc[0]
    assert lines[1].startswith("all") and f"{100 * rate:.1f}%" in lines[1]
    assert lines[2].startswith("0 → 1") and lines[3].startswith("1 → 0")


def test_headline_text_is_aligned_with_shares_and_units():
    headline = pd.DataFrame([
        {"direction": "all", "samples": 200, "attacked": 150, "skipped": 50, "successful": 120,
         "success_rate": 0.8, "median_n_nonzero_best": 14.0, "median_l1_best": 4.0025,
         "median_maxabs_best": 0.87654, "note": ""},
        {"direction": "1 → 0", "samples": 8, "attacked": 0, "skipped": 8, "successful": 0,
         "success_rate": float("nan"), "median_n_nonzero_best": float("nan"), "median_l1_best": float("nan"),
         "median_maxabs_best": float("nan"), "note": "no attacked samples"}])
    lines = headline_text(headline).splitlines()
    assert lines[0].split("  ")[0] == "direction" and "L1 (scaled)" in lines[0] and "max |P| (scaled)" in lines[0]
    assert lines[1].split() == ["all", "200", "150", "(75.0%)", "120", "80.0%", "14", "4.003", "0.877"]
    assert lines[2].split()[:6] == ["1", "→", "0", "8", "0", "(0.0%)"]
    ends = {len(line[:line.index("  note")]) for line in lines[:1]} | {len(lines[1].rstrip())}
    assert len(ends) == 1                      # right-aligned numbers end under their titles
    assert "scaled units" in lines[-1] and "[0, 1]" in lines[-1] and "success: adversarial / attacked" in lines[-2]


def test_profile_line_lists_the_first_eight_changes():
    assert profile_line("demo") == "Profile: demo"
    assert profile_line("demo", []) == "Profile: demo"
    assert profile_line("demo", ["a.b=1"]) == "Profile: demo; its runs changed 1 setting: a.b=1"
    changes = [f"train.k{i}={i}" for i in range(10)]
    assert profile_line("demo", changes) == ("Profile: demo; its runs changed 10 settings: "
                                             + ", ".join(changes[:8]) + " and 2 more")
    # a run made with another profile is said as such, not counted as a setting
    assert profile_line("reference", ["attack.seed=9", "the query run was made with profile default"]) == (
        "Profile: reference (the reference study's choices, configs/reference.toml); the query run was made with "
        "profile default; its runs changed 1 setting: attack.seed=9")


def test_lineage_profile_changes_is_the_union_and_names_a_run_of_another_profile():
    metas = [("analyze", {"profile": "reference", "profile_changes": ["train.epochs=3"]}),
             ("train", {"profile": "reference", "profile_changes": ["train.epochs=3", "attack.seed=9"]}),
             ("query", {"profile": "default", "profile_changes": []}),
             ("preprocess", {"profile": "reference"})]                # recorded before icurt kept changes
    assert lineage_profile_changes(metas, "reference") == ["attack.seed=9",
                                                           "the query run was made with profile default",
                                                           "train.epochs=3"]
    assert lineage_profile_changes([("train", {"profile": "mine", "profile_changes": None})], "mine") is None


def visible_text(document: str) -> str:
    return " ".join(parse(document).text)


def test_the_summary_opens_the_report_with_the_data_source_and_the_flip_rule(report):
    analysis, plots, _ = report
    ctx = full_context()
    ctx.source = {"loaded_at": "2026-12-01T10:00:00+00:00", "load_id": "ab",
                  "source": "icurt db synth (200 stays, seed 0)"}
    ctx.dataset = {"dataset": "mimic-iii", "release": "MIMIC-III v1.4", "schemas": ["mimiciii"]}
    document = build_report(analysis, ctx, plots)
    summary = document.index('<section class="summary">')
    assert summary < document.index("<h2>How to read this</h2>") < document.index("<h2>Cohort</h2>")
    text = visible_text(document[summary:document.index("</section>")])
    assert "synthetic: generated by icurt db synth (200 stays, seed 0)" in text
    assert "200 ICU stays, 20 died (10.0 %)" in text                  # cohort of full_context
    attacked = int(analysis.headline.loc[analysis.headline["direction"] == "1 → 0", "attacked"].iloc[0])
    assert f"{attacked} deaths" in text and "not the cohort's 20 deaths" in text
    assert "argmax" in text and "P(died) > 0.5" in text


def test_thresholds_are_probabilities_and_a_negative_one_is_said_in_words(report):
    analysis, plots, _ = report
    ctx = full_context()
    for fold, threshold in zip(ctx.cv_summary["folds"], (-0.0645, 0.6712, 0.7)):
        fold["threshold"] = threshold
    text = visible_text(build_report(analysis, ctx, plots))
    assert "none: every stay predicted died" in text and "0.671" in text
    assert "-0.0645" not in text and "−0.0645" not in text
    assert "the verdict above pools the folds' held-out predictions" in text


def test_the_reliability_caption_puts_overestimation_below_the_diagonal():
    from icurt.stages.analyze import _verdict_plots

    verdict = {"calibration": {"mean_predicted": [0.2, 0.6], "fraction_died": [0.1, 0.3]}}
    (plot,) = _verdict_plots(verdict)
    assert "below the diagonal mean the model overestimates" in plot.caption
    assert "above the diagonal the model overestimates" not in plot.caption


def test_one_name_per_quantity_readable_numbers_and_settings_as_a_table(report):
    analysis, plots, _ = report
    ctx = full_context()
    ctx.attack_config = {**ctx.attack_config, "lambda_1": 3.677e-05,
                         "method": {"optimizer_state": "carried", "loss_norm": "elementwise", "step": 2.5e-06}}
    document = build_report(analysis, ctx, plots)
    text = visible_text(document)
    assert not re.search(r"\d[eE][-+]?\d", text)                        # no 3.677e-05 style
    assert "3.7·10⁻⁵" in text and "2.5·10⁻⁶" in text
    assert "{" not in text and "optimizer_state" in text and "carried" in text
    assert "non-zero elements" in text
    for other in ("n_nonzero", "perturbed elements", "cells changed", "changed cells"):
        assert other not in text, other


def test_a_report_where_nothing_flips_says_so_instead_of_empty_frames():
    results, arrays = random_attack(np.random.default_rng(3), success_rate=0.0)
    perturbations, shape = perturbations_from_arrays(arrays)
    analysis = analyse(results, perturbations, shape, NAMES, {}, top_features=3)
    plots = all_plots(analysis)
    document = build_report(analysis, full_context(), plots)
    for body in re.findall(r"<tbody>(.*?)</tbody>", document, re.S):
        assert "<tr>" in body                                            # no table without rows
    assert "<tbody></tbody>" not in document
    text = visible_text(document)
    assert text.count("The attack flipped no sample: there is nothing to show here.") == 5
    assert "No successful sample: there are no adversarial examples to measure." in text
    assert "<img" not in document                                      # every plot would be an empty frame


def test_a_worked_example_shows_the_decision_threshold_and_the_units():
    import pandas as pd

    from icurt.analysis.fragility_report import FragilityView, WorkedExample, example_sentence, fragility_section

    changes = pd.DataFrame({"hour": [3], "feature": ["ph"], "before": [7.31], "after": [7.25], "unit": [""]})
    example = WorkedExample(stay_id=7, label=1, minimal_k=1.0, p_died_before=0.6, p_died_after=0.49996,
                            changes=changes)
    assert example_sentence(example) == ("ICU stay 7 (died): P(died) 0.600 → 0.49996 (decision threshold 0.5: "
                                         "predicted died → predicted survived) with 1 non-zero element(s) "
                                         "(minimal k 1).")
    curves = pd.DataFrame({"curve": ["k"], "cells": ["measured"], "budget": [1], "direction": ["1to0"],
                           "samples": [1], "successes": [1], "success_rate": [1.0], "ci_low": [0.2],
                           "ci_high": [1.0]})
    view = FragilityView({"headline": {}, "clinical_step": {"ph": 0.05}}, curves, pd.DataFrame(), [example])
    text = visible_text(fragility_section(view, []))
    assert text.count("pH units") == 2                                 # the step table and the example's changes
    assert "P(died) > 0.5" in text
