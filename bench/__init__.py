"""Benchmarks (`make bench`): measured numbers, written to bench/RESULTS.md."""
