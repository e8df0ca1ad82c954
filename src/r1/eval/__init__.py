"""Evaluation: held-out accuracy during training (and the benchmark harness)."""
