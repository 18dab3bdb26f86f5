"""Stage 2: query output → (N, 48, 19) features and mortality labels."""
