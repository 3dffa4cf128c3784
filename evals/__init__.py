"""Reasoning evaluation: benchmark loaders, synthetic task families, k-sample metrics, runner, reports."""

from evals.metrics import pass_at_k

__all__ = ["pass_at_k"]
