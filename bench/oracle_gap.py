"""How far the trained model stays from the synthetic cohort's oracle and achievable ceiling.

For each cohort size: synth (the embedded PostgreSQL, one schema per size, kept for reruns) →
query → preprocess (reused when unchanged) → a tune-model run holding a fixed, documented set of
hyperparameters → `icurt train` with icurt's defaults (folds grouped by patient, checkpoints
chosen on an inner split) → the train run's verdict: held-out AUROC of the pooled out-of-fold
predictions beside the oracle's (knows each stay's latent severity) and the achievable ceiling's
(P(died) given what the first 48 h of measurements carry) on the same stays, with paired,
class-stratified bootstrap intervals of model − oracle and model − ceiling; beside them the train
stage's baselines on the same folds (baselines.json, icurt/baselines/: logistic regression and
boosted trees on per-feature summaries of the window) and the paired model − best baseline AUROC.

    python bench/oracle_gap.py                                    # 2,000, 8,000 and 32,000 stays
    python bench/oracle_gap.py --stays 8000 --epochs 40 --set model.readout=last_step   # one variant

Any `--set section.key=value` is applied to the config (e.g. train.checkpoint_metric=val_loss,
preprocess.winsorize_percentiles=[0.5, 99.5]); `--epochs` takes one value per size.

`--diagnose` adds where the gap goes, on the same folds and held-out stays (fold-mean AUROC):
a logistic regression on per-feature summaries of the raw measurements of the 48 h window
(synth's own values: mean and slope on the drift curve per feature, and whether it was measured)
and the same regression on the preprocessed features (mean and drift-weighted slope over the 48
hours, and whether the feature is constant). ceiling − raw read: what simple summaries and a
linear learner miss; raw read − preprocessed read: what preprocessing loses; preprocessed read −
BiLSTM: what the network fails to learn from its own inputs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icurt.config import load_config, with_overrides  # noqa: E402
from icurt.model.hparams import ModelHparams  # noqa: E402

# The fixed model: the LSTM-32 (adam 3e-3), with icurt's FC-16 head and batch 64.
HPARAMS = ModelHparams(lstm_hidden=32, lstm_activation="tanh", dropout=0.1, fc_size=16, fc_activation="relu",
                       optimizer="adam", learning_rate=3e-3, batch_size=64)
DEFAULT_EPOCHS = {2000: 30, 8000: 20, 32000: 10}
log = logging.getLogger("icurt")


def config_for(args, stays: int, epochs: int):
    return with_overrides(load_config(env={}), [
        f"paths.data={args.data}", f"db.schema=oracle_gap_{stays}_{args.seed}", "preprocess.engine=pandas",
        "ray.device=cpu", f"train.num_folds={args.folds}", f"train.epochs={epochs}", "train.eval_interval=1",
        "train.cpus_per_worker=1", *args.set])


def fixed_tune_run(store, cfg, preprocess_run):
    """A tune-model run that holds HPARAMS (the benchmark fixes the model instead of tuning it)."""
    from icurt.files import write_json

    with store.create("tune-model", cfg, inputs=[preprocess_run], extra_meta={"fixed_by": "bench/oracle_gap.py"}) as w:
        write_json(w.path / "best_hparams.json", {**HPARAMS.to_dict(), "objective": float("nan"), "trial": -1})
    return w.run


def one_size(args, stays: int, epochs: int) -> dict:
    from icurt.analysis.verdict import read_verdict
    from icurt.baselines.compare import read_baselines
    from icurt.db.synth.state import ensure_synthetic_cohort
    from icurt.pipeline import run_pipeline
    from icurt.runs import RunStore
    from icurt.stages import STAGES, run_stage

    cfg = config_for(args, stays, epochs)
    started = time.perf_counter()
    ensure_synthetic_cohort(cfg, stays, args.seed)
    store = RunStore(Path(args.data) / f"runs_{stays}_{args.seed}")
    preprocess = run_pipeline(cfg, store, stages=STAGES[:2])["preprocess"]
    prepared = time.perf_counter()
    if args.prepare_only:
        return {"stays": stays, "preprocess_run": str(preprocess.path), "prepare_s": prepared - started}
    train = run_stage("train", cfg, fixed_tune_run(store, cfg, preprocess), store=store)
    trained = time.perf_counter()
    verdict = read_verdict(train.path)
    baselines = read_baselines(train.path) or {}
    reads = linear_reads(stays, args.seed, train.path) if args.diagnose else {}
    return {**reads, "stays": stays, "epochs": epochs, "train_run": str(train.path), "samples": verdict["n_samples"],
            "died": verdict["n_died"], "model": verdict["auroc"], "oracle": verdict.get("oracle"),
            "ceiling": verdict.get("ceiling"), "baselines": baselines_of(baselines), "prepare_s": prepared - started,
            "train_s": trained - prepared,
            "settings": args.set}


def linear_reads(stays: int, seed: int, train_path: Path) -> dict:
    """Fold-mean held-out AUROC of a logistic regression on summaries of the raw window measurements
    and on summaries of the preprocessed features (see the module docstring)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    from icurt.dataset import load_dataset
    from icurt.db.synth.cohort import generate_cohort
    from icurt.db.synth.events import drift
    from icurt.runs import RunStore

    store = RunStore(train_path.parents[1])
    dataset = load_dataset(store.ancestor(store.get("train", train_path.name), "preprocess").path)
    cohort = generate_cohort(stays, seed)
    row_of_stay = {s: k for k, s in enumerate(cohort.truth["icustay_id"].to_numpy())}
    raw = cohort.evidence.summaries()[[row_of_stay[s] for s in dataset.stay_ids]]
    x = dataset.features.astype(np.float64)
    weights = drift(np.arange(x.shape[1]) + 0.5)
    weights -= weights.mean()
    preprocessed = np.c_[x.mean(axis=1), np.einsum("nhf,h->nf", x, weights), x.std(axis=1) == 0]
    out = {}
    for name, features in (("raw_read", raw), ("preprocessed_read", preprocessed)):
        total = 0.0
        for fold in sorted(train_path.glob("fold_*")):
            held = np.load(fold / "val_indices.npy")
            fit = np.setdiff1d(np.arange(len(dataset.labels)), held)
            scaler = StandardScaler().fit(features[fit])
            model = LogisticRegression(max_iter=5000).fit(scaler.transform(features[fit]), dataset.labels[fit])
            p = model.predict_proba(scaler.transform(features[held]))[:, 1]
            total += len(held) * roc_auc_score(dataset.labels[held], p)
        out[name] = total / len(dataset.labels)
    return out


def baselines_of(result: dict) -> dict:
    """Fold-mean held-out AUROC estimates of the train stage's baselines (baselines.json) and the
    paired BiLSTM − best baseline difference; {} for a run without them."""
    if not result:
        return {}
    return {**{name: m["auroc"] for name, m in result["models"].items()}, "difference": result["difference"],
            "best": result["best"]}


def auroc_cell(estimate: dict | None) -> str:
    return f"{estimate['value']:.3f}" if estimate else "–"


def ci(estimate: dict | None) -> str:
    if not estimate:
        return "–"
    return f"{estimate['value']:+.3f} [{estimate['low']:+.3f}, {estimate['high']:+.3f}]"


def table(rows: list[dict]) -> str:
    lines = ["| stays | samples (died) | epochs | model AUROC [95 % CI] | logistic regression | boosted trees | "
             "model − best baseline | oracle | model − oracle | ceiling | model − ceiling | train time |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m, b = r["model"], r.get("baselines") or {}
        lines.append(
            f"| {r['stays']:,} | {r['samples']:,} ({r['died']:,}) | {r['epochs']} | "
            f"{m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}] | {auroc_cell(b.get('logistic_regression'))} | "
            f"{auroc_cell(b.get('boosted_trees'))} | {ci(b.get('difference'))} | {r['oracle']['auroc']:.3f} | "
            f"{ci(r['oracle']['gap'])} | "
            f"{r['ceiling']['auroc']:.3f} | {ci(r['ceiling']['gap'])} | {r['train_s'] / 60:.1f} min |")
    return "\n".join(lines)


def diagnosis(rows: list[dict]) -> str:
    lines = ["| stays | oracle | ceiling | linear read of the raw window | linear read of the preprocessed features | "
             "BiLSTM |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stays']:,} | {r['oracle']['auroc']:.3f} | {r['ceiling']['auroc']:.3f} | "
                     f"{r['raw_read']:.3f} | {r['preprocessed_read']:.3f} | {r['model']['value']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--epochs", type=int, nargs="+", help="epochs per size (default: 30, 20, 10)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42, help="synth seed")
    parser.add_argument("--data", default="/tmp/icurt-oracle-gap", help="data root (embedded PostgreSQL, runs)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", help="also write the rows as JSON here")
    parser.add_argument("--prepare-only", action="store_true", help="only synth, query and preprocess (kept for reruns)")
    parser.add_argument("--diagnose", action="store_true", help="also the linear reads of raw and preprocessed data")
    args = parser.parse_args(argv)
    epochs = args.epochs or [DEFAULT_EPOCHS.get(n, 15) for n in args.stays]
    if len(epochs) != len(args.stays):
        parser.error("--epochs takes one value per --stays value")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    rows = []
    for stays, n_epochs in zip(args.stays, epochs):
        rows.append(one_size(args, stays, n_epochs))
        if args.prepare_only:
            print(rows[-1], flush=True)
            continue
        print(table(rows[-1:]), flush=True)
    if args.prepare_only:
        return 0
    print(f"\nmodel: {HPARAMS.to_dict()}; settings: {args.set or 'defaults'}\n")
    print(table(rows))
    if args.diagnose:
        print("\nwhere the gap goes (fold-mean held-out AUROC on the same stays):\n")
        print(diagnosis(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
