"""Stages 3 and 4: the LSTM classifier, its trainer, model tuning and cross-validation."""
