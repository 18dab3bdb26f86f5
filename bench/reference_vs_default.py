"""The whole pipeline on one synthetic cohort, once with the reference profile and once with icurt's
default, and the headline of each side by side.

    python bench/reference_vs_default.py [--stays 2000] [--seed 42] [--data DIR] [--set SECTION.KEY=VALUE ...]

One synthetic cohort (icurt.db.synth, `--stays` ICU stays) goes into a throwaway embedded PostgreSQL
under the data root (a temp dir unless `--data`), and one query run serves both profiles. Each
profile then runs `icurt run` (icurt.pipeline.run_pipeline) on it: configs/default.toml, and
configs/reference.toml layered on it. Both are scaled down the same way, by the sizes of
configs/demo.toml (trials, folds, epochs, iterations, samples; never a method choice) given as
overrides, plus any `--set`. Equivalent by hand, on a cohort built with `icurt db synth`:

    icurt run --config reference --set tune_model.num_trials=12 ...   (the sizes of configs/demo.toml)
    icurt run --set tune_model.num_trials=12 ...

Prints one table: cohort size, cross-validated AUROC and AUPRC (mean ± sd over folds), the attack's
success rate and median number of perturbed elements per direction, and the five features with
the highest susceptibility S_j per direction (best examples), and the fragility headline per
direction (the share flipped by at most [fragility].headline_k measured values, each within its
clinical step), for each profile. Two rows help to
read it: the hyperparameters tuning chose, and a control — one fixed BiLSTM (the hyperparameters
of tests/integration) trained on each profile's dataset for 10 epochs, its best held-out AUROC on
one of 4 stratified folds — which tells the datasets apart from tuning luck at small budgets.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from icurt.config import load_config, named_config_path, with_overrides  # noqa: E402
from icurt.config_toml import read_toml, toml_value  # noqa: E402
from icurt.analysis.tables import read_fragility_headline  # noqa: E402
from icurt.files import read_json  # noqa: E402
from icurt.runs import RunStore  # noqa: E402

PROFILES = ("default", "reference")
CONTROL = dict(lstm_hidden=32, lstm_activation="tanh", dropout=0.1, fc_size=16, fc_activation="relu",
               optimizer="adam", learning_rate=3e-3, batch_size=64)
DIRECTIONS = {"0to1": "0 → 1", "1to0": "1 → 0"}


SIZE_SECTIONS = ("tune_model", "train", "tune_attack", "attack", "fragility")   # demo.toml's [attack_method] is a method


def demo_sizes() -> list[str]:
    """configs/demo.toml's sizes (trials, folds, epochs, iterations, samples) as overrides."""
    demo = read_toml(named_config_path("demo"))
    return [f"{section}.{key}={toml_value(value)}" for section, values in demo.items()
            if section in SIZE_SECTIONS for key, value in values.items()]


def profile_config(profile: str, data: Path, overrides: list[str]):
    path = None if profile == "default" else named_config_path(profile)
    return with_overrides(load_config(path, env={}), [f"paths.data={data}", "db.dsn=", *overrides])


def control_auroc(preprocess_run, epochs: int = 10) -> float:
    """Best held-out AUROC of the CONTROL BiLSTM over `epochs` epochs on fold 1 of 4 (seed 3)."""
    from icurt.dataset import load_dataset
    from icurt.model.folds import stratified_folds
    from icurt.model.hparams import ModelHparams
    from icurt.model.trainer import Trainer

    ds = load_dataset(preprocess_run.path)
    train, val = stratified_folds(ds.labels, 4, seed=3)[0]
    trainer = Trainer(ModelHparams(**CONTROL), ds.features[train], ds.labels[train], ds.features[val],
                      ds.labels[val], seed=0)
    best = 0.0
    for _ in range(epochs):
        trainer.train_epoch()
        best = max(best, trainer.evaluate()["auroc"])
    return best


def headline(store: RunStore, runs: dict) -> dict[str, str]:
    """The rows of the comparison table for one profile's runs."""
    cohort = read_json(runs["preprocess"].file("cohort.json"))
    cv = read_json(runs["train"].file("summary.json"))
    tuned = read_json(runs["tune-model"].file("best_hparams.json"))
    table = pd.DataFrame(read_json(runs["analyze"].file("headline.json"))["rows"]).set_index("direction")
    row = {"samples (died)": f"{cohort['n_samples']:,} ({cohort['n_died']:,})"}
    for metric in ("auroc", "auprc"):
        row[f"{metric.upper()} (mean ± sd over folds)"] = f"{cv['mean'][metric]:.3f} ± {cv['sd'][metric]:.3f}"
    row["tuned model (validation loss)"] = (f"{tuned['optimizer']} lr {tuned['learning_rate']:.2g}, LSTM "
                                            f"{tuned['lstm_hidden']}, FC {tuned['fc_size']}, batch "
                                            f"{tuned['batch_size']} ({tuned['objective']:.3f})")
    row["control: fixed BiLSTM, best held-out AUROC"] = f"{control_auroc(runs['preprocess']):.3f}"
    for key, title in DIRECTIONS.items():
        part = table.loc[title]
        rate = "–" if pd.isna(part["success_rate"]) else f"{100 * part['success_rate']:.1f} %"
        row[f"{title}: success (attacked)"] = f"{rate} ({int(part['attacked'])})"
        row[f"{title}: median perturbed elements"] = ("–" if pd.isna(part["median_n_nonzero_best"])
                                                      else f"{part['median_n_nonzero_best']:g}")
        ranked = pd.read_csv(runs["analyze"].file(f"susceptibility_{key}_best.csv"))
        ranked = ranked[ranked["score"] > 0].head(5)
        row[f"{title}: top-5 S_j"] = ", ".join(f"{f} {s:.2f}" for f, s in zip(ranked["feature"], ranked["score"])) or "–"
        fragile = read_fragility_headline(runs["analyze"].path).get(key)
        row[f"{title}: flipped by ≤ k measured values within a clinical step (95 % CI)"] = (
            "–" if not fragile or not fragile["samples"] else
            f"{100 * fragile['success_rate']:.1f} % ({100 * fragile['ci_low']:.1f}–{100 * fragile['ci_high']:.1f}) "
            f"of {fragile['samples']}, k = {fragile['k']}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stays", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--data", help="data root to keep (default: a temp dir, removed at the end)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("icurt").setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="icurt-bench-") as tmp:
        data = Path(args.data or tmp).resolve()
        rows, seconds = {}, {}
        overrides = [*demo_sizes(), *args.overrides]
        try:
            from icurt.db.synth.cohort import run_synth
            from icurt.pipeline import run_pipeline

            run_synth(profile_config("default", data, overrides), stays=args.stays, seed=args.seed)
            for profile in PROFILES:
                cfg = profile_config(profile, data, overrides)
                started = time.perf_counter()
                runs = run_pipeline(cfg, RunStore(data))
                seconds[profile] = time.perf_counter() - started
                rows[profile] = headline(RunStore(data), runs)
        finally:
            from icurt.db.server import embedded_server

            embedded_server(data, 0).stop()
    print(f"\n{args.stays:,} synthetic ICU stays (seed {args.seed}); both profiles at the sizes of "
          f"configs/demo.toml{' and ' + ' '.join(args.overrides) if args.overrides else ''}\n")
    print("| | " + " | ".join(PROFILES) + " |")
    print("|---|" + "---|" * len(PROFILES))
    for key in rows[PROFILES[0]]:
        print(f"| {key} | " + " | ".join(rows[p][key] for p in PROFILES) + " |")
    print("| wall time (s) | " + " | ".join(f"{seconds[p]:.0f}" for p in PROFILES) + " |")


if __name__ == "__main__":
    main()
