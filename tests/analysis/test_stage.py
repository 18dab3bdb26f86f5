"""The analyze stage on hand-made runs that follow the artifact contracts, linked by lineage.

Attack (4 samples × 3 hours × 2 features; creatinine, sodium), best P as (hour, feature, value):
  s0 label 0, success: (0,0,.25) (2,1,.1)     s1 label 0, success: (2,1,-.3)
  s2 label 1, success: (1,0,.5)               s3 label 1, attacked, failed
"""

import html
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from icurt.stages.analyze import run
from icurt.cli import main
from icurt.config import load_config, with_overrides
from icurt.errors import IcurtError
from icurt.runs import RunStore

NAMES = ["creatinine", "sodium"]
BEST = {0: [(0, 0, .25), (2, 1, .1)], 1: [(2, 1, -.3)], 2: [(1, 0, .5)]}
FIRST = {0: [(0, 0, .25)], 1: [(2, 1, -.3), (1, 1, .1)], 2: [(1, 0, .5)]}
LABELS, SUCCESS = [0, 0, 1, 1], [True, True, True, False]
EXPECTED_FILES = (["headline.json", "headline.csv", "feature_stats.csv", "hour_stats.csv", "report.html",
                   "distributions.csv", "clinical_changes.csv", "discovery.csv", "signs.csv",
                   "discovery.png", "map_ganzp.png", "map_sensitivity.png", "signs.png", "hist_mean_nonzero.png"]
                  + [f"susceptibility_{d}_{k}.csv" for d in ("0to1", "1to0") for k in ("first", "best")]
                  + [f"hist_{m}.png" for m in ("n_nonzero", "l1", "maxabs")]
                  + [f"{p}_{k}.png" for p in ("features", "hours") for k in ("first", "best")]
                  + [f"map_{d}_{k}.png" for d in ("0to1", "1to0") for k in ("first", "best")])


@pytest.fixture
def cfg(tmp_path):
    return with_overrides(load_config(env={}), [f"paths.data={tmp_path}", "analyze.top_features=2"])


def write_json(folder, name, data):
    (folder / name).write_text(json.dumps(data))


def sizes(elements):
    values = np.abs([v for _, _, v in elements])
    return (len(values), values.sum(), values.max()) if len(values) else (0, math.nan, math.nan)


def attack_files(folder, success=SUCCESS):
    rows = []
    for s in range(4):
        ok = success[s]
        first, best = sizes(FIRST.get(s, []) if ok else []), sizes(BEST.get(s, []) if ok else [])
        rows.append({"sample_index": s, "stay_id": 200 + s, "label": LABELS[s], "orig_logit_0": 1.0 - LABELS[s],
                     "orig_logit_1": float(LABELS[s]), "orig_pred": LABELS[s], "attacked": True, "success": ok,
                     "first_iteration": 3 if ok else -1, "best_iteration": 8 if ok else -1,
                     "adv_logit_0": float(LABELS[s]) if ok else math.nan,
                     "adv_logit_1": 1.0 - LABELS[s] if ok else math.nan,
                     "n_nonzero_first": first[0], "n_nonzero_best": best[0], "l1_first": first[1],
                     "l1_best": best[1], "maxabs_first": first[2], "maxabs_best": best[2]})
    pd.DataFrame(rows).to_parquet(folder / "results.parquet")
    arrays = {"shape": np.array([4, 3, 2])}
    for kind, elements in (("first", FIRST), ("best", BEST)):
        items = [(s, t, f, v) for s, el in elements.items() if success[s] for t, f, v in el]
        for i, (key, dtype) in enumerate((("sample", np.int64), ("t", np.int16), ("f", np.int16),
                                          ("value", np.float32))):
            arrays[f"{kind}_{key}"] = np.array([item[i] for item in items], dtype=dtype)
    np.savez(folder / "perturbations.npz", **arrays)
    write_json(folder, "feature_names.json", NAMES)


# The fragility sweep, by hand: samples 0, 1 (label 0) and 2, 3 (label 1) swept under k ≤ 1 and k ≤ 4
# on measured cells; s0 flips at k = 1 (one cell), s1 and s2 at k = 4, s3 never.
FLIPS = {1: {0}, 4: {0, 1, 2}}


def fragility_files(folder):
    from icurt.attack.fragility_run import write_fragility_run

    rows, coo = [], {"cell": [0, 1], "sample": [0, 0], "t": [0, 0], "f": [0, 0], "value": [0.25, 0.25]}
    for cell, k in enumerate((1, 4)):
        for s in range(4):
            ok = s in FLIPS[k]
            rows.append({"sample_index": s, "stay_id": 200 + s, "label": LABELS[s], "curve": "k", "cells": "measured",
                         "budget": k, "cell": cell, "attacked": True, "success": ok, "found_at": 2 if ok else -1,
                         "n_nonzero": 1 if ok else 0, "max_step_ratio": 0.5 if ok else math.nan,
                         "p_died_after": 0.6 if ok else math.nan, "p_died_before": 0.2})
    cells = [{"curve": "k", "cells": "measured", "budget": k, "label": f"k≤{k}"} for k in (1, 4)]
    headline = {"1to0": {"sentence": "50.0 % of 2 correctly predicted deaths flip to survival"}}
    write_fragility_run(folder, pd.DataFrame(rows), {k: np.array(v) for k, v in coo.items()},
                        {"cells": cells, "headline": headline, "samples": 4,
                         "clinical_step": {"creatinine": 0.3, "sodium": 3.0}})


def make_runs(store, cfg, summary=True, preprocess_files=True, success=SUCCESS):
    """preprocess → tune-model → train → tune-attack → attack → fragility, each linked to the one before."""
    with store.create("preprocess", cfg) as w:
        write_json(w.path, "feature_names.json", NAMES)
        if preprocess_files:
            write_json(w.path, "normalisation.json", {
                "creatinine": {"p_low": .5, "p_high": 4.5, "median": 1.1},
                "sodium": {"p_low": 130, "p_high": 150, "median": 139}})
            write_json(w.path, "cohort.json", {"n_samples": 4, "n_died": 2, "n_survived": 2,
                                               "filters": {"adults": 9, "48 h observed": 4}})
            write_json(w.path, "imputation.json", {"creatinine": .125, "sodium": 0.0})
    with store.create("tune-model", cfg, inputs=[w.run]) as w:
        write_json(w.path, "best_hparams.json", {"lstm_hidden": 8, "objective": .4, "trial": 1})
    with store.create("train", cfg, inputs=[w.run]) as w:
        if summary:
            metrics = {"auroc": .777, "auprc": .5, "f1": .4, "precision": .5, "recall": .33,
                       "accuracy": .75, "val_loss": .6}
            write_json(w.path, "summary.json", {
                "folds": [{"fold": k, "best_epoch": 3, "metrics": metrics} for k in range(2)],
                "mean": metrics, "sd": {k: 0.0 for k in metrics}})
            from icurt.analysis.verdict import build_verdict, write_verdict
            write_verdict(w.path, build_verdict(pd.DataFrame({  # 4 held-out samples, 2 died, ranked right
                "label": [0, 1, 0, 1], "p_died": [.1, .8, .3, .6], "threshold": .5})))
    with store.create("tune-attack", cfg, inputs=[w.run]) as w:
        write_json(w.path, "best_attack_hparams.json", {"kappa": 0.0, "trial": 2})
    with store.create("attack", cfg, inputs=[w.run]) as w:
        attack_files(w.path, success)
        write_json(w.path, "attack_config.json", {"kappa": 0.0, "lambda_1": 0.001, "learning_rate": .05,
                                                  "optimizer": "adam", "batch_size": 32})
    attack = w.run
    with store.create("fragility", cfg, inputs=[attack]) as w:
        fragility_files(w.path)
    return attack, w.run


def test_stage_writes_every_output_with_hand_computed_numbers(cfg, tmp_path):
    store = RunStore(tmp_path)
    attack, fragility = make_runs(store, cfg)
    result = run(cfg, store=store)  # the newest fragility run by default
    assert result.stage == "analyze" and result.inputs == {"fragility": fragility.run_id}
    for name in EXPECTED_FILES:
        assert result.file(name).is_file(), name
        if name.endswith(".png"):
            assert result.file(name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    head = json.loads(result.file("headline.json").read_text())
    assert head["attack_run"] == attack.run_id
    rates = {row["direction"]: row["success_rate"] for row in head["rows"]}
    assert rates == pytest.approx({"all": .75, "0 → 1": 1.0, "1 → 0": .5})
    # 0 → 1, best, n = 2: S(0,creat) = .25·.5, S(2,sodium) = .3·1
    ranked = pd.read_csv(result.file("susceptibility_0to1_best.csv"))
    assert ranked["feature"].tolist() == ["sodium", "creatinine"]
    assert ranked["score"].tolist() == pytest.approx([.3, .125])
    ranked = pd.read_csv(result.file("susceptibility_1to0_best.csv"))
    assert ranked["feature"].tolist() == ["creatinine", "sodium"]
    assert ranked["score"].tolist() == pytest.approx([.5, 0.0])
    # 0 → 1 first: s0 (0,0,.25), s1 (2,1,.3) (1,1,.1): sodium .15 + .05 = .2, creatinine .125
    ranked = pd.read_csv(result.file("susceptibility_0to1_first.csv"))
    assert ranked["score"].tolist() == pytest.approx([.2, .125])
    clinical = pd.read_csv(result.file("clinical_changes.csv"))
    row = clinical[(clinical["direction"] == "0to1") & (clinical["kind"] == "best")].set_index("feature")
    assert row.loc["sodium", "median_change"] == pytest.approx(.2 * 20)  # median of .1, .3
    assert row.loc["creatinine", "median_change"] == pytest.approx(.25 * 4)
    # first examples at iterate 3, best at 8 (the attack config names no budget: the curve ends at 8)
    discovery = pd.read_csv(result.file("discovery.csv"))
    best_1to0 = discovery[(discovery["direction"] == "1to0") & (discovery["kind"] == "best")]
    assert best_1to0["share"].tolist() == pytest.approx([0] * 8 + [.5])
    signs = pd.read_csv(result.file("signs.csv")).set_index(["direction", "kind", "feature"])
    assert signs.loc[("0to1", "best", "sodium"), ["raised", "lowered"]].tolist() == [1, 1]  # +.1 and −.3
    assert "When adversarial examples are found" in result.file("report.html").read_text()
    hours = pd.read_csv(result.file("hour_stats.csv"))
    hours = hours[(hours["kind"] == "best") & (hours["direction"] == "0to1")]
    assert hours["sample_frequency"].tolist() == pytest.approx([.5, 0, 1])
    report = result.file("report.html").read_text()
    for run_ in store.lineage(fragility):
        assert run_.run_id in report
    assert result.run_id in report and "0.777" in report and "48 h observed" in report
    # fragility: k ≤ 1 flips 1 of 2 label-0 samples, k ≤ 4 2 of 2; label 1: 0 of 2, then 1 of 2
    assert "50.0 % of 2 correctly predicted deaths flip to survival" in report
    assert "Fragility under a budget" in report and "Worked examples" in report
    for name in ("fragility_curves.png", "fragility_minimal_k.png"):
        assert result.file(name).read_bytes().startswith(b"\x89PNG")
    assert json.loads(result.file("headline.json").read_text())["fragility"]["1to0"]["sentence"].startswith("50.0 %")
    # the verdict of the train run, its banner (4 samples: too few) and its reliability plot
    assert "Model quality: the verdict" in report and 'class="banner"' in report
    assert "only 2 held-out sample(s) died" in report and "reliability" in report
    assert result.file("reliability.png").read_bytes().startswith(b"\x89PNG")


def test_missing_optional_pieces_and_no_success_are_reported(cfg, tmp_path):
    store = RunStore(tmp_path)
    attack, fragility = make_runs(store, cfg, summary=False, preprocess_files=False, success=[False] * 4)
    attack.file("attack_config.json").unlink()
    result = run(cfg, fragility, store=store)
    report = result.file("report.html").read_text()
    assert "Cross-validation summary not available: summary.json is missing from train run" in report
    assert "Cohort summary not available: cohort.json is missing from preprocess run" in report
    assert "Attack settings not available" in report and "No scaling statistics" in report
    assert "No verdict: verdict.json is missing from train run" in report
    assert "no successful sample" in report
    assert pd.read_csv(result.file("susceptibility_0to1_best.csv")).empty
    assert not re.search(r"\bnan\b", re.sub(r'src="data:[^"]*"', "", report), re.I)


def test_incomplete_attack_run_is_an_error_and_writes_nothing(cfg, tmp_path):
    store = RunStore(tmp_path)
    attack, fragility = make_runs(store, cfg)
    attack.file("results.parquet").unlink()
    with pytest.raises(IcurtError, match="results.parquet"):
        run(cfg, fragility, store=store)
    assert store.list("analyze") == [] and store.failed("analyze") == []


def test_analyze_command_prints_headline_and_report_path(cfg, tmp_path, capsys):
    _, fragility = make_runs(RunStore(tmp_path), cfg)
    assert main(["analyze", "--from", fragility.run_id, "--set", f"paths.data={tmp_path}"]) == 0
    out = capsys.readouterr().out.splitlines()
    # made by hand, this lineage has no query run (no source to name) and a train run without baselines
    assert out[0] == "data: unknown (no query run in this analysis' lineage records its source)"
    assert out[1].startswith("direction") and out[3].startswith("0 → 1") and "100.0%" in out[3]
    assert out[-4] == "baselines: not fitted (a train run from before icurt fitted baselines)"
    report = out[-2]
    assert report.startswith("report: ") and report.endswith("report.html")
    # the cfg fixture's analyze.top_features=2 is read by no run here: this analyze run has the default
    assert out[-3] == "Profile: default (icurt's method, configs/default.toml)"
    assert (tmp_path / "analyze").is_dir() and report[len("report: "):].startswith(str(tmp_path.resolve()))
    assert out[-1].startswith("analyze run ") and " written to " in out[-1]
    assert main(["analyze", "--from", "nope", "--set", f"paths.data={tmp_path}"]) == 2


def test_the_report_names_every_setting_the_lineage_changed_from_its_profile(cfg, tmp_path):
    store = RunStore(tmp_path)
    _, fragility = make_runs(store, with_overrides(cfg, ["attack.seed=9"]))
    # each run records the changes among the settings it reads: train.epochs means nothing to analyze
    analyzed = run(with_overrides(cfg, ["train.epochs=3"]), fragility, store=store)
    changes = ["analyze.top_features=2", "attack.seed=9"]
    assert analyzed.meta["profile_changes"] == changes
    assert store.latest("attack").meta["profile_changes"] == ["attack.seed=9"]
    assert store.latest("train").meta["profile_changes"] == []
    line = f"Profile: default (icurt's method, configs/default.toml); its runs changed 2 settings: {', '.join(changes)}"
    assert html.escape(line) in analyzed.file("report.html").read_text()
