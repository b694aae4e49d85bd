"""Benchmarks, run by hand: `python -m bench.run --help`."""
