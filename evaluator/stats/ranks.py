"""Average (mid) ranks without importing ``scipy.stats`` (which costs a second at start-up)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["average_ranks"]


def average_ranks(values: ArrayLike) -> NDArray[np.float64]:
    """1-based ranks of a 1-D array, ties getting the mean of the ranks they span
    (``scipy.stats.rankdata(method="average")``)."""
    x = np.asarray(values)
    n = x.size
    if n == 0:
        return np.zeros(0)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    new_group = np.r_[True, xs[1:] != xs[:-1]]
    starts = np.flatnonzero(new_group)
    ends = np.r_[starts[1:], n]
    mid = (starts + 1 + ends) / 2.0
    ranks = np.empty(n)
    ranks[order] = mid[np.cumsum(new_group) - 1]
    return ranks
