"""Benchmarks of label generation (`pipeline bench labelgen ...`; results in BENCHMARKS.md)."""
