"""`icurt db load-csv` on real PostgreSQL: a synthetic cohort written as PhysioNet-style CSV files."""

from __future__ import annotations

import csv
import gzip
import io
import shutil

import pandas as pd
import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from icurt.db import query
from icurt.stages import run_stage
from icurt.db.connection import connect
from icurt.db.load_csv import CsvRecordCounter, load_csv
from icurt.db.schema import TABLES
from icurt.db.stamp import source_fingerprint
from icurt.errors import IcurtError
from physionet_csv import write_physionet_csv

AWKWARD_TEXT = 'line one\nline "two", with a comma\r\nand three'


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory):
    """A synthetic cohort (one chart value holding quotes, commas and newlines) and its CSV folder."""
    from icurt.db.synth.cohort import generate_cohort

    cohort = generate_cohort(120, seed=5, mortality_rate=0.1)
    chart = cohort.tables["chartevents"]
    chart["value"] = chart["value"].astype(object)
    chart.loc[chart.index[3], "value"] = AWKWARD_TEXT
    folder = tmp_path_factory.mktemp("physionet")
    for table, frame in cohort.tables.items():
        write_physionet_csv(frame, folder, table)
    return cohort, folder


def _row_counts(dsn: str, schema: str) -> dict[str, int]:
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        counts = {}
        for table in TABLES:
            cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
            counts[table] = cur.fetchone()[0]
    conn.close()
    return counts


def _fingerprint(dsn: str, schema: str) -> dict | None:
    conn = connect(dsn)
    try:
        return source_fingerprint(conn, schema)
    finally:
        conn.close()


def _schemas(dsn: str) -> set[str]:
    conn = connect(dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT nspname FROM pg_namespace")
        names = {row[0] for row in cur.fetchall()}
    conn.close()
    return names


def test_record_counter_matches_csv_module():
    text = ('"A","B"\n1,"x"\n2,"multi\nline ""quoted"" \r\n"\n3,\n4,"""",\n5,"a,b"\r\n6,last').encode()
    expected = len(list(csv.reader(io.StringIO(text.decode(), newline=""))))
    assert expected == 7
    for chunk_size in range(1, len(text) + 1):
        counter = CsvRecordCounter()
        for start in range(0, len(text), chunk_size):
            counter.feed(text[start:start + chunk_size])
        assert counter.records == expected, chunk_size
    terminated = CsvRecordCounter()
    terminated.feed(text + b"\n")
    assert terminated.records == expected


def test_round_trip_gives_the_same_query_output(pg_dsn, make_config, cohort_files, tmp_path):
    from icurt.db.synth.cohort import load_cohort

    cohort, folder = cohort_files
    conn = connect(pg_dsn)
    load_cohort(conn, "tlc_direct", cohort)
    conn.close()
    loads = load_csv(make_config("db.schema=tlc_from_csv"), folder)
    expected_counts = {table: len(frame) for table, frame in cohort.tables.items()}
    assert {table: load.rows for table, load in loads.items()} == expected_counts
    assert _row_counts(pg_dsn, "tlc_from_csv") == expected_counts
    assert not any(s.startswith("tlc_from_csv__loading") for s in _schemas(pg_dsn))

    direct = run_stage("query", make_config("db.schema=tlc_direct", data=tmp_path / "direct"))
    from_csv = run_stage("query", make_config("db.schema=tlc_from_csv", data=tmp_path / "from_csv"))
    for name in query.QUERIES:
        a = pq.read_table(direct.path / f"{name}.parquet")
        b = pq.read_table(from_csv.path / f"{name}.parquet")
        assert a.num_rows > 0 and a.equals(b), name

    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM tlc_from_csv.chartevents WHERE row_id = %s",
                    (int(cohort.tables["chartevents"]["row_id"].iloc[3]),))
        assert cur.fetchone()[0] == AWKWARD_TEXT
        cur.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'tlc_from_csv'")
        assert cur.fetchone()[0] >= len(TABLES)
    conn.close()


def _copy_folder(source, target):
    shutil.copytree(source, target)
    return target


def test_missing_file_is_named(make_config, cohort_files, tmp_path):
    folder = _copy_folder(cohort_files[1], tmp_path / "csv")
    (folder / "D_LABITEMS.csv").unlink()
    with pytest.raises(IcurtError) as err:
        load_csv(make_config("db.schema=tlc_missing"), folder)
    assert "D_LABITEMS.csv" in str(err.value) and "\n" not in str(err.value)


def test_bad_header_is_named(make_config, cohort_files, tmp_path):
    folder = _copy_folder(cohort_files[1], tmp_path / "csv")
    path = folder / "ICUSTAYS.csv"
    path.write_text(path.read_text().replace('"INTIME"', '"IN_TIME"', 1))
    with pytest.raises(IcurtError) as err:
        load_csv(make_config("db.schema=tlc_bad_header"), folder)
    message = str(err.value)
    assert "ICUSTAYS.csv" in message and "'in_time'" in message and "'intime'" in message and "\n" not in message


def test_failed_load_keeps_the_previous_schema(pg_dsn, make_config, cohort_files, tmp_path):
    cohort, good = cohort_files
    cfg = make_config("db.schema=tlc_kept")
    load_csv(cfg, good)
    before = _row_counts(pg_dsn, "tlc_kept"), _fingerprint(pg_dsn, "tlc_kept")
    assert before[1]["source"] == f"icurt db load-csv {good.resolve()}"

    bad = _copy_folder(good, tmp_path / "bad")
    labs = gzip.decompress((bad / "LABEVENTS.csv.gz").read_bytes()).decode()
    lines = labs.splitlines()
    fields = lines[5].split(",")
    fields[6] = "not-a-number"                      # valuenum of the 5th data row
    lines[5] = ",".join(fields)
    (bad / "LABEVENTS.csv.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(IcurtError) as err:
        load_csv(cfg, bad)
    assert "LABEVENTS.csv.gz" in str(err.value) and "line 6" in str(err.value)

    truncated = _copy_folder(good, tmp_path / "truncated")
    data = (truncated / "CHARTEVENTS.csv.gz").read_bytes()
    (truncated / "CHARTEVENTS.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(IcurtError) as err:
        load_csv(cfg, truncated)
    assert "CHARTEVENTS.csv.gz" in str(err.value) and "download it again" in str(err.value)

    assert (_row_counts(pg_dsn, "tlc_kept"), _fingerprint(pg_dsn, "tlc_kept")) == before
    assert not any(s.startswith("tlc_kept__loading") for s in _schemas(pg_dsn))
    load_csv(cfg, good)   # the same files again: a new load, so a query run of the old one is not reused
    assert _fingerprint(pg_dsn, "tlc_kept")["load_id"] != before[1]["load_id"]


def test_cli_load_csv(pg_dsn, cohort_files, tmp_path, capsys):
    from icurt.cli import main

    common = ["--set", f"db.dsn={pg_dsn}", "--set", f"paths.data={tmp_path}", "--set", "db.schema=tlc_cli"]
    assert main(["db", "load-csv", str(tmp_path / "nowhere"), *common]) == 2
    assert "nowhere is not a folder" in capsys.readouterr().err
    assert main(["db", "load-csv", str(cohort_files[1]), *common]) == 0
    assert _row_counts(pg_dsn, "tlc_cli")["icustays"] == 120


def _rewrite_gz(path, edit) -> None:
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress(("\n".join(edit(lines)) + "\n").encode()))


def test_duplicated_rows_stop_the_load_naming_table_key_and_value(pg_dsn, make_config, cohort_files, tmp_path):
    cohort, good = cohort_files
    cfg = make_config("db.schema=tlc_keys")
    load_csv(cfg, good)
    before = _row_counts(pg_dsn, "tlc_keys")

    doubled = _copy_folder(good, tmp_path / "doubled")
    _rewrite_gz(doubled / "LABEVENTS.csv.gz", lambda lines: lines[:8] + [lines[7]] + lines[8:])
    row_id = int(cohort.tables["labevents"]["row_id"].iloc[6])
    with pytest.raises(IcurtError) as err:
        load_csv(cfg, doubled)
    message = str(err.value)
    assert "\n" not in message and "LABEVENTS.csv.gz" in message
    assert f"table labevents holds two rows with primary key row_id = {row_id}" in message

    # a second row for the same ICU stay under a new row_id breaks the natural key
    twice = _copy_folder(good, tmp_path / "twice")
    stays = (twice / "ICUSTAYS.csv").read_text().splitlines()
    copy = stays[3].split(",")
    icustay_id = copy[3]
    copy[0] = "999999"
    (twice / "ICUSTAYS.csv").write_text("\n".join(stays + [",".join(copy)]) + "\n")
    with pytest.raises(IcurtError) as err:
        load_csv(cfg, twice)
    assert f"table icustays holds two rows with unique key icustay_id = {icustay_id}" in str(err.value)

    assert _row_counts(pg_dsn, "tlc_keys") == before            # the previous schema stays as it was
    assert not any(s.startswith("tlc_keys__loading") for s in _schemas(pg_dsn))


def test_keys_of_the_community_build_are_declared(pg_dsn, make_config, cohort_files):
    load_csv(make_config("db.schema=tlc_declared"), cohort_files[1])
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT conrelid::regclass::text, contype, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE connamespace = 'tlc_declared'::regnamespace")
        keys = {(table.split(".")[-1], kind, definition) for table, kind, definition in cur.fetchall()}
    conn.close()
    assert {(t, "p", "PRIMARY KEY (row_id)") for t in TABLES} <= keys
    assert {("patients", "u", "UNIQUE (subject_id)"), ("admissions", "u", "UNIQUE (hadm_id)"),
            ("icustays", "u", "UNIQUE (icustay_id)"), ("d_items", "u", "UNIQUE (itemid)"),
            ("d_labitems", "u", "UNIQUE (itemid)")} <= keys


def test_a_table_without_rows_stops_the_load(pg_dsn, make_config, cohort_files, tmp_path):
    cfg = make_config("db.schema=tlc_empty")
    load_csv(cfg, cohort_files[1])
    before = _row_counts(pg_dsn, "tlc_empty")
    empty = _copy_folder(cohort_files[1], tmp_path / "empty")
    _rewrite_gz(empty / "CHARTEVENTS.csv.gz", lambda lines: lines[:1])
    with pytest.raises(IcurtError) as err:
        load_csv(cfg, empty)
    message = str(err.value)
    assert "CHARTEVENTS.csv.gz holds no data rows" in message and "CHARTEVENTS table" in message
    assert _row_counts(pg_dsn, "tlc_empty") == before
