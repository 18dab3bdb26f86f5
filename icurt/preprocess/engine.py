"""Where the steps run: pandas in this process, or Modin frames and Ray tasks on a Ray cluster.

Both engines call the same pure functions on the same partitions of stays (a stay never spans
two partitions), so they give byte-identical arrays. The Modin engine reads, filters and merges
with Modin on Ray, then hands Modin's row partitions to Ray tasks that regroup them by stay
partition (a map/shuffle) and run the vectorised per-partition work where the data lives.
Modin's workers read the query run's Parquet files themselves, so on a multi-node cluster the
data root must be on storage every node sees; everything written goes through the driver.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import pandas as pd

from icurt.config import Config
from icurt.errors import IcurtError
from icurt.files import read_parquet

MAX_STAYS_PER_PARTITION = 10_000  # bounds the dense (stays × hours × features) work arrays


def partition_count(setting: int, n_stays: int, cpus: int) -> int:
    """`setting` when given; else one per CPU, more when partitions would be too big for memory."""
    wanted = setting or max(cpus, math.ceil(n_stays / MAX_STAYS_PER_PARTITION))
    return max(1, min(wanted, n_stays))


class PandasEngine:
    """Every step in this process with pandas and numpy."""

    name = "pandas"

    def read(self, path, columns: list[str]):
        return read_parquet(path, columns=columns)

    def to_pandas(self, frame) -> pd.DataFrame:
        return frame

    def from_pandas(self, frame: pd.DataFrame):
        return frame

    def write(self, frame, path) -> None:
        frame.to_parquet(path, index=False)

    def cpus(self) -> int:
        return 1

    def summarise(self, merged: dict, stay_ids: list[np.ndarray], work: Callable) -> list:
        """[(records, summary)] per partition; `work(merged_part, stay_ids_part)` does one."""
        groups = {source: frame.groupby("part", sort=False).indices for source, frame in merged.items()}
        results = []
        for part, ids in enumerate(stay_ids):
            part_frames = {source: merged[source].iloc[groups[source].get(part, [])]
                           for source in merged}
            results.append(work(part_frames, ids))
        return results

    def results(self, summaries: list) -> list:
        """The summary of each partition, here."""
        return [summary for _, summary in summaries]

    def records(self, summaries: list) -> list[dict]:
        return [records for records, _ in summaries]

    def finish(self, summaries: list, work: Callable) -> list:
        """[work(summary)] per partition (fill, winsorise and scale once the statistics are known)."""
        return [work(summary) for _, summary in summaries]


class ModinEngine(PandasEngine):
    """Modin on Ray for the frame-wide steps, a Ray task per stay partition for the rest."""

    name = "modin"

    def __init__(self, cfg: Config):
        from icurt.ray_runtime import init_ray

        self.ray = init_ray(cfg)
        import modin.config

        modin.config.Engine.put("ray")
        import modin.pandas

        self.mpd = modin.pandas
        self._split, self._summarise, self._finish = _remote_functions(self.ray)

    def read(self, path, columns: list[str]):
        return self.mpd.read_parquet(path, columns=columns)

    def to_pandas(self, frame) -> pd.DataFrame:
        return frame.modin.to_pandas()

    def from_pandas(self, frame: pd.DataFrame):
        with warnings.catch_warnings():  # "Distributing <DataFrame> object" is the intent here
            warnings.simplefilter("ignore", UserWarning)
            return self.mpd.DataFrame(frame)

    def write(self, frame, path) -> None:
        # one file written by the driver, as with pandas: the run folder may be on its disk only
        self.to_pandas(frame).to_parquet(path, index=False)

    def cpus(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def summarise(self, merged: dict, stay_ids: list[np.ndarray], work: Callable) -> list:
        """[(records_ref, hourly_ref)] per partition, computed by Ray tasks next to the data."""
        from modin.distributed.dataframe.pandas import unwrap_partitions

        parts = len(stay_ids)
        pieces: list[list] = [[] for _ in range(parts)]
        for frame in merged.values():
            blocks = unwrap_partitions(frame, axis=0)
            split = [self._split.options(num_returns=parts).remote(block, parts) for block in blocks]
            for part in range(parts):
                pieces[part].append([refs[part] if parts > 1 else refs for refs in split])
        sources = list(merged)
        results = []
        for part in range(parts):
            counts = [len(refs) for refs in pieces[part]]
            flat = [ref for refs in pieces[part] for ref in refs]
            results.append(self._summarise.options(num_returns=2).remote(
                work, sources, counts, stay_ids[part], *flat))
        return results

    def results(self, summaries: list) -> list:
        return self.ray.get([summary for _, summary in summaries])

    def records(self, summaries: list) -> list[dict]:
        return self.ray.get([records for records, _ in summaries])

    def finish(self, summaries: list, work: Callable) -> list:
        work_ref = self.ray.put(work)
        return self.ray.get([self._finish.remote(work_ref, summary) for _, summary in summaries])


ENGINES = ("modin", "pandas")


def make_engine(name: str, cfg: Config) -> PandasEngine:
    if name not in ENGINES:
        raise IcurtError(f"unknown preprocess engine '{name}'; choose one of {', '.join(ENGINES)}")
    return ModinEngine(cfg) if name == "modin" else PandasEngine()


def _remote_functions(ray):
    @ray.remote
    def split(block: pd.DataFrame, parts: int):
        positions = block.groupby("part", sort=False).indices
        empty = np.zeros(0, dtype=np.int64)
        pieces = tuple(block.iloc[positions.get(part, empty)] for part in range(parts))
        return pieces if parts > 1 else pieces[0]

    @ray.remote
    def summarise(work, sources, counts, ids, *blocks):
        merged, start = {}, 0
        for source, count in zip(sources, counts):
            merged[source] = pd.concat(blocks[start:start + count], ignore_index=True)
            start += count
        return work(merged, ids)

    @ray.remote
    def finish(work, summary):
        return work(summary)

    return split, summarise, finish
