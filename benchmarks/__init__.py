"""Benchmarks and result reproductions; run as ``python -m benchmarks.compare`` / ``python -m benchmarks.results``."""
