"""Is a simpler model just as fragile? The fragility sweep's L0 curve run on the logistic-regression
baseline (icurt/baselines/torch_lr.py) of the attacked fold, beside the BiLSTM's (pure, no Ray).

Same samples: the fragility run's, restricted to those BOTH models classify correctly (the attack
only attacks correct predictions); same budgets (the "k" curve on the headline's cells, each change
within its clinical step); same attack settings (tuned on the BiLSTM by tune-attack, so the baseline
is attacked with settings not tuned for it: its success is, if anything, understated). Success
rates with 95 % Wilson intervals (analysis/fragility.py wilson).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from icurt.analysis.fragility import DIRECTION_WORDS, DIRECTIONS, wilson

LABEL = "logistic regression"


def correct(model: torch.nn.Module, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(B,) bool: the model's argmax on x (B, T, F), scaled, equals the label y (B,)."""
    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=torch.float32))
    return logits.argmax(dim=1).numpy() == np.asarray(y)


def side_by_side(sweep: pd.DataFrame, baseline_success: np.ndarray, samples: np.ndarray, curve, labels: np.ndarray,
                 headline_k: int) -> dict:
    """The comparison on `samples` (dataset indices both models classify correctly, (S,)).

    sweep: the fragility run's table (rows per sample × cell: sample_index, curve, cells, budget,
    success); baseline_success: (C, S) bool, the baseline's CurveResult.success over `curve`'s C
    cells; labels (S,). Returns {"model", "samples", "rows": per budget and direction the samples,
    each model's successes, rates and intervals, "headline": per direction the sentence at k =
    headline_k}."""
    cells = curve[0].cells
    mine = sweep[(sweep["curve"] == "k") & (sweep["cells"] == cells) & sweep["sample_index"].isin(samples)]
    rows = []
    for c, cell in enumerate(curve):
        at = mine[mine["budget"] == cell.value].set_index("sample_index")["success"].astype(bool)
        bilstm = at.reindex(samples).fillna(False).to_numpy(bool)
        for direction, label in DIRECTIONS.items():
            side = labels == label
            n = int(side.sum())
            counts = {"bilstm": int(bilstm[side].sum()), "baseline": int(baseline_success[c][side].sum())}
            row = {"budget": int(cell.value), "direction": direction, "samples": n, "cells": cells}
            for name, k in counts.items():
                low, high = wilson(k, n)
                row |= {f"{name}_successes": k, f"{name}_rate": k / n if n else float("nan"),
                        f"{name}_ci_low": low, f"{name}_ci_high": high}
            rows.append(row)
    return {"model": LABEL, "cells": cells, "samples": int(len(samples)), "rows": rows,
            "headline": {d: _sentence(rows, headline_k, d) for d in DIRECTIONS}}


def _sentence(rows: list[dict], k: int, direction: str) -> str:
    row = next((r for r in rows if r["budget"] == k and r["direction"] == direction), None)
    who, to = DIRECTION_WORDS[direction]
    if row is None or not row["samples"]:
        return f"no {who} that both models classify correctly, so no comparison at k = {k}"
    rate = lambda name: (f"{100 * row[f'{name}_rate']:.1f} % (95 % CI {100 * row[f'{name}_ci_low']:.1f}–"  # noqa: E731
                         f"{100 * row[f'{name}_ci_high']:.1f} %)")
    values = "measured values" if row.get("cells", "measured") == "measured" else "values"
    return (f"of the {row['samples']} {who} both models classify correctly, changing at most {k} {values} "
            f"flips {rate('bilstm')} to {to} for the BiLSTM and {rate('baseline')} for the {LABEL}")


def baseline_sweep(record: dict | None, fold: int, x: np.ndarray, y: np.ndarray, samples: np.ndarray,
                   measured: np.ndarray | None, sweep: pd.DataFrame, curves, hp, method, steps: np.ndarray,
                   iterations: int, headline_k: int) -> dict | None:
    """The side-by-side of one fragility run, or None when the train run's baselines.json (`record`)
    holds no logistic regression for `fold`. x (S, T, F) scaled and y (S,) are the swept samples
    (dataset indices `samples`), measured their mask (or None); curves as attack/sweep.py
    sweep_curves; the k curve on measured cells is used (else the first k curve)."""
    from icurt.attack.sweep import sweep_curve
    from icurt.baselines.torch_lr import from_record

    weights = {w["fold"]: w for w in (record or {}).get("logistic_weights", [])}
    if fold not in weights:
        return None
    model = from_record(weights[fold], int(record["hours"])).eval()
    k_curves = [c for c in curves if c[0].curve == "k"]
    curve = next((c for c in k_curves if c[0].cells == "measured"), k_curves[0])
    keep = correct(model, x, y)
    result = sweep_curve(model, x[keep], y[keep], hp, method, curve, steps,
                         None if measured is None else measured[keep], None, iterations)
    return side_by_side(sweep, result.success, samples[keep], curve, np.asarray(y)[keep], headline_k)
