"""Verifier-based rejection sampling: teacher samples -> SFT set, RL prompt set, report.

    from distill.filter import FilterConfig, run_filter
    out = run_filter(FilterConfig(inputs=["runs/generate/samples"], out="runs/filter"))

See distill/filter/run.py for the passes and files.
"""

from distill.filter.config import FilterConfig
from distill.filter.run import run_filter

__all__ = ["FilterConfig", "run_filter"]
