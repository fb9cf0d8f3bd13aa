"""Benchmark harness for ufm-scl (``python -m benchmarks``; see benchmarks/run.py). Not a test."""
