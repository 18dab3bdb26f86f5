"""Baselines beside the BiLSTM (pure, no Ray): logistic regression and gradient-boosted trees on
per-feature summaries of the 48 h window, fitted on the train run's own folds (issue 24)."""
