"""Stages 5 and 6: the sparse adversarial attack, its tuning and the sharded full attack."""
