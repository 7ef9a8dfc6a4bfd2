"""Benchmarks of training: losses, loader and training step (`pipeline bench losses|loader|train`;
results in BENCHMARKS.md)."""
