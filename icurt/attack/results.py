"""An attack run's results on disk: results.parquet (one row per sample) and perturbations.npz (COO).

Only the non-zero elements of P are stored: for kind in (first, best), `{kind}_sample` (int64
sample_index), `{kind}_t` (int16 hour), `{kind}_f` (int16 feature), `{kind}_value` (float32), and
`shape` = [N, T, F] of the dataset. Sizes of a sample without an adversarial example are 0 / NaN.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from icurt.attack.samples import SampleResults
from icurt.attack.objectives import perturbation_sizes
from icurt.errors import IcurtError

RESULTS_FILE, PERTURBATIONS_FILE = "results.parquet", "perturbations.npz"
KINDS = ("first", "best")
COO_PARTS = {"sample": np.int64, "t": np.int16, "f": np.int16, "value": np.float32}


def results_table(sample_index: np.ndarray, stay_ids: np.ndarray, labels: np.ndarray,
                  results: SampleResults) -> pd.DataFrame:
    """The contract's per-sample rows for these samples (in the given order)."""
    if results.orig_logits.shape[1] != 2:
        raise IcurtError("the attacked model must output 2 logits (survived, died); check the train run")
    table = pd.DataFrame({
        "sample_index": np.asarray(sample_index, np.int64), "stay_id": np.asarray(stay_ids, np.int64),
        "label": np.asarray(labels, np.int64),
        "orig_logit_0": results.orig_logits[:, 0], "orig_logit_1": results.orig_logits[:, 1],
        "orig_pred": results.orig_logits.argmax(axis=1).astype(np.int64),
        "attacked": results.attacked.astype(bool), "success": results.success.astype(bool),
        "first_iteration": results.first_iteration.astype(np.int64),
        "best_iteration": results.best_iteration.astype(np.int64),
        "adv_logit_0": results.adv_logits[:, 0], "adv_logit_1": results.adv_logits[:, 1],
    })
    for kind in KINDS:
        n_nonzero, l1, maxabs = perturbation_sizes(getattr(results, f"{kind}_p"))
        found = results.success.astype(bool)
        table[f"n_nonzero_{kind}"] = np.where(found, n_nonzero, 0).astype(np.int64)
        table[f"l1_{kind}"] = np.where(found, l1, np.nan)
        table[f"maxabs_{kind}"] = np.where(found, maxabs, np.nan)
    return table


def sparse_perturbations(sample_index: np.ndarray, results: SampleResults) -> dict[str, np.ndarray]:
    """The non-zero elements of the first and best perturbations as COO arrays."""
    arrays = {}
    for kind in KINDS:
        p = getattr(results, f"{kind}_p")
        row, t, f = np.nonzero(p)
        parts = {"sample": np.asarray(sample_index, np.int64)[row], "t": t, "f": f, "value": p[row, t, f]}
        arrays.update({f"{kind}_{name}": parts[name].astype(dtype) for name, dtype in COO_PARTS.items()})
    return arrays


def merge_perturbations(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate COO arrays of several batches, ordered by sample, hour and feature."""
    merged = {}
    for kind in KINDS:
        keys = [f"{kind}_{name}" for name in COO_PARTS]
        columns = {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, COO_PARTS[k.split("_")[1]])
                   for k in keys}
        order = np.lexsort((columns[keys[2]], columns[keys[1]], columns[keys[0]]))
        merged.update({k: v[order] for k, v in columns.items()})
    return merged


def write_results(folder: Path, table: pd.DataFrame, perturbations: dict[str, np.ndarray],
                  shape: tuple[int, int, int]) -> None:
    """results.parquet (rows by sample_index) and perturbations.npz, each written then renamed."""
    folder = Path(folder)
    if table["sample_index"].duplicated().any():
        raise ValueError("a sample appears twice in the attack results")
    table = table.sort_values("sample_index", kind="stable").reset_index(drop=True)
    tmp = folder / f".{RESULTS_FILE}.tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, folder / RESULTS_FILE)
    tmp = folder / f".{PERTURBATIONS_FILE}.tmp.npz"
    np.savez_compressed(tmp, shape=np.asarray(shape, np.int64), **perturbations)
    os.replace(tmp, folder / PERTURBATIONS_FILE)


def read_results(folder: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray], tuple[int, int, int]]:
    """(results table, COO arrays, shape) of an attack run folder."""
    folder = Path(folder)
    for name in (RESULTS_FILE, PERTURBATIONS_FILE):
        if not (folder / name).is_file():
            raise IcurtError(f"{folder} holds no {name}; is it a completed attack run?")
    table = pd.read_parquet(folder / RESULTS_FILE)
    with np.load(folder / PERTURBATIONS_FILE, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    shape = tuple(int(v) for v in arrays.pop("shape"))
    return table, arrays, shape


def dense_results(table: pd.DataFrame, perturbations: dict[str, np.ndarray],
                  shape: tuple[int, int, int]) -> SampleResults:
    """SampleResults for the table's rows (in its order), perturbations made dense again."""
    position = {int(s): i for i, s in enumerate(table["sample_index"])}
    dense = {}
    for kind in KINDS:
        p = np.zeros((len(table), shape[1], shape[2]), np.float32)
        rows = np.array([position[int(s)] for s in perturbations[f"{kind}_sample"]], dtype=np.int64)
        p[rows, perturbations[f"{kind}_t"], perturbations[f"{kind}_f"]] = perturbations[f"{kind}_value"]
        dense[kind] = p
    column = lambda name: table[name].to_numpy()  # noqa: E731
    return SampleResults(
        success=column("success").astype(bool), first_iteration=column("first_iteration").astype(np.int64),
        best_iteration=column("best_iteration").astype(np.int64), first_p=dense["first"], best_p=dense["best"],
        orig_logits=np.stack([column("orig_logit_0"), column("orig_logit_1")], axis=1).astype(np.float32),
        adv_logits=np.stack([column("adv_logit_0"), column("adv_logit_1")], axis=1).astype(np.float32),
        attacked=column("attacked").astype(bool))
