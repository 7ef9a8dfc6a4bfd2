"""Micro-benchmarks runnable as modules, e.g. `python -m pipeline.bench.codecs`."""
