"""Rank intervals and tiers for metrics computed over the whole test set (AUC, sensitivity, ...).

A mean over cases (Dice, Brier) is re-ranked on resamples by one matrix product of the resample
counts with the per-case values (:func:`evaluator.ranking.bootstrap_ranks`). A set-level metric
has no per-case value to average: each resample needs the metric computed again from every
entry's predictions and the reference labels. This module does that as a *paired* bootstrap:
every entry is scored on the same resamples of cases, so that the comparison of two entries on
one resample is a comparison on the same cases (docs/metrics.md, "Rank intervals").

Each resample is a vector of counts (how often each case was drawn). Metrics that come from the
confusion matrix at the phase's threshold are ratios of weighted counts, and AUC-ROC is a
weighted Mann-Whitney statistic, so both are computed for all resamples at once; every other
metric (AUC-PR, sensitivity at a specificity, multi-class macro averages) is computed by the
evaluator's own metric function on each resample's cases. Tests check the fast paths against
those functions on the same resamples.

Tiers come from the same resamples: for entries a above b, the one-sided bootstrap p-value of
"a is better than b" is the share of resamples where a is not better (plus one, over the number
of resamples plus one), Holm-adjusted over all pairs; the tier walk is the Wilcoxon one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from evaluator.metrics.classification import binary_metrics, multiclass_metrics
from evaluator.ranking import (
    RankStability,
    Tiers,
    _badness,
    _min_ranks,
    holm_adjust,
    kendall_tau_b,
    tier_walk,
)
from evaluator.stats.intervals import resample_counts

__all__ = ["FAST_SET_METRICS", "SetEntry", "set_metric_bootstrap", "set_metric_resamples"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

#: metrics that are ratios of confusion-matrix counts at the threshold
_CONFUSION = {
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "accuracy",
    "balanced_accuracy",
}

#: binary metrics computed for all resamples at once (the others: once per resample)
FAST_SET_METRICS = frozenset(_CONFUSION | {"auc_roc"})


@dataclass(frozen=True)
class SetEntry:
    """One entry's predictions on the test cases, in the order of the labels.

    ``probs``: (n,) positive-class probabilities for a binary task, else (n, k) class
    probabilities in the order of ``classes``. ``hard_labels``: the entry sent decisions, not
    probabilities (threshold-free metrics are then undefined, as in scoring).
    """

    probs: FloatArray
    hard_labels: bool = False


def _div(a: FloatArray, b: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _confusion_metric(
    metric: str, w: FloatArray, y: IntArray, s: FloatArray, threshold: float
) -> FloatArray:
    """The metric on every resample (rows of ``w``) from weighted confusion counts."""
    flagged = s >= threshold
    pos = y == 1
    tp = w @ (flagged & pos).astype(np.float64)
    fp = w @ (flagged & ~pos).astype(np.float64)
    fn = w @ (~flagged & pos).astype(np.float64)
    tn = w @ (~flagged & ~pos).astype(np.float64)
    sens, spec = _div(tp, tp + fn), _div(tn, tn + fp)
    if metric == "sensitivity":
        return sens
    if metric == "specificity":
        return spec
    if metric == "ppv":
        return _div(tp, tp + fp)
    if metric == "npv":
        return _div(tn, tn + fn)
    if metric == "f1":
        return _div(2 * tp, 2 * tp + fp + fn)
    if metric == "accuracy":
        return _div(tp + tn, tp + tn + fp + fn)
    return (sens + spec) / 2.0  # balanced_accuracy


def _weighted_auc_roc(w: FloatArray, y: IntArray, s: FloatArray) -> FloatArray:
    """Mann-Whitney AUC on every resample: a case drawn k times counts k times, a tie between
    a positive and a negative counts one half (as :func:`~evaluator.metrics.classification
    .auc_roc` on the resample's cases).

    Cases are grouped by distinct score; one sparse product gives every resample's weight of
    positives and of negatives per group, in score order."""
    n = y.size
    _uniq, group = np.unique(s, return_inverse=True)
    g = int(group.max()) + 1 if n else 0
    columns = group + np.where(y == 1, 0, g)
    indicator = sparse.csr_matrix((np.ones(n), (np.arange(n), columns)), shape=(n, 2 * g))
    per_group = np.asarray((indicator.T @ w.T).T)  # (B, 2g): positives, then negatives
    pos_g, neg_g = per_group[:, :g], per_group[:, g:]
    below = np.cumsum(neg_g, axis=1) - neg_g  # negatives strictly below each group
    n1, n0 = pos_g.sum(axis=1), neg_g.sum(axis=1)
    u = (pos_g * (below + 0.5 * neg_g)).sum(axis=1)
    return _div(u, n1 * n0)


def _generic(
    metric: str,
    w: FloatArray,
    y: IntArray,
    entry: SetEntry,
    classes: Sequence[int],
    threshold: float,
    sens_at_spec_target: float,
) -> FloatArray:
    """The evaluator's own metric function on each resample's cases."""
    out = np.empty(w.shape[0])
    binary = entry.probs.ndim == 1
    for b in range(w.shape[0]):
        idx = np.repeat(np.arange(y.size), w[b].astype(np.int64))
        if binary:
            values, _ = binary_metrics(
                y[idx],
                entry.probs[idx],
                threshold=threshold,
                sens_at_spec_target=sens_at_spec_target,
                hard_labels=entry.hard_labels,
                metrics=[metric],
            )
        else:
            values, _ = multiclass_metrics(
                y[idx],
                entry.probs[idx],
                classes,
                threshold=threshold,
                sens_at_spec_target=sens_at_spec_target,
                hard_labels=entry.hard_labels,
                metrics=[metric],
            )
        out[b] = values.get(metric, np.nan)
    return out


def set_metric_resamples(
    metric: str,
    w: FloatArray,
    y: IntArray,
    entry: SetEntry,
    *,
    classes: Sequence[int] = (0, 1),
    threshold: float = 0.5,
    sens_at_spec_target: float = 0.9,
) -> FloatArray:
    """The metric of one entry on every resample (rows of the count matrix ``w``)."""
    binary = entry.probs.ndim == 1
    if binary and metric in _CONFUSION:
        return _confusion_metric(metric, w, y, entry.probs, threshold)
    if binary and metric == "auc_roc":
        if entry.hard_labels:
            return np.full(w.shape[0], np.nan)
        return _weighted_auc_roc(w, y, entry.probs)
    return _generic(metric, w, y, entry, classes, threshold, sens_at_spec_target)


def set_metric_bootstrap(
    y: Sequence[int] | IntArray,
    entries: Mapping[str, SetEntry],
    *,
    metric: str,
    higher_is_better: bool,
    classes: Sequence[int] = (0, 1),
    threshold: float = 0.5,
    sens_at_spec_target: float = 0.9,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
) -> tuple[RankStability, Tiers]:
    """Paired bootstrap of a set-level metric: each entry's rank interval, Kendall's tau of the
    full ranking with the resamples, and significance tiers (see the module docstring)."""
    labels = np.asarray(y, dtype=np.int64)
    names = list(entries)
    n = labels.size
    full_w = np.ones((1, n))
    full = np.array(
        [
            set_metric_resamples(
                metric, full_w, labels, entries[e], classes=classes, threshold=threshold,
                sens_at_spec_target=sens_at_spec_target,
            )[0]
            for e in names
        ]
    )  # fmt: skip
    full_ranks = _min_ranks(_badness(full, higher_is_better)) if names else np.zeros(0, int)
    if not names or n == 0 or n_resamples <= 0:
        ranks = {e: int(r) for e, r in zip(names, full_ranks, strict=True)}
        return (
            RankStability(ranks, ranks, ranks, None, {}, 0, seed, level),
            Tiers(dict.fromkeys(names, 1), dict.fromkeys(names, 0), {}, alpha),
        )
    w = resample_counts(n, n_resamples, seed)
    boot = np.stack(
        [
            set_metric_resamples(
                metric, w, labels, entries[e], classes=classes, threshold=threshold,
                sens_at_spec_target=sens_at_spec_target,
            )
            for e in names
        ],
        axis=1,
    )  # (B, E)  # fmt: skip
    boot_ranks = _min_ranks(_badness(boot, higher_is_better), axis=1)
    tail = (1.0 - level) / 2.0
    lo = np.floor(np.quantile(boot_ranks, tail, axis=0, method="lower")).astype(int)
    hi = np.ceil(np.quantile(boot_ranks, 1.0 - tail, axis=0, method="higher")).astype(int)
    taus = kendall_tau_b(full_ranks.astype(np.float64), boot_ranks.astype(np.float64))
    taus = taus[~np.isnan(taus)]
    quant: dict[str, float | None] = {
        f"{q:g}": (float(np.quantile(taus, q)) if taus.size else None)
        for q in (tail, 0.5, 1.0 - tail)
    }
    stability = RankStability(
        ranks={e: int(r) for e, r in zip(names, full_ranks, strict=True)},
        rank_low={e: int(r) for e, r in zip(names, lo, strict=True)},
        rank_high={e: int(r) for e, r in zip(names, hi, strict=True)},
        kendall_tau_mean=float(taus.mean()) if taus.size else None,
        kendall_tau_quantiles=quant,
        n_resamples=n_resamples,
        seed=seed,
        level=level,
    )
    order = np.argsort(_badness(full, higher_is_better), kind="mergesort")
    sign = 1.0 if higher_is_better else -1.0
    pairs = [(int(a), int(b)) for i, a in enumerate(order) for b in order[i + 1 :]]
    pvals = []
    for a, b in pairs:
        d = sign * (boot[:, a] - boot[:, b])
        not_better = np.count_nonzero(~(d > 0))  # NaN (metric undefined) counts against a
        pvals.append((1.0 + not_better) / (1.0 + n_resamples))
    adjusted = holm_adjust(pvals)
    p_adj = {(names[a], names[b]): p for (a, b), p in zip(pairs, adjusted, strict=True)}
    return stability, tier_walk(names, order, p_adj, alpha)
