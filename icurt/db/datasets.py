"""Where the query stage reads from: the dataset ([db].dataset, MIMIC-III v1.4 or MIMIC-IV v2.2+), its
schemas, which schema holds each table, and the item ids of each feature in that release. Every
check and message of the query stage names the objects of the configured dataset through this."""

from __future__ import annotations

from dataclasses import dataclass

from icurt.db import schema_iv

MIMIC_III, MIMIC_IV = "mimic-iii", "mimic-iv"
RELEASES = {MIMIC_III: "MIMIC-III v1.4", MIMIC_IV: "MIMIC-IV v2.2+"}
# The tables the queries read, each of which must hold rows (the same names in both releases).
SOURCE_TABLES = ("patients", "admissions", "icustays", "chartevents", "labevents")

_LAB_ITEMS: dict[str, tuple[int, ...]] = {
    "potassium": (50822, 50971), "calcium": (50808, 50893), "ph": (50820,), "pco2": (50818,),
    "lactate": (50813,), "albumin": (50862,), "bun": (51006,), "creatinine": (50912,),
    "sodium": (50983, 50824), "bicarbonate": (50882, 50803), "platelet": (51265,),
    "glucose": (50931, 50809), "magnesium": (50960,),
}
# Per feature of the model (icurt.config.FEATURE_COLUMNS): the table and the item ids of every query
# column preprocess may read it from (sql/<dataset>/*.sql; blood gas or chemistry,
# [preprocess].<f>_source). MIMIC-IV keeps MIMIC-III's lab item ids; its chart items are
# MetaVision's only (plus the ART BP items 225309/225310 its vitalsign concept reads).
FEATURE_ITEMS: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {
    MIMIC_III: {
        **{feature: ("labevents", items) for feature, items in _LAB_ITEMS.items()},
        "heartrate": ("chartevents", (211, 220045)),
        "sysbp": ("chartevents", (51, 442, 455, 6701, 220179, 220050)),
        "diasbp": ("chartevents", (8368, 8440, 8441, 8555, 220180, 220051)),
        "tempc": ("chartevents", (676, 223762, 678, 223761)),
        "resprate": ("chartevents", (615, 618, 220210, 224690)),
        "spo2": ("chartevents", (646, 220277)),
    },
    MIMIC_IV: {
        **{feature: ("labevents", items) for feature, items in _LAB_ITEMS.items()},
        "heartrate": ("chartevents", (220045,)),
        "sysbp": ("chartevents", (220179, 220050, 225309)),
        "diasbp": ("chartevents", (220180, 220051, 225310)),
        "tempc": ("chartevents", (223762, 223761)),
        "resprate": ("chartevents", (220210, 224690)),
        "spo2": ("chartevents", (220277,)),
    },
}


@dataclass(frozen=True)
class QuerySource:
    """The dataset the queries read and where its tables are."""

    dataset: str                      # MIMIC_III or MIMIC_IV
    table_schemas: dict[str, str]     # each table of SOURCE_TABLES → the schema holding it

    @property
    def release(self) -> str:
        return RELEASES[self.dataset]

    @property
    def schemas(self) -> tuple[str, ...]:
        """The schemas the queries read, in search_path order (no duplicates)."""
        return tuple(dict.fromkeys(self.table_schemas.values()))

    @property
    def feature_items(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        return FEATURE_ITEMS[self.dataset]

    def schema_of(self, table: str) -> str:
        return self.table_schemas[table]

    def name_of(self, table: str) -> str:
        """The table as a message names it: bare when one schema holds every table, else schema.table."""
        return table if len(self.schemas) == 1 else f"{self.schema_of(table)}.{table}"

    def where(self) -> str:
        """The schemas in words: "schema 'mimiciii'" or "schemas 'mimiciv_hosp', 'mimiciv_icu'"."""
        names = ", ".join(f"'{name}'" for name in self.schemas)
        return f"schema{'s' if len(self.schemas) > 1 else ''} {names}"

    def fix(self) -> str:
        """How to get the tables the queries need (the end of every 'missing' message)."""
        if self.dataset == MIMIC_III:
            return ("build it with `icurt db synth` or `icurt db load-csv DIR`, or set [db].schema to the "
                    "schema that holds MIMIC-III v1.4 (or [db].dataset = \"mimic-iv\" for MIMIC-IV)")
        return ("build them with `icurt db synth --dataset mimic-iv` or `icurt db load-csv DIR` (DIR holding "
                "hosp/ and icu/), or set [db].hosp_schema and [db].icu_schema to the schemas that hold "
                "MIMIC-IV v2.2+ (or [db].dataset = \"mimic-iii\" for MIMIC-III)")


def query_source(db) -> QuerySource:
    """The QuerySource of a [db] config section (icurt.config_sections.DbConfig)."""
    if db.dataset == MIMIC_III:
        return QuerySource(MIMIC_III, {table: db.schema for table in SOURCE_TABLES})
    module_schema = {"hosp": db.hosp_schema, "icu": db.icu_schema}
    return QuerySource(MIMIC_IV, {table: module_schema[schema_iv.module_of(table)] for table in SOURCE_TABLES})


def load_schemas(db) -> dict[str, str]:
    """The schemas a load of the configured dataset writes, by module: {"": schema} for MIMIC-III,
    {"hosp": hosp_schema, "icu": icu_schema} for MIMIC-IV."""
    if db.dataset == MIMIC_III:
        return {"": db.schema}
    return {"hosp": db.hosp_schema, "icu": db.icu_schema}


def synth_schema(db) -> str:
    """The schema where synth keeps its truth and info tables (MIMIC-IV: the icu schema, with the stays)."""
    return db.schema if db.dataset == MIMIC_III else db.icu_schema
