"""A fragility run's files, written and read only here.

    tasks/             while it runs, a BatchStore (icurt/attack/results.py) of the finished (curve,
                       batch) tasks, each written as it lands, so an interrupted sweep resumes with
                       the tasks it finished (removed once the run is complete)
    sweep.parquet      one row per sample and budget: sample_index, stay_id, label, curve, cells,
                       budget, attacked, success, unverified (a claimed flip that failed its
                       re-verification, counted as none), found_at, n_nonzero, max_step_ratio (the largest
                       |change| of the example over its feature's clinical step), p_died_before, p_died_after
    examples.npz       the examples as COO: cell (row of cells in fragility.json), sample, t, f, value
                       (scaled units)
    fragility.json     the budgets (cells), the clinical steps in scaled units, the headline
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from icurt.attack.results import BatchStore, save_npz
from icurt.errors import IcurtError
from icurt.files import read_json, read_npz, read_parquet, write_json

SWEEP_FILE, EXAMPLES_FILE, SUMMARY_FILE, TASKS_FOLDER = "sweep.parquet", "examples.npz", "fragility.json", "tasks"


@dataclass(frozen=True)
class FragilityRun:
    sweep: pd.DataFrame
    examples: dict[str, np.ndarray]
    summary: dict


def task_name(curve: str, cells: str, batch: int) -> str:
    return f"{curve}-{cells}-{batch:05d}"


def task_store(folder: Path, plan: dict):
    """The run's store of finished tasks (a resumed sweep must have the same plan)."""
    return BatchStore(Path(folder) / TASKS_FOLDER, plan)


def write_fragility_run(folder: Path, sweep: pd.DataFrame, examples: dict[str, np.ndarray], summary: dict) -> None:
    folder = Path(folder)
    tmp = folder / f".{SWEEP_FILE}.tmp"
    sweep.to_parquet(tmp, index=False)
    os.replace(tmp, folder / SWEEP_FILE)
    save_npz(folder / EXAMPLES_FILE, examples)
    write_json(folder / SUMMARY_FILE, summary)


def read_fragility_run(folder: Path) -> FragilityRun:
    folder = Path(folder)
    for name in (SWEEP_FILE, EXAMPLES_FILE, SUMMARY_FILE):
        if not (folder / name).is_file():
            raise IcurtError(f"{folder} holds no {name}; it is not a complete fragility run — rerun "
                             "`icurt fragility` or pass another with --from")
    return FragilityRun(read_parquet(folder / SWEEP_FILE), read_npz(folder / EXAMPLES_FILE),
                        read_json(folder / SUMMARY_FILE))


def example_of(run: FragilityRun, cell: int, sample_index: int, shape: tuple[int, int]) -> np.ndarray:
    """The (T, F) example of one sample under budget `cell` (zeros when it has none)."""
    ex = run.examples
    pick = (ex["cell"] == cell) & (ex["sample"] == sample_index)
    p = np.zeros(shape, np.float32)
    p[ex["t"][pick], ex["f"][pick]] = ex["value"][pick]
    return p


def assemble(store, tasks, curve_offset: dict, positions_to_sample: np.ndarray, table: pd.DataFrame,
             steps: np.ndarray) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The sweep table and the examples (COO, dataset sample indices) from every task in `store`.

    `positions_to_sample` maps a position of the swept samples to its dataset sample_index,
    `table` is the attack run's results (for stay ids, labels and the original logits), `steps`
    (F,) the clinical steps in scaled units, `curve_offset` the first global cell of each curve."""
    rows, coo = [], {k: [] for k in ("cell", "sample", "t", "f", "value")}
    by_sample = table.set_index("sample_index")
    for task in tasks:
        _, arrays = store.read(task.name)
        offset = curve_offset[task.curve[0].curve, task.curve[0].cells]
        samples = positions_to_sample[task.sample_index]
        cell_of = arrays["p_cell"].astype(np.int64) + offset
        sample_of = positions_to_sample[arrays["p_sample"]]
        for name, values in (("cell", cell_of), ("sample", sample_of), ("t", arrays["p_t"]),
                             ("f", arrays["p_f"]), ("value", arrays["p_value"])):
            coo[name].append(values)
        ratio = np.abs(arrays["p_value"]) / steps[arrays["p_f"]]
        local = np.searchsorted(task.sample_index, arrays["p_sample"])   # a task's positions are ascending
        unverified = arrays.get("unverified", np.zeros_like(arrays["success"]))   # tasks of an older icurt
        for c, cell in enumerate(task.curve):
            here = arrays["p_cell"] == c
            count = np.bincount(local[here], minlength=len(samples))
            largest = np.zeros(len(samples))
            np.maximum.at(largest, local[here], ratio[here])
            logits = arrays["adv_logits"][c]
            rows.append(pd.DataFrame({
                "sample_index": samples, "curve": cell.curve, "cells": cell.cells, "budget": cell.value,
                "cell": offset + c, "attacked": arrays["attacked"][c], "success": arrays["success"][c],
                "unverified": unverified[c],
                "found_at": arrays["found_at"][c], "n_nonzero": count,
                "max_step_ratio": np.where(arrays["success"][c], largest, np.nan),
                "p_died_after": _p_died(logits[:, 0], logits[:, 1])}))
    sweep = pd.concat(rows, ignore_index=True)
    base = by_sample.loc[sweep["sample_index"]]
    sweep.insert(1, "stay_id", base["stay_id"].to_numpy())
    sweep.insert(2, "label", base["label"].to_numpy())
    sweep["p_died_before"] = _p_died(base["orig_logit_0"].to_numpy(), base["orig_logit_1"].to_numpy())
    sweep = sweep.sort_values(["cell", "sample_index"], kind="stable", ignore_index=True)
    examples = {k: np.concatenate(v) if v else np.zeros(0) for k, v in coo.items()}
    examples = {"cell": examples["cell"].astype(np.int16), "sample": examples["sample"].astype(np.int64),
                "t": examples["t"].astype(np.int16), "f": examples["f"].astype(np.int16),
                "value": examples["value"].astype(np.float32)}
    return sweep, examples


def _p_died(logit_0: np.ndarray, logit_1: np.ndarray) -> np.ndarray:
    """P(died) = softmax of the two logits (NaN stays NaN)."""
    return 1.0 / (1.0 + np.exp(np.asarray(logit_0, float) - np.asarray(logit_1, float)))
