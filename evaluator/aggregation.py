"""Worst-value filling and means over cases, as ``docs/metrics.md`` fixes them.

A value that is NaN although the metric needs one to rank (a distance with an empty mask, a missing
case) gets the metric's worst value before any mean, and is counted. A value that is undefined by
definition (sensitivity with an empty reference) stays NaN and is left out of the mean; the number
of cases that entered each mean is reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Aggregate", "aggregate_cases"]


@dataclass
class Aggregate:
    means: dict[str, float | None] = field(default_factory=dict)
    n_in_mean: dict[str, int] = field(default_factory=dict)
    undefined: dict[str, int] = field(default_factory=dict)


def aggregate_cases(cases: Mapping[str, Mapping[str, float | None]]) -> Aggregate:
    """Mean of every metric over cases, NaN/None values left out and counted."""
    keys: list[str] = []
    for values in cases.values():
        for k in values:
            if k not in keys:
                keys.append(k)
    out = Aggregate()
    for k in keys:
        vals = np.array(
            [v if v is not None else math.nan for v in (c.get(k) for c in cases.values())],
            dtype=np.float64,
        )
        ok = ~np.isnan(vals)
        out.n_in_mean[k] = int(ok.sum())
        out.undefined[k] = int((~ok).sum())
        out.means[k] = float(vals[ok].mean()) if ok.any() else None
    return out
