"""Benchmarks, synthetic task families, metrics, runner and reports."""
