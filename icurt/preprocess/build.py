"""The preprocess stage's work: a query run's files → features (N, H, F) float32, mortality
labels, stay ids, in a run folder (icurt/stages/preprocess.py is the stage).

Five steps, each saving its output as Parquet in a numbered folder of the run:
1_prefilter  stays.parquet: icustay_detail rows with admission_age >= min_age (the > 89 patients
             have ~300 and count as adults; `age` is admission_age capped at age_cap),
             los_hospital >= min_los_hospital, los_icu >= min_los_icu, icustay_id, intime,
             outtime and the window start not NULL, one row per icustay_id; typed columns, the
             window start (intime or admittime), observed_hours = outtime - window start.
2_merge      <source>.parquet: the features read from that table (icurt/preprocess/sources.py and
             the [preprocess].<feature>_source settings), rows with NULL icustay_id or no value
             dropped, joined to the kept stays, hour index h = floor((charttime - hour origin) /
             1 h), the origin being the window start (hour_bins = window_start) or the first whole
             clock hour after it (clock, the reference's pandas resample); only 0 <= h <
             observation_window_hours is kept, unless a setting below reads the whole stay.
3_per_stay   <source>/part-*.parquet: one record per stay and charttime (mean of duplicates); a
             feature read from two tables is merged by charttime (the mean where both measured).
4_hourly     hourly.parquet: per stay, hour and feature the mean of the records in that hour;
             linear interpolation over the hours between measured hours, inside the window with
             constant ends (interpolation = window), or between the nearest measured hours of the
             whole stay, wherever they are (stay, the reference); the feature's global median
             where there is nothing to interpolate from; then winsorised at the [p_low, p_high]
             percentiles and scaled (v - p_low) / (p_high - p_low) (a constant feature → 0).
             Percentiles and median are over the measured hourly values in the window
             (statistics = window_hours) or every record of the whole stays (stay_rows, the
             reference's describe()), of all stays in this step (those dropped in step 5 too).
5_window     stays.parquet: the stays kept, ordered by icustay_id — inclusion = window_length: at
             least one record in the window and outtime - window start >= min_observation_hours;
             resampled_rows (the reference): >= min_stay_timestamps measurement timestamps in the
             stay and >= min_observation_hours rows of the stay's hourly resampling in the window.
Then dataset.npz (features, labels = hospital_expire_flag, stay_ids, subject_ids, hadm_ids, and
`measured`: which hour × feature cells hold a measurement rather than a filled value), feature_names.json,
normalisation.json, imputation.json (per feature: fraction of kept stays where it was never
measured in the window) and cohort.json (sample and label counts, rows left after each filter,
`median_filled`: per feature the fraction of kept stays filled with the global median).
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from icurt.config import Config, PreprocessConfig
from icurt.dataset import Dataset, save_dataset
from icurt.errors import IcurtError
from icurt.files import read_parquet_columns, write_json
from icurt.preprocess import steps
from icurt.preprocess.engine import PandasEngine, partition_count
from icurt.preprocess.partition import PartitionPlan, finish_partition, global_statistics, summarise_partition
from icurt.preprocess.stay import StayExtent, resampled_rows

log = logging.getLogger("icurt")
STEP_FOLDERS = ("1_prefilter", "2_merge", "3_per_stay", "4_hourly", "5_window")


def query_files(folder: Path, settings: PreprocessConfig) -> dict[str, Path]:
    """The query run's Parquet files, checked for every column the features and their sources need."""
    needed = steps.required_columns(settings)
    files, available = {}, {}
    for table in needed:
        path = Path(folder) / f"{table}.parquet"
        if not path.exists():
            raise IcurtError(f"the query run at {folder} has no {table}.parquet; "
                             "rerun `icurt query` or pass another run with --from")
        files[table], available[table] = path, read_parquet_columns(path)
    steps.check_columns(available, settings)
    return files


def build_dataset(cfg: Config, files: dict[str, Path], engine: PandasEngine, out: Path) -> dict:
    """All five steps from the query files into `out`; returns seconds per step."""
    settings, features = cfg.preprocess, list(cfg.preprocess.features)
    plan = PartitionPlan.of(settings)
    hours = plan.hours
    for folder in STEP_FOLDERS:
        (out / folder).mkdir()
    clock = _Clock(engine.name)

    prefiltered = steps.prefilter(engine.read(files[steps.DETAIL], list(steps.DETAIL_COLUMNS)), settings)
    stays = engine.to_pandas(prefiltered.stays)
    parts = partition_count(settings.num_partitions, len(stays), engine.cpus())
    stays = steps.assign_partitions(stays, parts)
    stays.to_parquet(out / "1_prefilter" / "stays.parquet", index=False)
    clock.step("1_prefilter", f"{len(stays):,} stays, {parts} partitions")

    stay_keys = engine.from_pandas(stays[["icustay_id", "hour_origin", "part"]])
    merged = {}
    for source, names in plan.source_features.items():
        if names:
            table = engine.read(files[source], [*steps.KEY_COLUMNS, *names])
            merged[source] = steps.merge_measurements(table, stay_keys, names, hours, plan.whole_stay)
            engine.write(merged[source], out / "2_merge" / f"{source}.parquet")
    clock.step("2_merge", f"{sum(len(m) for m in merged.values()):,} rows "
               f"{'of the whole stays' if plan.whole_stay else 'in the window'}")

    stay_ids = [stays["icustay_id"].to_numpy()[stays["part"].to_numpy() == p] for p in range(parts)]
    summaries = engine.summarise(merged, stay_ids, partial(summarise_partition, plan=plan))
    _write_records(engine.records(summaries), out / "3_per_stay")
    clock.step("3_per_stay", "one record per stay and timestamp")

    results = engine.results(summaries)
    stats = global_statistics(results, plan, settings.winsorize_percentiles)
    finished = engine.finish(summaries, partial(finish_partition, stats=stats, plan=plan))
    scaled = np.concatenate([values for values, _ in finished])
    median_filled = np.concatenate([filled for _, filled in finished])
    check_finite(scaled, features)
    _write_hourly(scaled, stays["icustay_id"].to_numpy(), features, out / "4_hourly" / "hourly.parquet")
    clock.step("4_hourly", f"statistics ({settings.statistics}), {settings.interpolation} interpolation")

    means = [r.hourly for r in results]
    n_measurements = np.concatenate([m.n_measurements for m in means])
    measured = np.concatenate([~np.isnan(m.means) for m in means])
    never = ~measured.any(axis=1)
    extent = _extent(results, stays, settings) if plan.whole_stay else {}
    keep = steps.final_window(stays, n_measurements, settings, prefiltered.filters, **extent)
    kept = stays[keep].assign(n_measurements=n_measurements[keep],
                              hours_with_data=np.concatenate([m.hours_with_data for m in means])[keep],
                              features_never_measured=never[keep].sum(axis=1),
                              **{k: v[keep] for k, v in extent.items()})
    kept.drop(columns=["part"]).to_parquet(out / "5_window" / "stays.parquet", index=False)
    ds = Dataset(features=scaled[keep], labels=kept["hospital_expire_flag"].to_numpy(np.int64),
                 stay_ids=kept["icustay_id"].to_numpy(np.int64), feature_names=features,
                 normalisation=stats.to_json(features), subject_ids=kept["subject_id"].to_numpy(np.int64),
                 hadm_ids=kept["hadm_id"].to_numpy(np.int64), measured=measured[keep])
    save_dataset(out, ds)
    write_json(out / "imputation.json", _shares(never[keep], features))
    died = int(ds.labels.sum())
    write_json(out / "cohort.json", {"n_samples": len(ds.labels), "n_died": died,
                                      "n_survived": len(ds.labels) - died,
                                      "filters": prefiltered.filters,
                                      "median_filled": _shares(median_filled[keep], features)})
    clock.step("5_window", f"{len(ds.labels):,} samples, {died:,} died")
    return clock.seconds


def _shares(mask: np.ndarray, features: list[str]) -> dict[str, float]:
    """Per feature, the share of stays where the (S, F) mask holds."""
    return {name: float(mask[:, f].mean()) for f, name in enumerate(features)}


def _extent(results: list, stays, settings: PreprocessConfig) -> dict[str, np.ndarray]:
    """Per stay, the measurement timestamps of the whole stay and the resampled rows in the window."""
    extent = StayExtent(*(np.concatenate([getattr(r.extent, k) for r in results])
                          for k in ("n_timestamps", "first_hour", "last_hour")))
    hours = settings.observation_window_hours
    last_bin_inside = (stays["hour_origin"] + (hours - 1) * steps.HOUR
                       < stays["window_start"] + hours * steps.HOUR).to_numpy()
    return {"n_timestamps": extent.n_timestamps,
            "resampled_rows": resampled_rows(extent, hours, last_bin_inside)}


def check_finite(values: np.ndarray, features: list[str]) -> None:
    """IcurtError naming the features with NaN or infinite values left (nothing is written)."""
    bad = ~np.isfinite(values).all(axis=(0, 1))
    if bad.any():
        names = ", ".join(name for name, b in zip(features, bad) if b)
        raise IcurtError(f"NaN or infinite values are left in {names} after preprocessing; nothing "
                         "was written — check the query run for infinite measurements")


class _Clock:
    def __init__(self, engine: str):
        self.engine, self.seconds, self.last = engine, {}, time.perf_counter()

    def step(self, name: str, what: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self.last, 3)
        log.info("preprocess [%s] %s: %s (%.1f s)", self.engine, name, what, now - self.last)
        self.last = now


def _write_records(records: list[dict], folder: Path) -> None:
    for part, by_source in enumerate(records):
        for source, frame in by_source.items():
            (folder / source).mkdir(exist_ok=True)
            frame.to_parquet(folder / source / f"part-{part:05d}.parquet", index=False)


def _write_hourly(scaled: np.ndarray, stay_ids: np.ndarray, features: list[str], path: Path) -> None:
    n_stays, hours, _ = scaled.shape
    columns = {"icustay_id": np.repeat(stay_ids, hours),
               "hour": np.tile(np.arange(hours, dtype=np.int16), n_stays)}
    columns.update({name: scaled[:, :, f].ravel() for f, name in enumerate(features)})
    pq.write_table(pa.table(columns), path)


