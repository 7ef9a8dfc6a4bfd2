"""Benchmarks of scoring (`pipeline bench score`; results in BENCHMARKS.md)."""
