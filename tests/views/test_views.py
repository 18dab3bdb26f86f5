"""The API's values equal what the CLI wrote: one tiny pipeline run stage by stage through
`icurt <stage>` (in process), then every run opened with icurt's Python API and compared with its
files read directly (np.load, json, pd.read_parquet)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import icurt
import tiny_flips
from icurt.cli import main
from icurt.stages import STAGE_NAMES

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "tests" / "deploy" / "tiny.toml"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, pg_dsn, ray_session):
    """The tiny pipeline written by the CLI; the config the API opens it with."""
    data = tmp_path_factory.mktemp("api_data")
    # tiny.toml made strong enough to find adversarial examples to compare (tests/helpers/tiny_flips.py)
    common = ["--config", str(TINY), "--set", f"paths.data={data}", "--set", f"db.dsn={pg_dsn}",
              "--set", "db.schema=api_views", *tiny_flips.set_args(), "-q"]
    assert main(["db", "synth", *common]) == 0
    for stage in STAGE_NAMES:
        assert main([stage, *common]) == 0, stage
    cfg = icurt.load_config(TINY, paths__data=str(data), db__dsn=pg_dsn, db__schema="api_views", **tiny_flips.overrides())
    return cfg, {stage: icurt.latest(stage, cfg) for stage in STAGE_NAMES}


@pytest.mark.slow
def test_every_stage_has_one_run_and_the_lineage_links_them(pipeline):
    cfg, runs = pipeline
    for stage in STAGE_NAMES:
        assert [r.run_id for r in icurt.list_runs(stage, cfg)] == [runs[stage].run_id]
        assert icurt.open_run(runs[stage].run_id, cfg).stage == stage
    assert [r.stage for r in runs["analyze"].lineage()] == list(reversed(STAGE_NAMES))
    assert runs["attack"].input.run_id == runs["tune-attack"].run_id and runs["query"].input is None
    assert runs["analyze"].ancestor("train").run_id == runs["train"].run_id
    assert runs["train"].show() == icurt.latest("train", cfg).show() and runs["train"].run_id in runs["train"].show()
    assert runs["train"].config().train.num_folds == 2                  # tiny.toml, as recorded


@pytest.mark.slow
def test_the_dataset_is_the_preprocess_runs_arrays(pipeline):
    _, runs = pipeline
    folder = runs["preprocess"].path
    ds = runs["preprocess"].dataset()
    with np.load(folder / "dataset.npz") as arrays:
        for name in ("features", "labels", "stay_ids", "subject_ids", "measured"):
            np.testing.assert_array_equal(getattr(ds, name), arrays[name])
    names = json.loads((folder / "feature_names.json").read_text())
    assert ds.feature_names == names and ds.features.shape[1:] == (48, len(names))
    stats = json.loads((folder / "normalisation.json").read_text())
    stay = runs["preprocess"].stay(3)
    f = names.index("heartrate")
    expected = ds.features[3, :, f] * (stats["heartrate"]["p_high"] - stats["heartrate"]["p_low"]) + stats["heartrate"]["p_low"]
    np.testing.assert_allclose(stay["heartrate"].to_numpy(), expected)
    assert list(stay.columns) == names and len(stay) == 48
    assert runs["preprocess"].labels()["label"].sum() == ds.labels.sum()
    np.testing.assert_allclose(runs["preprocess"].measured_share().to_numpy(), ds.measured.mean(axis=(0, 1)))
    assert runs["attack"].ancestor("preprocess").dataset().features is not None


@pytest.mark.slow
def test_the_query_tables_are_the_query_runs_parquet_files(pipeline):
    _, runs = pipeline
    query = runs["query"]
    assert set(query.table_names()) == {p.stem for p in query.path.glob("*.parquet")}
    for name, frame in query.tables().items():
        pd.testing.assert_frame_equal(frame, pd.read_parquet(query.path / f"{name}.parquet"))
    stats = json.loads((query.path / "query_stats.json").read_text())
    assert query.stats().loc["icustay_detail", "rows"] == stats["icustay_detail"]["rows"] == len(query.table("icustay_detail"))


@pytest.mark.slow
def test_tuning_trials_and_choices_are_what_the_tuning_runs_wrote(pipeline):
    _, runs = pipeline
    for stage in ("tune-model", "tune-attack"):
        pd.testing.assert_frame_equal(runs[stage].trials(), pd.read_parquet(runs[stage].path / "trials.parquet"))
    best = json.loads((runs["tune-model"].path / "best_hparams.json").read_text())
    assert all(best[k] == v for k, v in runs["tune-model"].best().items())
    tuned = json.loads((runs["tune-attack"].path / "best_attack_hparams.json").read_text())
    assert runs["tune-attack"].best().fold == tuned["fold"] and runs["tune-attack"].best().trial == tuned["trial"]


@pytest.mark.slow
def test_metrics_verdict_and_models_are_the_train_runs(pipeline):
    _, runs = pipeline
    train = runs["train"]
    summary = json.loads((train.path / "summary.json").read_text())
    frame = train.metrics()
    assert train.folds == [0, 1] and list(frame.index) == [0, 1]
    for fold in summary["folds"]:
        for metric, value in fold["metrics"].items():
            assert frame.loc[fold["fold"], metric] == pytest.approx(value, nan_ok=True)
        assert train.metrics("train").loc[fold["fold"], "auroc"] == pytest.approx(fold["train_metrics"]["auroc"], nan_ok=True)
    assert frame["auroc"].mean() == pytest.approx(summary["mean"]["auroc"])   # mean over the two folds
    assert train.verdict() == json.loads((train.path / "verdict.json").read_text())
    predictions = pd.read_parquet(train.path / "predictions.parquet")
    pd.testing.assert_frame_equal(train.predictions(), predictions)
    features = runs["preprocess"].dataset().features
    for fold in train.folds:
        model = train.model(fold)
        assert isinstance(model, torch.nn.Module) and not model.training
        weights = torch.load(train.path / f"fold_{fold}" / "best.pt", weights_only=True)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
        rows = train.held_out(fold)
        np.testing.assert_array_equal(rows, np.load(train.path / f"fold_{fold}" / "val_indices.npy"))
        mine = predictions[predictions["fold"] == fold]
        np.testing.assert_array_equal(rows, mine["row"].to_numpy())
        np.testing.assert_allclose(train.predict(features[rows], fold), mine["p_died"].to_numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_attack_results_and_examples_are_the_attack_runs(pipeline):
    _, runs = pipeline
    attack = runs["attack"]
    pd.testing.assert_frame_equal(attack.results(), pd.read_parquet(attack.path / "results.parquet"))
    assert attack.attack_config() == json.loads((attack.path / "attack_config.json").read_text())
    results = attack.results()
    flipped = results[results["success"]]
    assert len(flipped) > 0, "no adversarial example to compare: the fixture's attack is too weak"
    sample = int(flipped["sample_index"].iloc[0])
    with np.load(attack.path / "perturbations.npz") as npz:
        pick = npz["best_sample"] == sample
        expected = np.zeros(tuple(npz["shape"][1:]), np.float32)
        expected[npz["best_t"][pick], npz["best_f"][pick]] = npz["best_value"][pick]
    np.testing.assert_array_equal(attack.perturbation(sample), expected)
    assert np.count_nonzero(expected) == flipped["n_nonzero_best"].iloc[0]
    example = attack.example(sample)
    assert len(example) == np.count_nonzero(expected)
    ds = runs["preprocess"].dataset()
    row = example.iloc[0]
    f = ds.feature_names.index(row["feature"])
    low, high = ds.normalisation[row["feature"]]["p_low"], ds.normalisation[row["feature"]]["p_high"]
    x = ds.features[sample, row["hour"], f]
    assert row["before"] == pytest.approx(x * (high - low) + low)
    assert row["after"] == pytest.approx(min(max(x + expected[row["hour"], f], 0), 1) * (high - low) + low)


@pytest.mark.slow
def test_fragility_curves_and_headline_are_the_fragility_runs(pipeline):
    cfg, runs = pipeline
    fragility = runs["fragility"]
    sweep = pd.read_parquet(fragility.path / "sweep.parquet")
    pd.testing.assert_frame_equal(fragility.sweep(), sweep)
    assert fragility.headline() == json.loads((fragility.path / "fragility.json").read_text())["headline"]
    k = cfg.fragility.headline_k
    curves = fragility.curves()
    row = curves[(curves["curve"] == "k") & (curves["cells"] == "measured") & (curves["budget"] == k)
                 & (curves["direction"] == "1to0")].iloc[0]
    deaths = sweep[(sweep["curve"] == "k") & (sweep["cells"] == "measured") & (sweep["budget"] == k) & (sweep["label"] == 1)]
    assert row["samples"] == len(deaths) and row["successes"] == int(deaths["success"].sum())
    minimal = fragility.minimal_budgets()
    assert set(minimal["sample_index"]) == set(deaths["sample_index"]) | set(
        sweep.loc[(sweep["curve"] == "k") & (sweep["label"] == 0), "sample_index"])
    examples = fragility.worked_examples(count=1)
    assert len(examples) <= 1 and all(set(e.changes.columns) >= {"hour", "feature", "before", "after"} for e in examples)
    figures = fragility.figures(count=1)
    assert {"fragility_curves.png", "fragility_minimal_k.png"} <= set(figures)


@pytest.mark.slow
def test_the_reports_figures_and_tables_are_the_analyze_runs(pipeline):
    from matplotlib.figure import Figure
    from matplotlib.image import imread

    analyze = runs = pipeline[1]["analyze"]
    pngs = sorted(p.name for p in analyze.path.glob("*.png"))
    figures = analyze.figures()
    assert sorted(figures) == pngs and len(pngs) > 5
    for name in ("hist_l1.png", "fragility_curves.png"):
        height, width = imread(analyze.path / name).shape[:2]
        assert isinstance(figures[name], Figure)
        assert tuple(figures[name].get_size_inches() * figures[name].dpi) == pytest.approx((width, height))
    pd.testing.assert_frame_equal(analyze.tables()["headline"], pd.read_csv(analyze.path / "headline.csv"))
    assert analyze.headline()["direction"].tolist() == pd.read_csv(analyze.path / "headline.csv")["direction"].tolist()
    assert analyze.report_path.read_text().lstrip().lower().startswith("<!doctype html")
    del runs


@pytest.mark.slow
def test_the_api_runs_the_stage_the_cli_runs(pipeline):
    """icurt.run calls the stage table's function: preprocessing the CLI's query run again from Python
    writes the same arrays."""
    cfg, runs = pipeline
    again = icurt.run("preprocess", cfg, from_=runs["query"], engine="pandas")
    assert again.run_id != runs["preprocess"].run_id and again.inputs == {"query": runs["query"].run_id}
    for name in ("features", "labels", "stay_ids", "measured"):
        np.testing.assert_array_equal(getattr(again.dataset(), name), getattr(runs["preprocess"].dataset(), name))
