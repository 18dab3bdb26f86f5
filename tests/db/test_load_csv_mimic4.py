"""`icurt db load-csv` on MIMIC-IV's release layout (hosp/ and icu/, lower-case .csv.gz), written from
a synthetic cohort in MIMIC-IV's schema, and its damaged variants."""

from __future__ import annotations

import gzip
import shutil

import pyarrow.parquet as pq
import pytest
from psycopg2 import sql

from icurt.db import schema_iv
from icurt.db.connection import connect
from icurt.db.datasets import query_source
from icurt.db.load_csv import dataset_of_folder, load_csv
from icurt.db.stamp import source_fingerprint
from icurt.db.synth.cohort import generate_cohort, in_mimic4, load_cohort
from icurt.errors import IcurtError
from icurt.stages import run_stage


def write_mimic4_release(tables, folder) -> None:
    """The cohort's MIMIC-IV frames as PhysioNet ships MIMIC-IV: <module>/<table>.csv.gz, lower-case
    header, NULL as an empty field."""
    for table, frame in tables.items():
        module = folder / schema_iv.module_of(table)
        module.mkdir(parents=True, exist_ok=True)
        frame.to_csv(module / f"{table}.csv.gz", index=False, date_format="%Y-%m-%d %H:%M:%S",
                     compression="gzip")


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    cohort = in_mimic4(generate_cohort(120, seed=5, mortality_rate=0.1))
    folder = tmp_path_factory.mktemp("mimic-iv-release")
    write_mimic4_release(cohort.tables, folder)
    return cohort, folder


def _cfg(make_config, prefix: str, tmp_path):
    return make_config("db.dataset=mimic-iv", f"db.hosp_schema={prefix}_hosp", f"db.icu_schema={prefix}_icu",
                       data=tmp_path / prefix)


def _fingerprint(cfg):
    conn = connect(cfg.db.dsn)
    try:
        return source_fingerprint(conn, query_source(cfg.db))
    finally:
        conn.close()


def _copy(folder, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    return damaged


def test_layout_is_recognised(release, tmp_path):
    _, folder = release
    assert dataset_of_folder(folder) == "mimic-iv"
    assert dataset_of_folder(folder / "hosp") == "mimic-iii"


def test_loads_the_release_as_synth_does(release, make_config, tmp_path):
    cohort, folder = release
    cfg = _cfg(make_config, "t4l", tmp_path)
    loads = load_csv(cfg, folder)
    assert {table: load.rows for table, load in loads.items()} == {t: len(f) for t, f in cohort.tables.items()}
    stamp = _fingerprint(cfg)
    assert stamp["source"].startswith("icurt db load-csv") and "+" not in stamp["load_id"]  # one id, both schemas
    loaded = run_stage("query", cfg)
    # the same cohort loaded by synth straight into two other schemas gives the same query output
    synth_cfg = _cfg(make_config, "t4s", tmp_path)
    conn = connect(cfg.db.dsn)
    try:
        load_cohort(conn, {"hosp": "t4s_hosp", "icu": "t4s_icu"}, cohort)
    finally:
        conn.close()
    direct = run_stage("query", synth_cfg)
    for name in ("icustay_detail", "pivoted_vital", "pivoted_lab", "pivoted_bg"):
        assert pq.read_table(loaded.path / f"{name}.parquet").equals(pq.read_table(direct.path / f"{name}.parquet"))


def _assert_refused_and_kept(cfg, folder, *words):
    before = _fingerprint(cfg)
    with pytest.raises(IcurtError) as err:
        load_csv(cfg, folder)
    message = str(err.value)
    assert "\n" not in message and all(word in message for word in words), message
    assert _fingerprint(cfg) == before          # the schemas loaded before are untouched
    conn = connect(cfg.db.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", ("t4d%__loading%",))
        assert cur.fetchone()[0] == 0           # no staging schema is left behind
    conn.close()


@pytest.fixture
def loaded(release, make_config, tmp_path):
    cfg = _cfg(make_config, "t4d", tmp_path)
    load_csv(cfg, release[1])
    return cfg


def test_a_missing_table(release, loaded, tmp_path):
    folder = _copy(release[1], tmp_path)
    (folder / "icu" / "d_items.csv.gz").unlink()
    _assert_refused_and_kept(loaded, folder, "has no d_items.csv.gz", "icu/d_items.csv.gz of MIMIC-IV")


def test_a_duplicated_key(release, loaded, tmp_path):
    folder = _copy(release[1], tmp_path)
    path = folder / "hosp" / "patients.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    path.write_bytes(gzip.compress(("\n".join(lines + [lines[1]]) + "\n").encode()))
    subject_id = lines[1].split(",")[0]
    _assert_refused_and_kept(loaded, folder, "patients.csv.gz",
                             f"table patients holds two rows with primary key subject_id = {subject_id}")


def test_an_empty_events_file(release, loaded, tmp_path):
    folder = _copy(release[1], tmp_path)
    path = folder / "icu" / "chartevents.csv.gz"
    header = gzip.decompress(path.read_bytes()).decode().splitlines()[0]
    path.write_bytes(gzip.compress((header + "\n").encode()))
    _assert_refused_and_kept(loaded, folder, "chartevents.csv.gz holds no data rows",
                             "chartevents table of MIMIC-IV v2.2+")


def test_a_mimic3_header_in_the_mimic4_layout(release, loaded, tmp_path):
    folder = _copy(release[1], tmp_path)
    path = folder / "icu" / "icustays.csv.gz"
    text = gzip.decompress(path.read_bytes()).decode().replace("stay_id", "icustay_id", 1)
    path.write_bytes(gzip.compress(text.encode()))
    _assert_refused_and_kept(loaded, folder, "column 3 is 'icustay_id' where 'stay_id' is expected",
                             "not MIMIC-IV v2.2+'s icustays")


def test_the_tables_land_in_their_modules_schemas(loaded):
    conn = connect(loaded.db.dsn)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT table_schema, table_name FROM information_schema.tables "
                    "WHERE table_schema IN ('t4d_hosp', 't4d_icu') AND table_name <> 'icurt_load'")
        found = set(cur.fetchall())
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("t4d_icu", "icurt_load")))
        assert cur.fetchone()[0] == 1
    conn.close()
    assert found == {(f"t4d_{module}", table) for table, (module, _) in schema_iv.TABLES.items()}
