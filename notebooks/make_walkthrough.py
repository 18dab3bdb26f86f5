"""Writes notebooks/walkthrough.ipynb (outputs cleared) from the cells below: edit here, then run
`python notebooks/make_walkthrough.py`; tests/test_notebook.py checks the two agree."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "walkthrough.ipynb"

CELLS = [
    ("md", """# icurt walkthrough: the whole study, cell by cell

ICU in-hospital mortality from the first 48 hours of an ICU stay (a BiLSTM over 48 h × 19 lab and
vital-sign features), then a sparse adversarial attack on that model: how few measurements, changed
by how little, flip its prediction?

This notebook runs the same eight stages as `icurt demo`, in the reference study's order, through
icurt's Python API (`icurt.run(stage, cfg)` calls the very function `icurt <stage>` calls), and
opens what each stage wrote as Python values. At the demo's size (2,000 synthetic ICU stays) the
stages take as long as `icurt demo`'s (the README's Measured section: minutes on a laptop CPU).
Everything it writes goes under the data root (`./data`, or `ICURT_DATA`), one folder per run, as
with the command line: `icurt runs` lists the same runs."""),
    ("code", """%matplotlib inline
import os

import numpy as np
import pandas as pd
import torch
from IPython.display import display

import icurt"""),
    ("md", """## 1. Configure

Settings are typed, frozen and checked once: `configs/default.toml` (icurt's method) under a profile —
`"demo"` (laptop sizes), `"reference"` (the reference study's choices) or your own TOML file — then
`ICURT_DATA` / `ICURT_DSN` from the environment, then keyword overrides `section__key=value`.
`cfg.with_(...)` returns a changed copy. `ICURT_NOTEBOOK_CONFIG` lets CI run this notebook on a tiny config."""),
    ("code", """cfg = icurt.load_config(os.environ.get("ICURT_NOTEBOOK_CONFIG", "demo"))
print("profile:", cfg.profile.name, "| data root:", cfg.paths.data, "| synthetic stays:", cfg.synth.stays)
cfg.train"""),
    ("code", """# a changed copy, checked like a config file (cfg itself is unchanged)
cfg.with_(train__epochs=10, fragility__clinical_step__heartrate=5.0).train.epochs"""),
    ("md", """## 2. Query

With no database configured, icurt starts an embedded PostgreSQL under the data root.
`synth_cohort` fills it with a synthetic, MIMIC-III-shaped cohort (what `icurt db synth` does; skipped
when that cohort is already there); point `ICURT_DSN` at a real MIMIC-III database instead and skip
that cell. The query stage runs the four read-only SQL queries into Parquet files.

Look at: the rows per query, and the raw measurements in clinical units."""),
    ("code", """icurt.synth_cohort(cfg)
query = icurt.run("query", cfg)
query.stats()"""),
    ("code", """query.table("pivoted_vital").head()"""),
    ("md", """## 3. Preprocess, and look inside

The query rows become one array of shape (N stays, 48 hours, 19 features), scaled to [0, 1] per
feature, with an in-hospital-mortality label per stay. `measured` says which cells hold a real
measurement (the rest are interpolated, held or imputed) — the fragility stage only changes those.

Look at: the death rate, how much of each feature was actually measured, and one stay in clinical units."""),
    ("code", """prep = icurt.run("preprocess", cfg, from_=query)
ds = prep.dataset()
print("features", ds.features.shape, ds.features.dtype, "| died:", int(ds.labels.sum()), f"({ds.labels.mean():.1%})")
prep.measured_share().sort_values().round(3).to_frame().T"""),
    ("code", """stay = prep.stay(0)          # hours × features, clinical units
stay[["heartrate", "sysbp", "resprate", "spo2"]].plot(subplots=True, figsize=(8, 5), title=f"stay {ds.stay_ids[0]}");"""),
    ("md", """## 4. Tune and train the model

tune-model searches the BiLSTM's hyperparameters (Ray Tune + Optuna TPE + ASHA, the study kept in
PostgreSQL). train cross-validates the best ones: k folds grouped by patient, each fold's checkpoint
chosen without its held-out samples, which score it.

Look at: the trials, the per-fold held-out metrics, and the verdict — how far the model is from
what the data allow (on the synthetic cohort: the oracle and the achievable ceiling)."""),
    ("code", """tune = icurt.run("tune-model", cfg, from_=prep)
display(tune.trials().drop(columns=["fail_reason"]))
tune.best()"""),
    ("code", """train = icurt.run("train", cfg, from_=tune)
train.metrics()[["best_epoch", "auroc", "auprc", "brier", "f1", "val_loss"]]"""),
    ("code", """print(train.verdict_text())"""),
    ("code", """# each fold's model is a torch module: input (B, 48, 19) scaled, output (B, 2) logits
fold = train.folds[0]
model = train.model(fold)
rows = train.held_out(fold)
p_died = train.predict(ds.features[rows], fold)
print(model)
print(f"fold {fold}: {len(rows)} held-out stays, mean P(died) {p_died.mean():.3f}, observed {ds.labels[rows].mean():.3f}")"""),
    ("md", """## 5. Tune the attack, then attack

tune-attack tunes the sparse attack's hyperparameters on one fold's model (by default the fold with
the median validation loss); attack runs the tuned attack on that fold's held-out samples. An
adversarial example adds a perturbation P (hours × features) to a stay so that the model's
prediction flips; icurt keeps the first example found and the best (sparsest, smallest).

Look at: the success rate per original label, and one example in clinical units: which
measurements, at which hours, changed from what to what."""),
    ("code", """tune_attack = icurt.run("tune-attack", cfg, from_=train)
best = tune_attack.best()
print(f"attacked fold {best.fold} ({best.fold_choice}); score {best.score:.4g}")
best.hp"""),
    ("code", """attack = icurt.run("attack", cfg, from_=tune_attack)
results = attack.results()
results.groupby("label")[["attacked", "success"]].mean().rename(index={0: "survived", 1: "died"})"""),
    ("code", """flipped = results[results["success"]].sort_values("n_nonzero_best")
if len(flipped):
    sample = int(flipped["sample_index"].iloc[0])
    print(f"stay {ds.stay_ids[sample]} (died: {ds.labels[sample]}): {len(attack.example(sample))} changed cells")
    display(attack.example(sample))
else:
    print("the attack found no adversarial example in this run")"""),
    ("md", """## 6. Fragility

The attack again, under budgets a clinician can read: at most k changed cells, each within its
feature's clinical step (e.g. 10 mmHg of blood pressure), only where something was measured — and
the same along a scale of the clinical steps. Each sample's minimal k says how fragile its
prediction is.

Look at: the headline sentence, the success-versus-budget curves with their 95 % intervals, and a
worked patient."""),
    ("code", """fragility = icurt.run("fragility", cfg, from_=attack)
for direction, headline in fragility.headline().items():
    print(direction, headline["sentence"])
curves = fragility.curves()
curves[curves["curve"] == "k"].pivot_table(index="budget", columns=["direction", "cells"], values="success_rate")"""),
    ("code", """figures = fragility.figures(count=1)
figures["fragility_curves.png"]"""),
    ("code", """examples = fragility.worked_examples(count=1)
for example in examples:
    print(f"stay {example.stay_id}: P(died) {example.p_died_before:.2f} → {example.p_died_after:.2f} "
          f"with k = {example.minimal_k:g} changed cells")
    display(example.changes)
if not examples:
    print("no sample flipped under these budgets")"""),
    ("md", """## 7. Analyze

Statistics of the attack (success, sizes, where in the stay and in which measurements the
perturbations fall, the susceptibility ranking), its plots and one self-contained HTML report.

Look at: the headline table, the susceptibility ranking, the figures; open `report.html` for all of it."""),
    ("code", """report = icurt.run("analyze", cfg, from_=fragility)
display(report.headline())
report.tables()["susceptibility_1to0_best"].head(5)"""),
    ("code", """figures = report.figures()
print("report:", report.report_path)
print(sorted(figures))
figures["features_best.png"]"""),
    ("md", """## Which run fed which

Every run records its input run; `lineage()` walks back to the query, and `icurt.list_runs(stage)` /
`icurt.open_run(run_id)` reopen runs later (also those the command line wrote)."""),
    ("code", """[(run.stage, run.run_id) for run in report.lineage()]"""),
    ("md", """When you are done, stop the embedded PostgreSQL (its data stays under the data root; the next
`icurt` command or `synth_cohort` starts it again)."""),
    ("code", """icurt.stop_database(cfg)"""),
]


def build() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(text) if kind == "md" else new_code_cell(text) for kind, text in CELLS]
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"}})
    for cell in notebook.cells:     # stable ids: regenerating leaves the file unchanged
        cell.id = f"cell-{notebook.cells.index(cell):02d}"
    return notebook


def render() -> str:
    return nbformat.writes(build()) + "\n"


if __name__ == "__main__":
    NOTEBOOK.write_text(render())
    print(f"wrote {NOTEBOOK}", file=sys.stderr)
