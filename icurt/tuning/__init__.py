"""Tuning, shared by tune-model and tune-attack.

space.py   search spaces (Optuna distributions) and decoding trial parameters (no Ray)
trials.py  the study's plan, how a trial ends, the trials table, the best trial (no Ray)
study.py   the Ray edge: OptunaSearch (TPE, study in PostgreSQL) + ASHA run by Ray Tune
stage.py   tune_stage(): the whole tuning stage around a stage's TuningTask
"""
