"""Confidence intervals: bootstrap over cases, Wilson for proportions, DeLong for AUC."""

from evaluator.stats.intervals import (
    Interval,
    bootstrap_interval,
    bootstrap_mean_interval,
    delong_interval,
    wilson_interval,
)

__all__ = [
    "Interval",
    "bootstrap_interval",
    "bootstrap_mean_interval",
    "delong_interval",
    "wilson_interval",
]
