"""The synthetic, MIMIC-III-shaped cohort of `icurt db synth` (same tables, item ids, units and
quirks as MIMIC-III v1.4, a planted mortality signal).

cohort.py    generate the tables, COPY them into a schema, store and read the truth (`run_synth`)
skeleton.py  patients, admissions and ICU stays in time; latent severity and the oracle
hospital.py  the PATIENTS, ADMISSIONS and ICUSTAYS frames
events.py    physiology over time: CHARTEVENTS and LABEVENTS
items.py     the item dictionaries (D_ITEMS, D_LABITEMS) and how each item is measured
state.py     whether the schema already holds the cohort asked for
mimic_iv.py  the same cohort translated into MIMIC-IV's tables (`icurt db synth --dataset mimic-iv`)
frame_copy.py  COPY of a frame as CSV written in a background thread
"""
