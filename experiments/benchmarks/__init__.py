"""Benchmarks: one module each, run as ``python -m experiments.benchmarks.NAME --preset P --seed N --json PATH``."""
