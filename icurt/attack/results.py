"""An attack run's files, written and read only here: results.parquet (one row per sample),
perturbations.npz (COO), attack_config.json (the attack that ran) and feature_names.json; while
it runs, batches/ (BatchStore: each finished batch, so an interrupted run resumes).
results.parquet's loss_first / loss_best are the attack's loss (SparseAttack.norm) at each example;
`unverified` flags a claimed flip that failed its re-verification (success is then False).

Only the non-zero elements of P are stored: for kind in (first, best), `{kind}_sample` (int64
sample_index), `{kind}_t` (int16 hour), `{kind}_f` (int16 feature), `{kind}_value` (float32,
scaled units), and `shape` = [N, T, F] of the dataset. Sizes of a sample without an adversarial
example are 0 / NaN. Reading needs no torch (the analysis stage reads attack runs).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from icurt.attack.objectives import perturbation_sizes
from icurt.errors import IcurtError
from icurt.files import read_json, read_npz, read_parquet, write_json

RESULTS_FILE, PERTURBATIONS_FILE = "results.parquet", "perturbations.npz"
CONFIG_FILE, FEATURES_FILE = "attack_config.json", "feature_names.json"
KINDS = ("first", "best")
COO_PARTS = {"sample": np.int64, "t": np.int16, "f": np.int16, "value": np.float32}
SIZE_METRICS = ("n_nonzero", "l1", "maxabs")
REQUIRED_COLUMNS = ("sample_index", "label", "attacked", "success",
                    *(f"{m}_{k}" for m in SIZE_METRICS for k in KINDS))


@dataclass(frozen=True)
class Perturbations:
    """The non-zero elements of P for one kind (first or best example), as COO arrays."""

    sample: np.ndarray  # int64 sample_index
    t: np.ndarray       # hour
    f: np.ndarray       # feature
    value: np.ndarray   # P in scaled units


@dataclass(frozen=True)
class AttackRun:
    """What an attack run holds, checked."""

    table: pd.DataFrame                       # results.parquet, by sample_index
    perturbations: dict[str, Perturbations]   # kind -> COO
    shape: tuple[int, int, int]               # (N, T, F) of the dataset
    config: dict | None                       # attack_config.json (None if absent)
    feature_names: list[str] | None           # feature_names.json (None if absent)


def results_table(sample_index: np.ndarray, stay_ids: np.ndarray, labels: np.ndarray,
                  results) -> pd.DataFrame:
    """The contract's per-sample rows for these samples (in the given order)."""
    if results.orig_logits.shape[1] != 2:
        raise IcurtError("the attacked model must output 2 logits (survived, died); check the train run")
    table = pd.DataFrame({
        "sample_index": np.asarray(sample_index, np.int64), "stay_id": np.asarray(stay_ids, np.int64),
        "label": np.asarray(labels, np.int64),
        "orig_logit_0": results.orig_logits[:, 0], "orig_logit_1": results.orig_logits[:, 1],
        "orig_pred": results.orig_logits.argmax(axis=1).astype(np.int64),
        "attacked": results.attacked.astype(bool), "success": results.success.astype(bool),
        "unverified": results.unverified.astype(bool),
        "first_iteration": results.first_iteration.astype(np.int64),
        "best_iteration": results.best_iteration.astype(np.int64),
        "adv_logit_0": results.adv_logits[:, 0], "adv_logit_1": results.adv_logits[:, 1],
        "loss_first": results.first_loss.astype(np.float32), "loss_best": results.best_loss.astype(np.float32),
    })
    for kind in KINDS:
        n_nonzero, l1, maxabs = perturbation_sizes(getattr(results, f"{kind}_p"))
        found = results.success.astype(bool)
        table[f"n_nonzero_{kind}"] = np.where(found, n_nonzero, 0).astype(np.int64)
        table[f"l1_{kind}"] = np.where(found, l1, np.nan)
        table[f"maxabs_{kind}"] = np.where(found, maxabs, np.nan)
    return table


def sparse_perturbations(sample_index: np.ndarray, results) -> dict[str, np.ndarray]:
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


def write_attack_run(folder: Path, table: pd.DataFrame, perturbations: dict[str, np.ndarray],
                     shape: tuple[int, int, int], config: dict, feature_names: list[str]) -> None:
    """results.parquet (rows by sample_index), perturbations.npz, attack_config.json and
    feature_names.json, each written beside and then renamed."""
    folder = Path(folder)
    if table["sample_index"].duplicated().any():
        raise ValueError("a sample appears twice in the attack results")
    table = table.sort_values("sample_index", kind="stable").reset_index(drop=True)
    tmp = folder / f".{RESULTS_FILE}.tmp"
    table.to_parquet(tmp, index=False)
    os.replace(tmp, folder / RESULTS_FILE)
    save_npz(folder / PERTURBATIONS_FILE, {"shape": np.asarray(shape, np.int64), **perturbations})
    write_json(folder / CONFIG_FILE, config)
    write_json(folder / FEATURES_FILE, list(feature_names))


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """A compressed .npz (what np.load reads) whose bytes depend only on the arrays: fixed member
    times, unlike np.savez_compressed. Written beside, then renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(member, "w", force_zip64=True) as out:
                np.lib.format.write_array(out, np.asanyarray(array), allow_pickle=False)
    os.replace(tmp, path)


class BatchStore:
    """The finished batches of a long job, one file each, so an interrupted job resumes where it
    stopped: <folder>/plan.json (what the job is; a resumed job must have the same plan) and
    <folder>/batch-<key>.npz per finished batch, holding its table rows (`row.<column>`, in order)
    and arrays (`array.<name>`). Keys are strings ("000042"; a sweep might use "budget-3_000042").
    A batch file appears only when complete (written beside, then renamed)."""

    def __init__(self, folder: Path, plan: dict):
        self.folder = Path(folder)
        path = self.folder / "plan.json"
        if path.is_file():
            recorded = read_json(path)
            if recorded != plan:
                changed = sorted(k for k in {*plan, *recorded} if plan.get(k) != recorded.get(k))
                raise IcurtError(f"the interrupted run in {self.folder.parent} planned other batches "
                                 f"({', '.join(changed)} differ); start a new run instead of --resume")
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(path, plan)

    @staticmethod
    def recorded_plan(folder: Path) -> dict:
        """The plan.json an (interrupted) job left in `folder`, or {} when it left none."""
        path = Path(folder) / "plan.json"
        return read_json(path) if path.is_file() else {}

    def done(self) -> set[str]:
        return {p.name[len("batch-"):-len(".npz")] for p in self.folder.glob("batch-*.npz")}

    def write(self, key: str, rows: pd.DataFrame, arrays: Mapping[str, np.ndarray]) -> None:
        content = {f"row.{c}": rows[c].to_numpy() for c in rows.columns}
        save_npz(self.folder / f"batch-{key}.npz", {**content, **{f"array.{k}": v for k, v in arrays.items()}})

    def read(self, key: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
        path = self.folder / f"batch-{key}.npz"
        npz = read_npz(path, fix=f"delete it ({path.name}) and resume again: its batch is redone")
        rows = pd.DataFrame({k[4:]: v for k, v in npz.items() if k.startswith("row.")})
        arrays = {k[6:]: v for k, v in npz.items() if k.startswith("array.")}
        return rows, arrays

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def read_attack_run(folder: Path) -> AttackRun:
    """The checked contents of an attack run folder; IcurtError naming what is missing or broken."""
    folder = Path(folder)
    for name in (RESULTS_FILE, PERTURBATIONS_FILE):
        if not (folder / name).is_file():
            raise IcurtError(f"{folder} holds no {name}; it is not a complete attack run — rerun "
                             "`icurt attack` or pass another with --from")
    table = read_parquet(folder / RESULTS_FILE)
    check_results(table)
    perturbations, shape = perturbations_from_arrays(read_npz(folder / PERTURBATIONS_FILE))
    optional = {name: read_json(folder / name) if (folder / name).is_file() else None
                for name in (CONFIG_FILE, FEATURES_FILE)}
    return AttackRun(table, perturbations, shape, optional[CONFIG_FILE], optional[FEATURES_FILE])


def check_results(results: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in results.columns]
    if missing:
        raise IcurtError(f"results.parquet lacks column(s) {', '.join(missing)}; it does not follow "
                         "the attack contract — rerun `icurt attack`")


def perturbations_from_arrays(arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, Perturbations], tuple]:
    """Check and unpack perturbations.npz: ({kind: Perturbations}, shape (N, T, F))."""
    if "shape" not in arrays or np.asarray(arrays["shape"]).size != 3:
        raise IcurtError("perturbations.npz has no 3-value 'shape'; rerun `icurt attack`")
    shape = tuple(int(v) for v in np.asarray(arrays["shape"]).ravel())
    found = {}
    for kind in KINDS:
        keys = [f"{kind}_{part}" for part in COO_PARTS]
        missing = [k for k in keys if k not in arrays]
        if missing:
            raise IcurtError(f"perturbations.npz lacks {', '.join(missing)}; rerun `icurt attack`")
        sample, t, f = (np.asarray(arrays[k]).astype(np.int64).ravel() for k in keys[:3])
        value = np.asarray(arrays[keys[3]], dtype=np.float64).ravel()
        if not len(sample) == len(t) == len(f) == len(value):
            raise IcurtError(f"perturbations.npz: the {kind}_* arrays differ in length; rerun `icurt attack`")
        if ((t < 0) | (t >= shape[1]) | (f < 0) | (f >= shape[2])).any():
            raise IcurtError(f"perturbations.npz: {kind} hours or features fall outside shape {shape}; "
                             "rerun `icurt attack`")
        found[kind] = Perturbations(sample, t, f, value)
    return found, shape


def dense_results(attack: AttackRun):
    """SampleResults for the table's rows (in its order), perturbations made dense again."""
    from icurt.attack.samples import SampleResults

    table, shape = attack.table, attack.shape
    position = {int(s): i for i, s in enumerate(table["sample_index"])}
    dense = {}
    for kind in KINDS:
        coo = attack.perturbations[kind]
        p = np.zeros((len(table), shape[1], shape[2]), np.float32)
        rows = np.array([position[int(s)] for s in coo.sample], dtype=np.int64)
        p[rows, coo.t, coo.f] = coo.value
        dense[kind] = p
    column = lambda name: table[name].to_numpy()  # noqa: E731
    loss = {kind: column(f"loss_{kind}").astype(np.float32) if f"loss_{kind}" in table
            else np.full(len(table), np.nan, np.float32) for kind in KINDS}  # runs before the loss columns
    unverified = column("unverified").astype(bool) if "unverified" in table \
        else np.zeros(len(table), bool)  # runs before the re-verification
    return SampleResults(
        success=column("success").astype(bool), first_iteration=column("first_iteration").astype(np.int64),
        best_iteration=column("best_iteration").astype(np.int64), first_loss=loss["first"],
        best_loss=loss["best"], first_p=dense["first"], best_p=dense["best"],
        orig_logits=np.stack([column("orig_logit_0"), column("orig_logit_1")], axis=1).astype(np.float32),
        adv_logits=np.stack([column("adv_logit_0"), column("adv_logit_1")], axis=1).astype(np.float32),
        attacked=column("attacked").astype(bool),
        unverified=unverified)
