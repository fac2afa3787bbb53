"""Confidence intervals: Wilson, DeLong, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.stats import bootstrap_mean_interval, delong_interval, wilson_interval
from evaluator.stats.intervals import (
    bootstrap_interval,
    bootstrap_mean_intervals,
    resample_counts,
)


def test_wilson_known_values():
    # 8 of 10, 95 %: the textbook Wilson interval is (0.4902, 0.9433)
    ci = wilson_interval(8, 10)
    assert ci.low == pytest.approx(0.4902, abs=1e-4)
    assert ci.high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0).low is None
    assert wilson_interval(0, 20).low == 0.0


def delong_brute_force(y, s):
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return psi.mean(), v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size


def test_delong_variance_matches_the_structural_components_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.random(80), 1)
    auc, var, ci = delong_interval(y, s)
    auc_bf, var_bf = delong_brute_force(y, s)
    assert auc == pytest.approx(auc_bf)
    assert var == pytest.approx(var_bf)
    assert ci.low < auc < ci.high and ci.method == "delong"


def test_bootstrap_is_seeded_and_covers_the_mean():
    v = np.random.default_rng(1).normal(size=200)
    a = bootstrap_mean_interval(v, n_resamples=500, seed=3)
    b = bootstrap_mean_interval(v, n_resamples=500, seed=3)
    assert a == b
    assert a.low < v.mean() < a.high
    generic = bootstrap_interval(lambda idx: float(v[idx].mean()), v.size, n_resamples=500)
    assert generic.low == pytest.approx(a.low, abs=0.05)


def test_bootstrap_leaves_undefined_cases_out():
    v = np.array([1.0, np.nan, 1.0, 1.0])
    ci = bootstrap_mean_interval(v, n_resamples=100)
    assert ci.low == ci.high == 1.0


def test_several_metrics_share_resamples_and_each_gets_its_own_interval():
    # a report's metrics get their intervals from one set of drawn resamples; each must still be
    # the percentile interval of its own resampled means (undefined cases left out), computed
    # here one resample at a time from the drawn cases
    rng = np.random.default_rng(5)
    dice = rng.random(40)
    hd95 = rng.gamma(2.0, 3.0, 40)
    hd95[[3, 17, 18]] = np.nan  # undefined for these cases
    never = np.full(40, np.nan)
    got = bootstrap_mean_intervals(
        {"dice": dice, "hd95": hd95, "never": never}, n_resamples=300, seed=11, level=0.9
    )
    w = resample_counts(40, 300, seed=11)
    for name, v in (("dice", dice), ("hd95", hd95)):
        means = []
        for counts in w:
            drawn = np.repeat(v, counts.astype(int))
            drawn = drawn[~np.isnan(drawn)]
            if drawn.size:
                means.append(drawn.mean())
        lo, hi = np.quantile(means, [0.05, 0.95])
        assert got[name].low == pytest.approx(lo, rel=1e-12)
        assert got[name].high == pytest.approx(hi, rel=1e-12)
        assert got[name].level == 0.9 and got[name].method == "bootstrap"
        assert got[name] == bootstrap_mean_interval(v, n_resamples=300, seed=11, level=0.9)
    assert got["never"].low is None and got["never"].high is None
    with pytest.raises(ValueError, match="different lengths"):
        bootstrap_mean_intervals({"a": dice, "b": dice[:5]})


def test_resample_counts_sum_to_the_number_of_cases():
    w = resample_counts(17, 30, seed=0)
    assert w.shape == (30, 17)
    assert np.all(w.sum(axis=1) == 17)
