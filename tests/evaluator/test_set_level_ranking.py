"""Rank intervals and tiers for set-level metrics: the paired bootstrap of docs/metrics.md."""

from __future__ import annotations

import numpy as np
import pytest

from evaluator.metrics.classification import BINARY_METRIC_NAMES, binary_metrics
from evaluator.ranking_sets import SetEntry, set_metric_bootstrap, set_metric_resamples
from evaluator.stats.intervals import resample_counts


def _data(n: int = 160, seed: int = 3) -> tuple[np.ndarray, dict[str, SetEntry]]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int64)
    noise = rng.normal(size=(3, n))
    entries = {
        "strong": SetEntry(1 / (1 + np.exp(-(3.0 * (2 * y - 1) + noise[0])))),
        "weak": SetEntry(1 / (1 + np.exp(-(0.4 * (2 * y - 1) + noise[1])))),
        # scores rounded to one decimal: many ties, the case the tie handling must get right
        "ties": SetEntry(np.round(1 / (1 + np.exp(-(1.0 * (2 * y - 1) + noise[2]))), 1)),
    }
    return y, entries


@pytest.mark.parametrize(
    "metric",
    [m for m in BINARY_METRIC_NAMES if m != "brier"],
)
def test_every_resample_equals_the_metric_computed_on_the_resampled_cases(metric):
    """The vectorized paths (confusion counts, weighted Mann-Whitney) give what the evaluator's
    own metric function gives on the cases each resample draws."""
    y, entries = _data()
    w = resample_counts(y.size, 40, seed=7)
    for entry in entries.values():
        fast = set_metric_resamples(metric, w, y, entry, threshold=0.5)
        for b in range(w.shape[0]):
            idx = np.repeat(np.arange(y.size), w[b].astype(np.int64))
            ref, _ = binary_metrics(y[idx], entry.probs[idx], threshold=0.5, metrics=[metric])
            assert fast[b] == pytest.approx(ref[metric], abs=1e-12, nan_ok=True)


def test_a_clearly_better_entry_is_alone_in_the_first_tier_with_a_narrow_rank_range():
    y, entries = _data()
    stab, tiers = set_metric_bootstrap(
        y, entries, metric="auc_roc", higher_is_better=True, n_resamples=400, seed=1
    )
    full = {
        e: binary_metrics(y, s.probs, metrics=["auc_roc"])[0]["auc_roc"] for e, s in entries.items()
    }
    assert full["strong"] > full["ties"] > full["weak"]
    assert stab.ranks == {"strong": 1, "ties": 2, "weak": 3}
    assert (stab.rank_low["strong"], stab.rank_high["strong"]) == (1, 1)
    assert tiers.tier["strong"] == 1
    assert tiers.tier["weak"] > tiers.tier["strong"]
    for e in entries:
        assert stab.rank_low[e] <= stab.ranks[e] <= stab.rank_high[e]


def test_identical_entries_share_tier_and_rank_range():
    y, entries = _data()
    twins = {"a": entries["weak"], "b": SetEntry(entries["weak"].probs.copy())}
    stab, tiers = set_metric_bootstrap(
        y, twins, metric="sensitivity", higher_is_better=True, n_resamples=200, seed=2
    )
    assert stab.rank_low == {"a": 1, "b": 1} and stab.rank_high == {"a": 1, "b": 1}
    assert tiers.tier == {"a": 1, "b": 1}


def test_close_entries_get_overlapping_rank_ranges_and_one_tier():
    """Two predictors that differ by noise only: the bootstrap cannot separate them."""
    rng = np.random.default_rng(5)
    y = (rng.random(60) < 0.4).astype(np.int64)
    base = 0.6 * (2 * y - 1)
    entries = {
        f"e{i}": SetEntry(1 / (1 + np.exp(-(base + rng.normal(size=y.size))))) for i in range(2)
    }
    stab, tiers = set_metric_bootstrap(
        y, entries, metric="accuracy", higher_is_better=True, n_resamples=400, seed=3
    )
    assert stab.rank_high["e0"] == 2 and stab.rank_high["e1"] == 2
    assert tiers.tier == {"e0": 1, "e1": 1}


def test_multiclass_and_hard_labels_use_the_evaluator_functions():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 3, size=90)
    good = np.eye(3)[y] * 0.7 + 0.1
    noisy = rng.dirichlet(np.ones(3), size=y.size)
    entries = {"good": SetEntry(good), "noisy": SetEntry(noisy)}
    stab, tiers = set_metric_bootstrap(
        y, entries, metric="auc_roc", higher_is_better=True, classes=[0, 1, 2],
        n_resamples=100, seed=4,
    )  # fmt: skip
    assert stab.ranks == {"good": 1, "noisy": 2}
    assert tiers.tier["good"] == 1 and tiers.tier["noisy"] == 2
    hard = SetEntry(np.where(entries["good"].probs[:, 1] > 0.5, 1.0, 0.0), hard_labels=True)
    w = resample_counts(y.size, 5, seed=1)
    assert np.isnan(set_metric_resamples("auc_roc", w, (y == 1).astype(np.int64), hard)).all()
