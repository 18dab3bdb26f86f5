"""The synthetic MIMIC-III cohort: determinism, shape, quirks, mortality signal, loading into PostgreSQL.

Expected values are recomputed here from the tables themselves (ages from dob, qualifying stays,
AUROC with sklearn), never read back from the generator's own bookkeeping.
"""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import psycopg2
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from icurt.cli import main
from icurt.db.connection import connect
from icurt.db.schema import TABLES, column_names
from icurt.db.synth.cohort import generate_cohort, load_cohort, read_synth_truth
from icurt.db.synth.state import synthetic_cohort_info
from icurt.errors import IcurtError

STAYS = 2500
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def cohort():
    return generate_cohort(STAYS, seed=11)


@pytest.fixture(scope="module")
def t(cohort):
    return cohort.tables


@pytest.fixture(scope="module")
def stays(t):
    """icustays joined to admissions and patients, with age and the study's inclusion rule."""
    s = t["icustays"].merge(t["admissions"], on=["subject_id", "hadm_id"], suffixes=("", "_adm"))
    s = s.merge(t["patients"], on="subject_id", suffixes=("", "_pat"))
    s["age"] = (s["admittime"] - s["dob"]).dt.total_seconds() / (365.242 * 86400)
    s["qualifying"] = ((s["age"] >= 18) & ((s["outtime"] - s["intime"]) >= 2 * DAY)
                       & (s["has_chartevents_data"] == 1))
    return s.sort_values("icustay_id").reset_index(drop=True)


@pytest.fixture
def schema(pg_dsn):
    name = f"synth_test_{uuid.uuid4().hex[:8]}"
    yield name
    conn = connect(pg_dsn)
    with conn, conn.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    conn.close()


def _schema_exists(dsn, name) -> bool:
    conn = connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (name,))
        found = cur.fetchone() is not None
    conn.close()
    return found


# --- determinism and shape ----------------------------------------------------------------------

def test_same_seed_gives_identical_frames_and_another_seed_does_not():
    first, again, other = generate_cohort(120, 5), generate_cohort(120, 5), generate_cohort(120, 6)
    for table in TABLES:
        pd.testing.assert_frame_equal(first.tables[table], again.tables[table])
    pd.testing.assert_frame_equal(first.truth, again.truth)
    assert first.oracle_auroc == again.oracle_auroc or np.isnan(first.oracle_auroc)
    assert not first.tables["chartevents"]["valuenum"].equals(other.tables["chartevents"]["valuenum"])
    assert not first.truth["severity"].equals(other.truth["severity"])


def test_tables_have_the_schema_columns_and_exactly_the_stays_asked_for(t, cohort):
    for table in TABLES:
        assert list(t[table].columns) == column_names(table), table
    assert len(t["icustays"]) == STAYS and t["icustays"]["icustay_id"].is_unique
    assert list(cohort.truth.columns) == ["icustay_id", "severity", "died", "oracle_probability", "ceiling_probability"]
    assert sorted(cohort.truth["icustay_id"]) == sorted(t["icustays"]["icustay_id"])
    for table, key in [("patients", "subject_id"), ("admissions", "hadm_id"), ("d_items", "itemid"),
                       ("d_labitems", "itemid")]:
        assert t[table][key].is_unique, table


def test_times_are_whole_seconds_in_the_shifted_future(t):
    for table, column in [("admissions", "admittime"), ("icustays", "intime"), ("chartevents", "charttime"),
                          ("labevents", "charttime")]:
        times = t[table][column]
        assert (times.dt.microsecond == 0).all()
        assert times.min() >= pd.Timestamp("2100-01-01") and times.max() < pd.Timestamp("2210-01-01")


def test_foreign_keys_and_stays_inside_their_admission(t, stays):
    adm, icu = t["admissions"], t["icustays"]
    assert set(icu["hadm_id"]) <= set(adm["hadm_id"])
    assert set(adm["subject_id"]) <= set(t["patients"]["subject_id"])
    assert len(stays) == len(icu)  # every stay's (subject_id, hadm_id) pair matches its admission
    assert (stays["intime"] >= stays["admittime"]).all() and (stays["outtime"] <= stays["dischtime"]).all()
    assert np.allclose(stays["los"], (stays["outtime"] - stays["intime"]) / DAY, atol=1e-4)
    ordered = icu.sort_values(["hadm_id", "intime"])
    same = ordered["hadm_id"].to_numpy()[1:] == ordered["hadm_id"].to_numpy()[:-1]
    assert (ordered["intime"].to_numpy()[1:][same] >= ordered["outtime"].to_numpy()[:-1][same]).all()
    by_patient = adm.sort_values(["subject_id", "admittime"])
    same = by_patient["subject_id"].to_numpy()[1:] == by_patient["subject_id"].to_numpy()[:-1]
    admitted, discharged = by_patient["admittime"].to_numpy(), by_patient["dischtime"].to_numpy()
    assert (admitted[1:][same] > discharged[:-1][same]).all()
    ce = t["chartevents"].dropna(subset=["icustay_id"]).merge(
        icu[["icustay_id", "subject_id", "hadm_id"]], on="icustay_id", suffixes=("", "_icu"))
    assert len(ce) == t["chartevents"]["icustay_id"].notna().sum()
    assert (ce["subject_id"] == ce["subject_id_icu"]).all() and (ce["hadm_id"] == ce["hadm_id_icu"]).all()
    labs = t["labevents"].dropna(subset=["hadm_id"]).merge(adm[["hadm_id", "subject_id"]], on="hadm_id",
                                                            suffixes=("", "_adm"))
    assert len(labs) == t["labevents"]["hadm_id"].notna().sum()
    assert (labs["subject_id"] == labs["subject_id_adm"]).all()


def test_several_admissions_per_patient_and_stays_per_admission(t):
    assert t["admissions"].groupby("subject_id").size().max() >= 2
    assert t["icustays"].groupby("hadm_id").size().max() == 2
    assert set(t["icustays"]["dbsource"]) == {"carevue", "metavision"}


def test_the_dead_leave_at_their_deathtime_and_the_living_have_none(t):
    adm = t["admissions"]
    dead = adm["hospital_expire_flag"] == 1
    assert (adm.loc[dead, "deathtime"] == adm.loc[dead, "dischtime"]).all()
    assert adm.loc[~dead, "deathtime"].isna().all()
    assert (adm.loc[dead, "discharge_location"] == "DEAD/EXPIRED").all()
    # nobody is admitted again after dying in hospital
    last = adm.sort_values("admittime").groupby("subject_id").tail(1)
    assert set(adm.loc[dead, "hadm_id"]) <= set(last["hadm_id"])
    patients = t["patients"].set_index("subject_id")
    assert (patients.loc[adm.loc[dead, "subject_id"], "expire_flag"] == 1).all()


# --- quirks ---------------------------------------------------------------------------------------

def test_error_rows_are_metavision_and_carevue_leaves_error_null(t):
    ce = t["chartevents"]
    errors = ce[ce["error"] == 1]
    assert 0.001 * len(ce) < len(errors) < 0.01 * len(ce)
    assert (errors["itemid"] >= 220000).all()
    assert ce.loc[ce["itemid"] < 220000, "error"].isna().all()


def test_each_stay_uses_the_item_ids_of_its_system(t):
    ce = t["chartevents"].dropna(subset=["icustay_id"]).merge(t["icustays"][["icustay_id", "dbsource"]],
                                                              on="icustay_id")
    assert (ce.loc[ce["dbsource"] == "carevue", "itemid"] < 220000).all()
    assert (ce.loc[ce["dbsource"] == "metavision", "itemid"] >= 220000).all()
    assert set(ce["itemid"]) <= set(t["d_items"]["itemid"])
    assert set(t["labevents"]["itemid"]) <= set(t["d_labitems"]["itemid"])


def test_celsius_and_fahrenheit_temperatures(t):
    ce = t["chartevents"]
    fahrenheit = ce.loc[ce["itemid"].isin([678, 223761]), "valuenum"]
    celsius = ce.loc[ce["itemid"].isin([676, 223762]), "valuenum"]
    assert len(fahrenheit) > 1000 and len(celsius) > 1000
    assert 96 < fahrenheit.median() < 101 and 35.5 < celsius.median() < 38.5
    # a few readings carry the other unit: outside the queries' 70-120 °F / 10-50 °C ranges
    assert ((fahrenheit < 70).sum() > 0) and ((celsius > 50).sum() > 0)


def test_values_outside_the_valid_ranges(t):
    ce, labs = t["chartevents"], t["labevents"]
    heart = ce.loc[ce["itemid"].isin([211, 220045]), "valuenum"]
    assert (heart <= 0).sum() > 0 and (heart >= 300).sum() > 0
    assert (ce.loc[ce["itemid"].isin([646, 220277]), "valuenum"] > 100).sum() > 0
    assert (labs.loc[labs["itemid"] == 50931, "valuenum"] == 0).sum() > 0
    assert (labs.loc[labs["itemid"] == 50862, "valuenum"] > 10).sum() > 0
    assert (labs.loc[labs["itemid"] == 50813, "valuenum"] > 50).sum() > 0
    unreadable = labs[labs["valuenum"].isna() & (labs["itemid"] != 50800)]
    assert len(unreadable) > 0 and unreadable["value"].notna().all()


def test_age_quirks_neonates_and_dob_shifted_300_years(t, stays):
    under_18 = (stays["age"] < 18).mean()
    assert 0.02 < under_18 < 0.10
    first_admit = t["admissions"].groupby("subject_id")["admittime"].min()
    patients = t["patients"].set_index("subject_id")
    shifted_dob = first_admit.dt.normalize().apply(lambda ts: ts - pd.DateOffset(years=300))
    shifted = patients["dob"] == shifted_dob.reindex(patients.index)
    assert 0.02 < shifted.mean() < 0.12
    assert (stays.loc[stays["subject_id"].isin(shifted[shifted].index), "age"] >= 300).all()
    assert stays.loc[~stays["subject_id"].isin(shifted[shifted].index), "age"].max() < 100


def test_short_stays_and_admissions_without_chartevents(t):
    icu, adm = t["icustays"], t["admissions"]
    assert 0.10 < (icu["los"] < 2).mean() < 0.20
    no_chart = adm.loc[adm["has_chartevents_data"] == 0, "hadm_id"]
    assert 0.005 < len(no_chart) / len(adm) < 0.05
    assert not t["chartevents"]["hadm_id"].isin(no_chart).any()
    assert t["labevents"]["hadm_id"].isin(no_chart).any()


def test_lab_quirks_null_hadm_long_before_and_outside_icu_windows(t):
    labs, icu = t["labevents"], t["icustays"]
    first_admit = t["admissions"].groupby("subject_id")["admittime"].min()
    null_hadm = labs[labs["hadm_id"].isna()]
    assert len(null_hadm) > 0
    before = null_hadm["charttime"] < null_hadm["subject_id"].map(first_admit) - 30 * DAY
    assert before.sum() > 0
    windows = labs[["row_id", "subject_id", "charttime"]].merge(
        icu[["subject_id", "intime", "outtime"]], on="subject_id")
    inside = windows[(windows["charttime"] >= windows["intime"] - pd.Timedelta(hours=12))
                     & (windows["charttime"] < windows["outtime"] + pd.Timedelta(hours=12))]
    assert 0.05 < 1 - inside["row_id"].nunique() / len(labs) < 0.8


def test_blood_gas_magnesium_and_features_never_measured_in_some_stays(t, stays):
    labs = t["labevents"]
    specimens = labs.loc[labs["itemid"] == 50800, "value"]
    assert (specimens == "ART").mean() > 0.7 and labs.loc[labs["itemid"] == 50800, "valuenum"].isna().all()
    assert {50820, 50818, 50821, 50822, 50808, 50813, 50960} <= set(labs["itemid"])
    windows = labs[labs["itemid"] == 50862].merge(stays[["subject_id", "icustay_id", "intime", "outtime",
                                                         "qualifying"]], on="subject_id")
    during = (windows["charttime"] >= windows["intime"]) & (windows["charttime"] < windows["outtime"])
    measured = windows[during]
    qualifying = stays.loc[stays["qualifying"], "icustay_id"]
    without_albumin = 1 - qualifying.isin(measured["icustay_id"]).mean()
    assert 0.15 < without_albumin < 0.5


def test_chartevents_stay_within_the_icu_stay_give_or_take_an_hour(t):
    ce = t["chartevents"].dropna(subset=["icustay_id"]).merge(
        t["icustays"][["icustay_id", "intime", "outtime"]], on="icustay_id")
    hour = pd.Timedelta(hours=1)
    assert ((ce["charttime"] >= ce["intime"] - hour) & (ce["charttime"] <= ce["outtime"] + hour)).all()
    hours = (ce["outtime"] - ce["intime"]).dt.total_seconds() / 3600
    per_hour = ce.groupby("icustay_id").size() / hours.groupby(ce["icustay_id"]).first()
    assert 3 < per_hour.median() < 8  # six vitals about hourly, some gaps


# --- the mortality signal ------------------------------------------------------------------------

def test_mortality_among_qualifying_stays_is_about_the_rate(stays, cohort):
    q = stays[stays["qualifying"]]
    assert len(q) > 0.7 * STAYS
    assert abs(q["hospital_expire_flag"].mean() - 0.10) < 0.03
    died = cohort.truth.set_index("icustay_id")["died"]
    assert (died.loc[stays["icustay_id"]].to_numpy() == stays["hospital_expire_flag"].to_numpy()).all()


def test_mortality_rate_setting_moves_the_death_rate():
    c = generate_cohort(1500, seed=3, mortality_rate=0.25)
    died = c.truth["died"].to_numpy()
    los = c.tables["icustays"].set_index("icustay_id").loc[c.truth["icustay_id"], "los"].to_numpy()
    assert abs(died[los >= 2].mean() - 0.25) < 0.06


def test_oracle_auroc_recomputed_from_the_truth(stays, cohort):
    truth = cohort.truth.set_index("icustay_id").loc[stays["icustay_id"]]
    q = stays["qualifying"].to_numpy()
    expected = roc_auc_score(truth["died"].to_numpy()[q], truth["oracle_probability"].to_numpy()[q])
    assert cohort.oracle_auroc == pytest.approx(expected, abs=1e-12)
    assert 0.84 < cohort.oracle_auroc < 0.93
    order = np.argsort(cohort.truth["severity"].to_numpy())
    assert (np.diff(cohort.truth["oracle_probability"].to_numpy()[order]) >= 0).all()


def test_a_model_on_the_measurements_learns_the_signal_but_not_beyond_the_oracle(t, stays, cohort):
    """Per-stay means of a few features over the first 48 h, filtered as the queries filter."""
    q = stays[stays["qualifying"]].set_index("icustay_id")
    ce = t["chartevents"]
    ce = ce[(ce["error"] != 1) & ce["icustay_id"].isin(q.index)]
    vitals = {"heartrate": ([211, 220045], 0, 300), "sysbp": ([455, 51, 220179, 220050], 0, 400),
              "resprate": ([618, 615, 220210, 224690], 0, 70), "spo2": ([646, 220277], 0, 100.5)}
    features = {}
    for name, (items, low, high) in vitals.items():
        rows = ce[ce["itemid"].isin(items) & (ce["valuenum"] > low) & (ce["valuenum"] < high)]
        rows = rows[rows["charttime"] < rows["icustay_id"].map(q["intime"]) + 2 * DAY]
        features[name] = rows.groupby("icustay_id")["valuenum"].mean()
    labs = t["labevents"].merge(q.reset_index()[["icustay_id", "subject_id", "intime"]], on="subject_id")
    labs = labs[(labs["charttime"] >= labs["intime"]) & (labs["charttime"] < labs["intime"] + 2 * DAY)]
    for name, item in {"lactate": 50813, "bicarbonate": 50882, "ph": 50820, "creatinine": 50912}.items():
        rows = labs[(labs["itemid"] == item) & (labs["valuenum"] > 0) & (labs["valuenum"] < 50)]
        features[name] = rows.groupby("icustay_id")["valuenum"].mean()
    x = pd.DataFrame(features).reindex(q.index)
    severity = cohort.truth.set_index("icustay_id")["severity"].reindex(q.index)
    assert x["lactate"].corr(severity) > 0.3 and x["heartrate"].corr(severity) > 0.2
    assert x["bicarbonate"].corr(severity) < -0.2 and x["sysbp"].corr(severity) < -0.2
    x = x.fillna(x.median())
    x = (x - x.mean()) / x.std()
    died = q["hospital_expire_flag"].to_numpy()
    predicted = cross_val_predict(LogisticRegression(max_iter=1000), x.to_numpy(), died, cv=5,
                                  method="predict_proba")[:, 1]
    model_auroc = roc_auc_score(died, predicted)
    oracle = cohort.truth.set_index("icustay_id")["oracle_probability"].reindex(q.index)
    assert 0.7 < model_auroc < roc_auc_score(died, oracle) + 0.01


def test_bad_arguments_are_user_errors():
    with pytest.raises(IcurtError):
        generate_cohort(0, 1)
    with pytest.raises(IcurtError):
        generate_cohort(10, 1, mortality_rate=1.5)


# --- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    return generate_cohort(150, seed=21)


def test_load_cohort_row_counts_and_truth_round_trip(pg_dsn, schema, small):
    conn = connect(pg_dsn)
    try:
        counts = load_cohort(conn, schema, small)
        assert counts == {table: len(small.tables[table]) for table in TABLES}
        with conn.cursor() as cur:
            for table in TABLES:
                cur.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
                assert cur.fetchone()[0] == len(small.tables[table]), table
            cur.execute(f'SELECT count(*) FROM "{schema}".labevents WHERE hadm_id IS NULL')
            assert cur.fetchone()[0] == small.tables["labevents"]["hadm_id"].isna().sum()
            cur.execute(f'SELECT count(*) FROM "{schema}".chartevents WHERE error = 1')
            assert cur.fetchone()[0] == (small.tables["chartevents"]["error"] == 1).sum()
            cur.execute(f'SELECT min(charttime), max(charttime) FROM "{schema}".chartevents')
            low, high = cur.fetchone()
            assert pd.Timestamp(low) == small.tables["chartevents"]["charttime"].min()
            assert pd.Timestamp(high) == small.tables["chartevents"]["charttime"].max()
            cur.execute(f'SELECT DISTINCT value FROM "{schema}".labevents WHERE itemid = 50800')
            assert {row[0] for row in cur.fetchall()} <= {"ART", "VEN", "MIX"}
            cur.execute('SELECT indexname FROM pg_indexes WHERE schemaname = %s', (schema,))
            assert "chartevents_itemid_idx" in {row[0] for row in cur.fetchall()}
        truth, auroc = read_synth_truth(conn, schema)
    finally:
        conn.close()
    expected = small.truth.sort_values("icustay_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(truth, expected, check_exact=True)
    assert auroc == small.oracle_auroc or (np.isnan(auroc) and np.isnan(small.oracle_auroc))


def test_a_failed_load_leaves_no_schema_and_keeps_an_older_one(pg_dsn, schema, small):
    broken_labs = small.tables["labevents"].copy()
    broken_labs["itemid"] = broken_labs["itemid"].astype("Int32")
    broken_labs.loc[len(broken_labs) // 2, "itemid"] = pd.NA  # labevents.itemid is NOT NULL
    broken = type(small)(**{**small.__dict__, "tables": {**small.tables, "labevents": broken_labs}})
    conn = connect(pg_dsn)
    conn.autocommit = True  # even then the load is one transaction
    try:
        with pytest.raises(psycopg2.errors.NotNullViolation):
            load_cohort(conn, schema, broken)
        assert not _schema_exists(pg_dsn, schema)
        load_cohort(conn, schema, small)
        with pytest.raises(psycopg2.errors.NotNullViolation):
            load_cohort(conn, schema, broken)
        truth, _ = read_synth_truth(conn, schema)
        assert len(truth) == len(small.truth)
        assert conn.autocommit
    finally:
        conn.close()


def test_ctrl_c_during_a_copy_is_an_interruption_and_keeps_the_older_schema(pg_dsn, schema, small, monkeypatch):
    """psycopg2 turns an exception raised in the COPY's read() into QueryCanceled; the load raises
    the exception itself (here a KeyboardInterrupt, as Ctrl-C gives), and the older schema stays."""
    import icurt.db.synth.frame_copy as frame_copy

    conn = connect(pg_dsn)
    try:
        load_cohort(conn, schema, small)
        arrow = frame_copy._arrow

        def interrupted(frame):
            if "valuenum" in frame.columns:        # the events tables: mid-load
                raise KeyboardInterrupt
            return arrow(frame)

        monkeypatch.setattr(frame_copy, "_arrow", interrupted)
        with pytest.raises(KeyboardInterrupt):
            load_cohort(conn, schema, small)
        truth, _ = read_synth_truth(conn, schema)
        assert len(truth) == len(small.truth)
    finally:
        conn.close()


def test_read_synth_truth_without_a_synth_schema_is_a_user_error(pg_dsn, schema):
    conn = connect(pg_dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')
        conn.commit()
        with pytest.raises(IcurtError, match="no synthetic-cohort truth"):
            read_synth_truth(conn, schema)
    finally:
        conn.close()


def test_icurt_db_synth_command_builds_the_schema(make_config, schema, capsys, tmp_path, pg_dsn):
    code = main(["db", "synth", "--stays", "60", "--seed", "4", "--set", f"db.dsn={pg_dsn}",
                 "--set", f"db.schema={schema}", "--set", f"paths.data={tmp_path}"])
    assert code == 0
    out = capsys.readouterr().out
    assert "60 ICU stays" in out and "oracle AUROC" in out and "chartevents" in out
    assert "achievable ceiling AUROC" in out
    info = synthetic_cohort_info(make_config(f"db.schema={schema}"))
    assert info["stays"] == "60" and info["seed"] == "4" and "ceiling_auroc" in info


@pytest.mark.parametrize("command", [["db", "synth"], ["demo"]])
@pytest.mark.parametrize("stays", ["0", "-5", "1000001"])
def test_a_cohort_size_out_of_range_is_refused_before_anything(command, stays, tmp_path, capsys):
    # nothing listens on port 1: a command that touched the database would fail differently
    code = main([*command, "--stays", stays, "--set", "db.dsn=postgresql://u@127.0.0.1:1/x",
                 "--set", f"paths.data={tmp_path / 'data'}"])
    captured = capsys.readouterr()
    assert code == 2 and "generating" not in captured.err and "PostgreSQL" not in captured.err
    assert captured.err.strip().splitlines() == [
        f"icurt: error: a synthetic cohort has 1 to 1,000,000 ICU stays, not {int(stays):,}; pass --stays N "
        "in that range (or set [synth].stays)"]
    assert not (tmp_path / "data" / "pg").exists()


def test_truth_of_stays_only_for_the_cohort_the_dataset_came_from(make_config, pg_dsn, schema, small):
    from icurt.db.synth.state import truth_of_stays

    conn = connect(pg_dsn)
    try:
        load_cohort(conn, schema, small)
    finally:
        conn.close()
    cfg = make_config(f"db.schema={schema}")
    truth = small.truth.iloc[[5, 2, 9]]
    stays, died = truth["icustay_id"].to_numpy(), truth["died"].to_numpy()
    found = truth_of_stays(cfg, stays, died)
    assert list(found.index) == list(stays) and list(found.columns) == ["oracle_probability", "ceiling_probability"]
    np.testing.assert_allclose(found["ceiling_probability"], truth["ceiling_probability"])
    assert truth_of_stays(cfg, stays, 1 - died) is None                  # labels of another cohort
    assert truth_of_stays(cfg, np.r_[stays, 1], np.r_[died, 0]) is None   # a stay synth never made
    assert truth_of_stays(make_config("db.schema=nosuchschema"), stays, died) is None
