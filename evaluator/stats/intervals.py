"""Confidence intervals as ``docs/metrics.md`` fixes them.

Bootstrap resamples *cases* (patients), never voxels; it is seeded and uses percentile
intervals. Proportions from counts (sensitivity, specificity in classification) use Wilson's score
interval; the AUC uses DeLong's variance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from numpy.typing import NDArray

from evaluator.stats.ranks import average_ranks

__all__ = [
    "Interval",
    "bootstrap_interval",
    "bootstrap_mean_interval",
    "bootstrap_mean_intervals",
    "delong_interval",
    "resample_counts",
    "wilson_interval",
]


@dataclass(frozen=True)
class Interval:
    low: float | None
    high: float | None
    method: str
    level: float

    def to_json(self) -> dict[str, object]:
        return {"low": self.low, "high": self.high, "method": self.method, "level": self.level}


def _clean(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def wilson_interval(successes: int, n: int, *, level: float = 0.95) -> Interval:
    """Wilson score interval for a binomial proportion ``successes / n``."""
    if n <= 0:
        return Interval(None, None, "wilson", level)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return Interval(max(0.0, centre - half), min(1.0, centre + half), "wilson", level)


def delong_interval(
    y: NDArray[np.int64], s: NDArray[np.float64], *, level: float = 0.95
) -> tuple[float, float, Interval]:
    """AUC, its DeLong variance and a normal interval clipped to [0, 1].

    Uses the midrank formulation of Sun & Xu (2014), O(n log n).
    """
    pos, neg = s[y == 1], s[y == 0]
    m, n = pos.size, neg.size
    if m == 0 or n == 0:
        return math.nan, math.nan, Interval(None, None, "delong", level)
    tz = average_ranks(np.concatenate([pos, neg]))
    tx, ty = average_ranks(pos), average_ranks(neg)
    auc = float((tz[:m].sum() - m * (m + 1) / 2.0) / (m * n))
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    var = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (np.var(v01, ddof=1) / n if n > 1 else 0.0)
    z = NormalDist().inv_cdf(0.5 + level / 2.0)
    half = z * math.sqrt(max(float(var), 0.0))
    return auc, float(var), Interval(max(0.0, auc - half), min(1.0, auc + half), "delong", level)


def resample_counts(n_cases: int, n_resamples: int, seed: int) -> NDArray[np.float64]:
    """How often each case is drawn in each bootstrap resample: shape (n_resamples, n_cases).

    Drawing indices and counting them lets any mean over resamples be one matrix product.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_cases, size=(n_resamples, n_cases))
    offsets = (np.arange(n_resamples) * n_cases)[:, None]
    counts = np.bincount((idx + offsets).ravel(), minlength=n_resamples * n_cases)
    return counts.reshape(n_resamples, n_cases).astype(np.float64)


def bootstrap_mean_interval(
    values: NDArray[np.float64],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of the mean over cases; NaN cases are left out of each
    resample's mean (they are "undefined by definition")."""
    got = bootstrap_mean_intervals({"": values}, n_resamples=n_resamples, seed=seed, level=level)
    return got[""]


def bootstrap_mean_intervals(
    columns: Mapping[str, NDArray[np.float64]],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Interval]:
    """:func:`bootstrap_mean_interval` of several metrics over the same cases (every column
    one value per case, in the same order), with the same resamples: they are drawn once for
    all columns (drawing is most of the cost), and each column's interval is the one
    :func:`bootstrap_mean_interval` gives for it alone."""
    sizes = {np.asarray(v).size for v in columns.values()}
    if len(sizes) > 1:
        raise ValueError(f"columns of different lengths: {sorted(sizes)}")
    n_cases = sizes.pop() if sizes else 0
    if n_cases == 0 or n_resamples <= 0:
        return {k: Interval(None, None, "bootstrap", level) for k in columns}
    w = resample_counts(n_cases, n_resamples, seed)
    alpha = (1.0 - level) / 2.0
    out: dict[str, Interval] = {}
    for key, values in columns.items():
        v = np.asarray(values, dtype=np.float64)
        ok = ~np.isnan(v)
        sums = w @ np.where(ok, v, 0.0)
        counts = w @ ok.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts
        means = means[~np.isnan(means)]
        if means.size == 0:
            out[key] = Interval(None, None, "bootstrap", level)
            continue
        lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
        out[key] = Interval(_clean(float(lo)), _clean(float(hi)), "bootstrap", level)
    return out


def bootstrap_interval(
    statistic: Callable[[NDArray[np.intp]], float],
    n_cases: int,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of any statistic of a set of cases.

    ``statistic`` receives the resampled case indices and returns the value (NaN values, e.g. an
    AUC of a resample with one class only, are dropped).
    """
    if n_cases == 0 or n_resamples <= 0:
        return Interval(None, None, "bootstrap", level)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    for i in range(n_resamples):
        stats[i] = statistic(rng.integers(0, n_cases, size=n_cases))
    stats = stats[~np.isnan(stats)]
    if stats.size == 0:
        return Interval(None, None, "bootstrap", level)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return Interval(_clean(float(lo)), _clean(float(hi)), "bootstrap", level)
