"""Data-layer benchmark: synth generation and COPY load, the query stage, reading its Parquet back.

    python bench/data_layer.py [--stays 1000 40000] [--seed 42] [--skip-query]

Runs on a throwaway embedded PostgreSQL under a temp dir (removed at the end), so it never touches
a configured database. Prints one row per cohort size and the ratios query/synth and
Parquet-read/query, which stay comparable across machines better than the seconds do.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyarrow.parquet as pq  # noqa: E402

from icurt.config import load_config, with_overrides  # noqa: E402
from icurt.db.connection import connect  # noqa: E402
from icurt.db.server import embedded_server  # noqa: E402
from icurt.db.synth.cohort import generate_cohort, load_cohort  # noqa: E402


def bench_size(cfg, url: str, stays: int, seed: int, with_query: bool) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    cohort = generate_cohort(stays, seed, cfg.synth.mortality_rate)
    generate_s, generate_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    rows = sum(len(frame) for frame in cohort.tables.values())
    conn = connect(url)
    try:
        started = time.perf_counter()
        load_cohort(conn, cfg.db.schema, cohort)
        load_s = time.perf_counter() - started
    finally:
        conn.close()
    result = {"stays": stays, "rows": rows, "generate_s": generate_s, "generate_cpu_s": generate_cpu_s,
              "load_s": load_s,
              "oracle_auroc": cohort.oracle_auroc, "query_s": None, "query_rows": None, "read_s": None}
    del cohort
    gc.collect()
    if with_query:
        result.update(_bench_query(cfg))
    return result


def _bench_query(cfg) -> dict:
    from icurt.stages import run_stage

    started = time.perf_counter()
    run = run_stage("query", cfg)
    query_s = time.perf_counter() - started
    started = time.perf_counter()
    tables = [pq.read_table(path) for path in sorted(Path(run.path).glob("*.parquet"))]
    read_s = time.perf_counter() - started
    return {"query_s": query_s, "query_rows": sum(t.num_rows for t in tables), "read_s": read_s}


def _fmt(value, spec: str) -> str:
    return format("-", f">{int(spec.split('.')[0].rstrip(','))}") if value is None else format(value, spec)


def print_report(results: list[dict]) -> None:
    header = (f"{'stays':>7} {'synth rows':>12} {'generate s':>11} {'rows/s':>11} {'load s':>8} "
              f"{'rows/s':>11} {'query s':>8} {'query rows':>11} {'read s':>7} "
              f"{'query/synth':>11} {'read/query':>10}")
    print(header)
    print("-" * len(header))
    for r in results:
        synth_s = r["generate_s"] + r["load_s"]
        ratio = r["query_s"] / synth_s if r["query_s"] is not None else None
        read_ratio = r["read_s"] / r["query_s"] if r["query_s"] else None
        print(f"{r['stays']:>7,} {r['rows']:>12,} {r['generate_s']:>11.1f} "
              f"{r['rows'] / r['generate_s']:>11,.0f} "
              f"{r['load_s']:>8.1f} {r['rows'] / r['load_s']:>11,.0f} {_fmt(r['query_s'], '8.1f')} "
              f"{_fmt(r['query_rows'], '11,')} {_fmt(r['read_s'], '7.2f')} {_fmt(ratio, '11.2f')} "
              f"{_fmt(read_ratio, '10.3f')}")
    aurocs = ", ".join(format(r["oracle_auroc"], ".3f") for r in results)
    cpu = ", ".join(format(r["generate_cpu_s"], ".1f") for r in results)
    print(f"generation CPU seconds per size (wall time includes waiting for a busy CPU): {cpu}")
    print(f"oracle AUROC per size: {aurocs}; "
          f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB; "
          f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stays", type=int, nargs="+", default=[1000, 40000])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-query", action="store_true", help="time synth only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="  %(message)s")
    print(f"load average at the start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="icurt-bench-") as root:
        cfg = with_overrides(load_config(env={}), [f"paths.data={root}", "db.dsn=", "db.embedded_port=0"])
        server = embedded_server(cfg.paths.data, cfg.db.embedded_port)
        url = server.start()
        try:
            results = [bench_size(cfg, url, stays, args.seed, not args.skip_query) for stays in args.stays]
        finally:
            server.stop()
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
