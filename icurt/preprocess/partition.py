"""What one partition of stays goes through in steps 3 and 4, wherever the engine runs it:
summarise (one record per stay and timestamp, hourly means in the window, and — with a
[preprocess] choice that reads the whole stay — what lies outside it), then, once the global
statistics are known, finish (fill, winsorise, scale)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from icurt.config import PreprocessConfig
from icurt.preprocess import hourly, stay
from icurt.preprocess.hourly import HourlyMeans, Statistics
from icurt.preprocess.sources import merged_features, source_features


@dataclass(frozen=True)
class PartitionPlan:
    """The settings a partition's work needs, derived once from [preprocess]."""
    source_features: dict[str, list[str]]   # table -> its features
    feature_names: list[str]
    hours: int
    merge_by_time: bool                     # a feature is read from two tables
    whole_stay: bool                        # the merge kept every record of the stay
    statistics: str                         # window_hours | stay_rows
    interpolation: str                      # window | stay

    @classmethod
    def of(cls, settings: PreprocessConfig) -> "PartitionPlan":
        features = list(settings.features)
        whole_stay = (settings.statistics == "stay_rows" or settings.interpolation == "stay"
                      or settings.inclusion == "resampled_rows")
        return cls(source_features(features, settings), features, settings.observation_window_hours,
                   bool(merged_features(features, settings)), whole_stay, settings.statistics,
                   settings.interpolation)


@dataclass(frozen=True)
class Summary:
    """One partition after step 4a; the whole-stay parts are None when only the window was merged."""
    hourly: HourlyMeans
    outside: stay.Outside | None = None
    extent: stay.StayExtent | None = None
    values: list[np.ndarray] | None = None   # per feature, every record's value (statistics = stay_rows)


def summarise_partition(merged: dict[str, pd.DataFrame], stay_ids: np.ndarray,
                        plan: PartitionPlan) -> tuple[dict[str, pd.DataFrame], Summary]:
    """Steps 3 and 4a for one partition: per-timestamp records (one frame per table) and its Summary."""
    records = {source: hourly.one_record_per_timestamp(frame, plan.source_features[source])
               for source, frame in merged.items()}
    flat = hourly.flat_records(records, stay_ids, plan.feature_names,
                               with_time=plan.merge_by_time or plan.whole_stay)
    if plan.merge_by_time:
        flat = stay.merge_by_time(flat)
    means = hourly.hourly_means(flat, stay_ids, plan.feature_names, plan.hours)
    if not plan.whole_stay:
        return records, Summary(means)
    n_stays, n_features = len(stay_ids), len(plan.feature_names)
    return records, Summary(
        means, stay.outside_window(flat, n_stays, n_features, plan.hours), stay.stay_extent(flat, n_stays),
        stay.values_by_feature(flat, n_features) if plan.statistics == "stay_rows" else None)


def finish_partition(summary: Summary, stats: Statistics, plan: PartitionPlan) -> tuple[np.ndarray, np.ndarray]:
    """Scaled float32 (S, H, F) features and the (S, F) mask of features filled with the median."""
    if plan.interpolation == "stay":
        filled, median_filled = stay.fill_from_stay(summary.hourly.means, stats.median, summary.outside)
    else:
        filled, median_filled = hourly.fill_hours(summary.hourly.means, stats.median)
    return hourly.winsorise_and_scale(filled, stats), median_filled


def global_statistics(summaries: list[Summary], plan: PartitionPlan, percentiles) -> Statistics:
    """Winsorising/scaling percentiles and medians over the window's hourly means (window_hours) or
    every record of the whole stays (stay_rows, the reference's describe())."""
    if plan.statistics == "stay_rows":
        values = [[s.values[f] for s in summaries] for f in range(len(plan.feature_names))]
        return hourly.statistics_of(values, plan.feature_names, tuple(percentiles))
    return hourly.global_statistics([s.hourly.means for s in summaries], plan.feature_names,
                                    tuple(percentiles))
