"""Benchmark of stage 2 (preprocess): Modin engine vs pandas engine vs a plain per-stay loop.

    .venv/bin/python bench/preprocess.py [--stays 40000] [--subset 2000] [--query-run PATH]

Builds the synthetic cohort's query run (icurt.db.synth + icurt.db.query on a throwaway embedded
PostgreSQL in a temp dir; falls back to the simple stand-in generator at the end of this file,
clearly reported, when those modules are missing or with --simple), or reuses one with --query-run. Then
times: the Parquet read of the columns preprocess needs; the Modin engine and the pandas engine on
the whole cohort; and on the same random subset of stays: both engines and a per-stay loop
(pandas resample('1h').mean().interpolate() per stay, as naive code does it), whose output is
checked against the engines'. Prints the times and the ratios.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icurt.config import load_config, with_overrides  # noqa: E402
from icurt.dataset import load_dataset  # noqa: E402
from icurt.preprocess import steps  # noqa: E402
from icurt.preprocess.sources import source_features  # noqa: E402
from icurt.stages import run_stage  # noqa: E402
from icurt.runs import Run, RunStore  # noqa: E402

QUERY_FILES = (steps.DETAIL, *steps.SOURCES)


def build_query_run(workdir: Path, stays: int, seed: int, simple: bool) -> tuple[Path, str]:
    """A query run of the synthetic cohort under `workdir`; returns its path and how it was made."""
    cfg = with_overrides(load_config(env={}), [f"paths.data={workdir}", "db.dsn=",
                                               f"synth.stays={stays}", f"synth.seed={seed}"])
    try:
        if simple:
            raise ImportError("--simple")
        from icurt.db.server import embedded_server
        from icurt.db.synth.cohort import run_synth
    except ImportError as exc:
        print(f"!! using the SIMPLE stand-in generator (write_simple_query_run below): {exc}")
        with RunStore(workdir).create("query", cfg) as w:
            write_simple_query_run(w.path, stays, seed)
        return w.run.path, "simple stand-in generator"
    try:
        run_synth(cfg, stays=stays, seed=seed)
        return run_stage("query", cfg).path, "icurt.db.synth + icurt.db.query (embedded PostgreSQL)"
    finally:
        embedded_server(cfg.paths.data, cfg.db.embedded_port).stop()


def subset_query_run(source: Path, workdir: Path, stays: int, seed: int) -> tuple[Path, int]:
    """A copy of the query run with `stays` random stays of the eligible ones; and their number."""
    cfg = load_config(env={})
    detail = pd.read_parquet(source / f"{steps.DETAIL}.parquet")
    eligible = steps.prefilter(detail, cfg.preprocess).stays
    eligible = eligible[eligible["observed_hours"] >= cfg.preprocess.min_observation_hours]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible["icustay_id"].to_numpy(), min(stays, len(eligible)), replace=False))
    folder = workdir / "subset-query"
    folder.mkdir(parents=True)
    for name in QUERY_FILES:
        frame = pd.read_parquet(source / f"{name}.parquet")
        frame[frame["icustay_id"].isin(chosen)].to_parquet(folder / f"{name}.parquet", index=False)
    return folder, len(eligible)


def time_read(folder: Path, settings) -> float:
    started = time.perf_counter()
    for name, columns in steps.required_columns(settings).items():
        pd.read_parquet(folder / f"{name}.parquet", columns=columns)
    return time.perf_counter() - started


def time_engine(folder: Path, engine: str, workdir: Path) -> tuple[float, Path]:
    root = workdir / f"runs-{engine}-{folder.name}"
    cfg = with_overrides(load_config(env={}), [f"paths.data={root}", "ray.num_cpus=2",
                                               "ray.include_dashboard=false"])
    query_run = Run(stage="query", run_id=folder.name, path=folder, meta={})
    started = time.perf_counter()
    run = run_stage("preprocess", cfg, query_run, store=RunStore(root), engine=engine)
    return time.perf_counter() - started, run.path


def per_stay_loop(folder: Path) -> tuple[float, dict]:
    """The naive way: for each stay, pandas resample + interpolate; then percentiles and scaling."""
    settings = load_config(env={}).preprocess
    features, hours = list(settings.features), settings.observation_window_hours
    started = time.perf_counter()
    stays = steps.prefilter(pd.read_parquet(folder / f"{steps.DETAIL}.parquet"), settings).stays
    stays = stays[stays["observed_hours"] >= settings.min_observation_hours].sort_values("icustay_id")
    grouped = {}
    for source, names in source_features(features, settings).items():
        table = pd.read_parquet(folder / f"{source}.parquet", columns=["icustay_id", "charttime", *names])
        grouped[source] = dict(tuple(table.dropna(subset=["icustay_id"]).groupby("icustay_id")))
    measured, ids, labels = [], [], []
    for stay in stays.itertuples():
        start = stay.window_start
        frames = []
        for source, names in source_features(features, settings).items():
            rows = grouped[source].get(stay.icustay_id)
            if rows is None:
                continue
            rows = rows.groupby("charttime")[names].mean()
            frames.append(rows[(rows.index >= start) & (rows.index < start + pd.Timedelta(hours=hours))])
        stay_frame = pd.concat(frames, axis=1).reindex(columns=features)
        if stay_frame.notna().sum().sum() == 0:
            continue
        hourly = stay_frame.resample("1h", origin=start).mean()
        measured.append(hourly.reindex(pd.date_range(start, periods=hours, freq="h")).to_numpy())
        ids.append(stay.icustay_id)
        labels.append(stay.hospital_expire_flag)
    raw = np.stack(measured)
    values = raw.reshape(-1, len(features))
    low, high = np.nanpercentile(values, settings.winsorize_percentiles, axis=0)
    median = np.nanmedian(values, axis=0)
    out = np.empty(raw.shape, dtype=np.float32)
    for i, series in enumerate(raw):   # interpolation per stay, as naive code does
        filled = pd.DataFrame(series).interpolate(limit_direction="both").fillna(
            pd.Series(median)).to_numpy()
        out[i] = (np.clip(filled, low, high) - low) / np.where(high > low, high - low, 1)
    return time.perf_counter() - started, {"features": out, "stay_ids": np.array(ids)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stays", type=int, default=40_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--subset", type=int, default=2_000)
    parser.add_argument("--query-run", type=Path, help="reuse this query run folder")
    parser.add_argument("--simple", action="store_true", help="use the simple stand-in generator")
    parser.add_argument("--workdir", type=Path, help="keep work files here (default: a temp dir)")
    parser.add_argument("--skip-full", action="store_true", help="only the subset comparison")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("icurt").setLevel(logging.INFO)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="icurt-bench-preprocess-"))
    workdir.mkdir(parents=True, exist_ok=True)
    source, how = (args.query_run, "given (--query-run)") if args.query_run else build_query_run(
        workdir / "build", args.stays, args.seed, args.simple)
    sizes = {name: len(pd.read_parquet(source / f"{name}.parquet", columns=["icustay_id"]))
             for name in QUERY_FILES}
    print(f"query run: {source} ({how}); rows: {sizes}")

    from icurt.ray_runtime import init_ray

    started = time.perf_counter()
    init_ray(with_overrides(load_config(env={}), ["ray.num_cpus=2", "ray.include_dashboard=false"]))
    print(f"Ray start: {time.perf_counter() - started:.1f} s (not counted below)")
    report = {}
    if not args.skip_full:
        report["read"] = time_read(source, load_config(env={}).preprocess)
        report["pandas"], pandas_run = time_engine(source, "pandas", workdir)
        report["modin"], modin_run = time_engine(source, "modin", workdir)
        same = load_dataset(pandas_run).features.tobytes() == load_dataset(modin_run).features.tobytes()
        n = len(load_dataset(modin_run).labels)
        print(f"\nfull cohort ({n:,} samples): Parquet read {report['read']:.2f} s | "
              f"pandas engine {report['pandas']:.1f} s | modin engine {report['modin']:.1f} s | "
              f"byte-identical: {same}")
        print(f"  pandas / read = {report['pandas'] / report['read']:.1f}x   "
              f"modin / read = {report['modin'] / report['read']:.1f}x   "
              f"modin / pandas = {report['modin'] / report['pandas']:.2f}")

    subset, n_eligible = subset_query_run(source, workdir, args.subset, args.seed)
    sub_pandas, sub_pandas_run = time_engine(subset, "pandas", workdir)
    sub_modin, _ = time_engine(subset, "modin", workdir)
    loop_s, loop = per_stay_loop(subset)
    engine_ds = load_dataset(sub_pandas_run)
    agree = np.array_equal(engine_ds.stay_ids, loop["stay_ids"])
    diff = float(np.abs(engine_ds.features - loop["features"]).max()) if agree else float("nan")
    print(f"\nsubset of {args.subset:,} stays: loop {loop_s:.1f} s | pandas engine {sub_pandas:.2f} s | "
          f"modin engine {sub_modin:.2f} s | loop vs engine: same stays {agree}, max |diff| {diff:.2e}")
    print(f"  loop / pandas = {loop_s / sub_pandas:.1f}x   loop / modin = {loop_s / sub_modin:.1f}x")
    if not args.skip_full:
        scale = n_eligible / min(args.subset, n_eligible)
        print(f"  loop extrapolated to all {n_eligible:,} eligible stays ≈ {loop_s * scale:.0f} s: "
              f"/ pandas = {loop_s * scale / report['pandas']:.0f}x, "
              f"/ modin = {loop_s * scale / report['modin']:.0f}x")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


# --- A SIMPLE STAND-IN GENERATOR, used only without icurt.db.synth/query or with --simple: the
# four query outputs drawn directly with the contract's columns and MIMIC-III-like volumes (hourly
# vitals over the ICU stay, labs every ~8 h, blood gases every ~12 h, duplicate timestamps, NULLs).
VITAL_LEVELS = {"heartrate": (85, 15), "sysbp": (120, 20), "diasbp": (60, 12), "meanbp": (80, 12),
                "resprate": (19, 5), "tempc": (37, 0.7), "spo2": (97, 2), "glucose": (130, 40)}
LAB_LEVELS = {"albumin": (3, 0.6), "bun": (25, 15), "creatinine": (1.3, 0.9), "sodium": (139, 4),
              "bicarbonate": (24, 4), "platelet": (210, 90), "glucose": (135, 45),
              "magnesium": (2, 0.3), "chloride": (104, 5), "wbc": (11, 5)}
BG_LEVELS = {"potassium": (4.1, 0.6), "calcium": (1.1, 0.1), "ph": (7.38, 0.07), "pco2": (41, 8),
             "lactate": (2, 1.5), "po2": (110, 50)}


def write_simple_query_run(folder: Path, stays: int, seed: int = 0) -> Path:
    """Stand-in query run (no planted physiology): the four Parquet files for `stays` stays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    detail = _detail(stays, rng)
    detail.to_parquet(folder / "icustay_detail.parquet", index=False)
    los_hours = (detail["outtime"] - detail["intime"]).dt.total_seconds().to_numpy() / 3600
    ids, intime = detail["icustay_id"].to_numpy(), detail["intime"].to_numpy()
    for name, every, levels in (("pivoted_vital", 1.0, VITAL_LEVELS), ("pivoted_lab", 8.0, LAB_LEVELS),
                                ("pivoted_bg", 12.0, BG_LEVELS)):
        frame = _events(ids, intime, los_hours, every, levels, rng)
        frame.to_parquet(folder / f"{name}.parquet", index=False, row_group_size=1_000_000)
    return folder


def _detail(stays: int, rng) -> pd.DataFrame:
    intime = pd.Timestamp("2150-01-01") + pd.to_timedelta(rng.integers(0, 3e8, stays), unit="s")
    los_icu = rng.lognormal(np.log(2.5), 0.7, stays)
    admit_before = rng.uniform(0, 3, stays)
    age = np.where(rng.random(stays) < 0.06, 300.0, rng.uniform(10, 89, stays))
    los_hospital = los_icu + admit_before + rng.uniform(0, 5, stays)
    admittime = intime - pd.to_timedelta(admit_before * 86400, unit="s")
    return pd.DataFrame({
        "subject_id": np.arange(stays) + 10_000, "hadm_id": np.arange(stays) + 100_000,
        "icustay_id": np.arange(stays) + 200_000, "gender": "M", "dod": pd.NaT,
        "admittime": admittime.floor("s"), "dischtime": (admittime + pd.to_timedelta(
            los_hospital * 86400, unit="s")).floor("s"),
        "los_hospital": los_hospital, "admission_age": age, "age_years": np.minimum(age, 91.4),
        "ethnicity": "WHITE", "ethnicity_grouped": "white",
        "hospital_expire_flag": (rng.random(stays) < 0.1).astype(np.int64),
        "hospstay_seq": 1, "first_hosp_stay": True, "intime": intime.floor("s"),
        "outtime": (intime + pd.to_timedelta(los_icu * 86400, unit="s")).floor("s"),
        "los_icu": los_icu, "icustay_seq": 1, "first_icu_stay": True})


def _events(ids, intime, los_hours, every, levels, rng) -> pd.DataFrame:
    counts = np.maximum(1, (los_hours / every).astype(np.int64))
    stay = np.repeat(np.arange(len(ids)), counts)
    slot = np.arange(stay.size) - np.repeat(np.cumsum(counts) - counts, counts)
    offset_s = (slot * every + rng.uniform(-0.3, 0.3, stay.size) * every) * 3600
    duplicate = rng.random(stay.size) < 0.01   # a second row at the same charttime
    stay, offset_s = np.concatenate([stay, stay[duplicate]]), np.concatenate([offset_s, offset_s[duplicate]])
    order = np.argsort(stay, kind="stable")
    stay, offset_s = stay[order], offset_s[order]
    charttime = intime[stay] + (offset_s.astype(np.int64) * 1_000_000_000).astype("timedelta64[ns]")
    icustay_id = pd.array(ids[stay], dtype="Int64")
    icustay_id[rng.random(stay.size) < 0.001] = pd.NA
    frame = {"icustay_id": icustay_id, "charttime": charttime}
    for name, (mean, sd) in levels.items():
        values = rng.normal(mean, sd, stay.size)
        values[rng.random(stay.size) < (0.05 if every == 1 else 0.3)] = np.nan
        frame[name] = values
    return pd.DataFrame(frame)


if __name__ == "__main__":
    sys.exit(main())
