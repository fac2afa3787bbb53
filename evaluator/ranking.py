"""Ranking entries with their uncertainty, as ``docs/metrics.md`` fixes it.

Input everywhere is per-case values: ``{entry: {case_id: value}}`` (``None``/NaN where a value is
undefined by definition; values that need a worst value should already have it, as
:func:`evaluator.score` does). Entries need not share every case: a case an entry lacks is NaN.

* :func:`rank_scores` ranks aggregate scores, ties sharing the best rank (1, 1, 3);
* :func:`aggregate_then_rank` (the default) and :func:`rank_then_aggregate` (several metrics);
* :func:`bootstrap_ranks`: resample cases, re-rank, report each entry's rank interval and
  Kendall's tau between the full ranking and every resample;
* :func:`significance_tiers`: paired one-sided Wilcoxon signed-rank tests, Holm-adjusted, into
  tiers of entries not significantly different from the tier's leader;
* :func:`public_private_split` and :func:`ladder` against leaderboard overfitting;
* :func:`leaderboard` puts it all together (what the platform and ``evaluator rank`` call).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy.stats import rankdata, wilcoxon

from evaluator.stats.intervals import resample_counts

__all__ = [
    "LadderStep",
    "Leaderboard",
    "RankStability",
    "Tiers",
    "aggregate_then_rank",
    "bootstrap_ranks",
    "holm_adjust",
    "kendall_tau_b",
    "ladder",
    "leaderboard",
    "public_private_split",
    "rank_scores",
    "rank_then_aggregate",
    "significance_tiers",
    "tier_walk",
]

Values = Mapping[str, Mapping[str, float | None]]
Aggregate = Literal["mean", "median"]
FloatArray = NDArray[np.float64]


def _matrix(values: Values) -> tuple[list[str], list[str], FloatArray]:
    """Entries, cases (sorted union) and the (entries x cases) matrix with NaN for gaps."""
    entries = list(values)
    cases = sorted({c for per_case in values.values() for c in per_case})
    col = {c: j for j, c in enumerate(cases)}
    m = np.full((len(entries), len(cases)), np.nan)
    for i, e in enumerate(entries):
        for c, v in values[e].items():
            if v is not None:
                m[i, col[c]] = float(v)
    return entries, cases, m


def _badness(scores: FloatArray, higher_is_better: bool) -> FloatArray:
    """Turn scores into "lower is better" with NaN last."""
    bad = -scores if higher_is_better else scores.copy()
    bad[np.isnan(bad)] = np.inf
    return bad


def _min_ranks(badness: FloatArray, axis: int = -1) -> NDArray[np.int64]:
    return np.asarray(rankdata(badness, method="min", axis=axis), dtype=np.int64)


def rank_scores(scores: Mapping[str, float | None], *, higher_is_better: bool) -> dict[str, int]:
    """Rank aggregate scores: best is 1, ties share the best rank (1, 1, 3), missing last."""
    entries = list(scores)
    arr = np.array([np.nan if scores[e] is None else scores[e] for e in entries], dtype=float)
    if not entries:
        return {}
    ranks = _min_ranks(_badness(arr, higher_is_better))
    return {e: int(r) for e, r in zip(entries, ranks, strict=True)}


def _aggregate(m: FloatArray, how: Aggregate) -> FloatArray:
    with np.errstate(invalid="ignore"), _quiet():
        if how == "mean":
            ok = ~np.isnan(m)
            sums = np.where(ok, m, 0.0).sum(axis=1)
            n = ok.sum(axis=1)
            return np.where(n > 0, sums / np.maximum(n, 1), np.nan)
        return np.asarray(np.nanmedian(m, axis=1), dtype=np.float64)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's "mean of empty slice" style warnings; NaN results are handled."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def aggregate_then_rank(
    values: Values, *, higher_is_better: bool, aggregate: Aggregate = "mean"
) -> tuple[dict[str, float | None], dict[str, int]]:
    """Aggregate each entry over cases (NaN left out), then rank. Returns (scores, ranks)."""
    entries, _cases, m = _matrix(values)
    agg = _aggregate(m, aggregate) if entries else np.zeros(0)
    scores = {e: (None if math.isnan(v) else float(v)) for e, v in zip(entries, agg, strict=True)}
    return scores, rank_scores(scores, higher_is_better=higher_is_better)


def _case_ranks(m: FloatArray, higher_is_better: bool) -> FloatArray:
    """Per-case ranks of the entries (column-wise), ties sharing the best rank, NaN last."""
    return np.asarray(_min_ranks(_badness(m, higher_is_better), axis=0), dtype=np.float64)


def rank_then_aggregate(
    values_by_metric: Mapping[str, Values], *, higher_is_better: Mapping[str, bool]
) -> tuple[dict[str, float], dict[str, int]]:
    """Rank entries per case and per metric, average the ranks, rank the averages.

    Returns (mean rank per entry, final rank). Every metric must cover the same entries.
    """
    mean_rank = _mean_case_rank_matrix(values_by_metric, higher_is_better)
    entries, a = mean_rank
    scores = {e: float(v) for e, v in zip(entries, a.mean(axis=1), strict=True)}
    return scores, rank_scores(dict(scores), higher_is_better=False)


def _mean_case_rank_matrix(
    values_by_metric: Mapping[str, Values], higher_is_better: Mapping[str, bool]
) -> tuple[list[str], FloatArray]:
    acc: FloatArray | None = None
    entries: list[str] = []
    for metric, values in values_by_metric.items():
        ents, _cases, m = _matrix(values)
        if acc is None:
            entries = ents
        elif ents != entries:
            raise ValueError(f"metric {metric!r} covers different entries")
        r = _case_ranks(m, higher_is_better[metric])
        acc = r if acc is None else acc + r
    if acc is None:
        return [], np.zeros((0, 0))
    return entries, acc / len(values_by_metric)


def kendall_tau_b(reference: NDArray[Any], others: NDArray[Any]) -> FloatArray:
    """Kendall's tau-b between one ranking (E,) and each row of ``others`` (B, E)."""
    e = reference.shape[0]
    if e < 2:
        return np.ones(others.shape[0])
    i, j = np.triu_indices(e, k=1)
    s0 = np.sign(reference[i] - reference[j]).astype(np.int8)
    s = np.sign(others[:, i] - others[:, j]).astype(np.int8)
    n0 = i.size
    n1 = int(np.count_nonzero(s0 == 0))
    n2 = np.count_nonzero(s == 0, axis=1)
    concord = (s.astype(np.int32) * s0.astype(np.int32)).sum(axis=1)
    denom = np.sqrt(float(n0 - n1) * (n0 - n2).astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, concord / denom, np.nan)


@dataclass(frozen=True)
class RankStability:
    """Bootstrap rank stability: each entry's full-data rank and its rank interval, and Kendall's
    tau between the full ranking and the resamples."""

    ranks: dict[str, int]
    rank_low: dict[str, int]
    rank_high: dict[str, int]
    kendall_tau_mean: float | None
    kendall_tau_quantiles: dict[str, float | None]
    n_resamples: int
    seed: int
    level: float

    def to_json(self) -> dict[str, Any]:
        return {
            "ranks": self.ranks,
            "rank_low": self.rank_low,
            "rank_high": self.rank_high,
            "kendall_tau_mean": self.kendall_tau_mean,
            "kendall_tau_quantiles": self.kendall_tau_quantiles,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "level": self.level,
        }


def bootstrap_ranks(
    values: Values | Mapping[str, Values],
    *,
    higher_is_better: bool | Mapping[str, bool],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    aggregate: Aggregate = "mean",
    scheme: Literal["aggregate_then_rank", "rank_then_aggregate"] = "aggregate_then_rank",
) -> RankStability:
    """Resample cases with replacement ``n_resamples`` times (seeded), re-rank each time.

    For ``aggregate_then_rank`` pass ``{entry: {case: value}}`` and a bool; for
    ``rank_then_aggregate`` pass ``{metric: {entry: {case: value}}}`` and ``{metric: bool}``.
    Means over a resample are one matrix product of the resample counts with the values, so
    1000 resamples of 500 cases x 100 entries take a fraction of a second.
    """
    if scheme == "rank_then_aggregate":
        assert isinstance(higher_is_better, Mapping)
        entries, m = _mean_case_rank_matrix(values, higher_is_better)  # type: ignore[arg-type]
        direction = False
        full = m.mean(axis=1) if m.size else np.zeros(len(entries))
    else:
        assert isinstance(higher_is_better, bool)
        entries, _cases, m = _matrix(values)  # type: ignore[arg-type]
        direction = higher_is_better
        full = _aggregate(m, aggregate)
    e, c = m.shape
    full_ranks = _min_ranks(_badness(full, direction)) if e else np.zeros(0, dtype=np.int64)
    if e == 0 or c == 0 or n_resamples <= 0:
        ranks = {x: int(r) for x, r in zip(entries, full_ranks, strict=True)}
        return RankStability(ranks, ranks, ranks, None, {}, 0, seed, level)
    if aggregate == "mean" or scheme == "rank_then_aggregate":
        w = resample_counts(c, n_resamples, seed)  # (B, C)
        ok = ~np.isnan(m)
        sums = w @ np.where(ok, m, 0.0).T  # (B, E)
        counts = w @ ok.T.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = np.where(counts > 0, sums / counts, np.nan)
    else:
        rng = np.random.default_rng(seed)
        boot = np.empty((n_resamples, e))
        with _quiet():
            for b in range(n_resamples):
                boot[b] = np.nanmedian(m[:, rng.integers(0, c, size=c)], axis=1)
    boot_ranks = _min_ranks(_badness(boot, direction), axis=1)
    alpha = (1.0 - level) / 2.0
    lo = np.floor(np.quantile(boot_ranks, alpha, axis=0, method="lower")).astype(int)
    hi = np.ceil(np.quantile(boot_ranks, 1.0 - alpha, axis=0, method="higher")).astype(int)
    taus = kendall_tau_b(full_ranks.astype(np.float64), boot_ranks.astype(np.float64))
    taus = taus[~np.isnan(taus)]
    quant: dict[str, float | None] = {}
    for q in (alpha, 0.5, 1.0 - alpha):
        quant[f"{q:g}"] = float(np.quantile(taus, q)) if taus.size else None
    return RankStability(
        ranks={x: int(r) for x, r in zip(entries, full_ranks, strict=True)},
        rank_low={x: int(r) for x, r in zip(entries, lo, strict=True)},
        rank_high={x: int(r) for x, r in zip(entries, hi, strict=True)},
        kendall_tau_mean=float(taus.mean()) if taus.size else None,
        kendall_tau_quantiles=quant,
        n_resamples=n_resamples,
        seed=seed,
        level=level,
    )


def holm_adjust(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment (monotone, capped at 1)."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="mergesort")
    adj_sorted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adj = np.empty(m)
    adj[order] = np.minimum(adj_sorted, 1.0)
    return [float(x) for x in adj]


@dataclass(frozen=True)
class Tiers:
    """Significance tiers. ``tier[e]``: 1 for the leader's group, then 2, ... ``p_adjusted`` holds
    the Holm-adjusted one-sided p-value that ``better`` beats ``worse`` for every ordered pair;
    ``wins[e]`` counts the entries ``e`` significantly beats."""

    tier: dict[str, int]
    wins: dict[str, int]
    p_adjusted: dict[tuple[str, str], float] = field(repr=False)
    alpha: float = 0.05

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "wins": self.wins,
            "alpha": self.alpha,
            "p_adjusted": [
                {"better": a, "worse": b, "p": p} for (a, b), p in self.p_adjusted.items()
            ],
        }


def significance_tiers(
    values: Values,
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
    aggregate: Aggregate = "mean",
) -> Tiers:
    """Paired one-sided Wilcoxon signed-rank tests between entries, Holm-adjusted, into tiers.

    Entries are ordered by their aggregate; for every pair (a above b) we test "a is better than
    b" on the cases both have. Walking down the order, an entry joins the current tier unless the
    tier's first entry is significantly better than it, in which case it opens the next tier.
    """
    entries, _cases, m = _matrix(values)
    scores = _aggregate(m, aggregate) if entries else np.zeros(0)
    order = np.argsort(_badness(scores, higher_is_better), kind="mergesort")
    sign = 1.0 if higher_is_better else -1.0
    pairs = [
        (int(order[i]), int(order[j])) for i in range(len(order)) for j in range(i + 1, len(order))
    ]
    pvals = np.ones(len(pairs))
    if pairs:
        diffs = np.stack([sign * (m[a] - m[b]) for a, b in pairs])  # (P, C)
        complete = ~np.isnan(diffs).any(axis=1)
        with _quiet():
            if complete.any():
                pvals[complete] = _wilcoxon_greater(diffs[complete])
            for k in np.flatnonzero(~complete):
                d = diffs[k][~np.isnan(diffs[k])]
                pvals[k] = _wilcoxon_greater(d[None, :])[0] if d.size else 1.0
    adjusted = holm_adjust(list(pvals))
    p_adj = {(entries[a], entries[b]): p for (a, b), p in zip(pairs, adjusted, strict=True)}
    return tier_walk(entries, order, p_adj, alpha)


def tier_walk(
    entries: Sequence[str],
    order: NDArray[Any],
    p_adj: dict[tuple[str, str], float],
    alpha: float,
) -> Tiers:
    """Tiers from adjusted one-sided p-values of "a beats b" for a above b: walking down the
    order (best first), an entry joins the current tier unless the tier's first entry is
    significantly better than it, in which case it opens the next tier."""
    wins = dict.fromkeys(entries, 0)
    for (a, _b), p in p_adj.items():
        if p < alpha:
            wins[a] += 1
    tier: dict[str, int] = {}
    current, head = 1, None
    for idx in order:
        e = entries[int(idx)]
        if head is None:
            head = e
        elif p_adj.get((head, e), 1.0) < alpha:
            current += 1
            head = e
        tier[e] = current
    return Tiers(tier, wins, p_adj, alpha)


def _wilcoxon_greater(diffs: FloatArray) -> FloatArray:
    """One-sided p-values (median difference > 0) row by row; no information gives p = 1."""
    out = np.ones(diffs.shape[0])
    nonzero = np.count_nonzero(diffs, axis=1) > 0
    if nonzero.any():
        res = wilcoxon(diffs[nonzero], alternative="greater", axis=1, zero_method="wilcox")
        p = np.asarray(res.pvalue, dtype=np.float64)
        out[nonzero] = np.where(np.isnan(p), 1.0, p)
    return out


def public_private_split(
    case_ids: Sequence[str], *, public_fraction: float = 0.3, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split the test set once, by a seeded draw, into (public, private) case ids.

    The result depends only on the set of ids and the seed, not on their order.
    """
    if not 0.0 <= public_fraction <= 1.0:
        raise ValueError("public_fraction must be in [0, 1]")
    ids = sorted(set(case_ids))
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ids))
    n_public = round(public_fraction * len(ids))
    public = sorted(ids[i] for i in perm[:n_public])
    private = sorted(ids[i] for i in perm[n_public:])
    return public, private


@dataclass(frozen=True)
class LadderStep:
    """One submission's effect on the Ladder: the score shown after it and whether it moved."""

    submission: str
    score: float | None
    shown: float | None
    best: str | None
    improved: bool
    threshold: float | None  # standard error of the paired differences it had to beat

    def to_json(self) -> dict[str, Any]:
        return {
            "submission": self.submission,
            "score": self.score,
            "shown": self.shown,
            "best": self.best,
            "improved": self.improved,
            "threshold": self.threshold,
        }


def ladder(
    submissions: Sequence[tuple[str, Mapping[str, float | None]]],
    *,
    higher_is_better: bool,
) -> list[LadderStep]:
    """The Ladder (Blum & Hardt 2015), parameter-free form, over one entrant's submissions in
    time order: the shown (best) score moves only when a new submission's mean beats the current
    best by more than the standard error of the paired per-case differences."""
    steps: list[LadderStep] = []
    best_id: str | None = None
    best_vals: Mapping[str, float | None] = {}
    shown: float | None = None
    sign = 1.0 if higher_is_better else -1.0
    for sid, vals in submissions:
        arr = np.array([v for v in vals.values() if v is not None], dtype=float)
        mean = float(arr[~np.isnan(arr)].mean()) if arr.size and np.any(~np.isnan(arr)) else None
        if best_id is None:
            if mean is not None:
                best_id, best_vals, shown = sid, vals, mean
            steps.append(LadderStep(sid, mean, shown, best_id, best_id == sid, None))
            continue
        d = sign * _paired_differences(vals, best_vals)
        se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.inf
        improved = bool(d.size > 0 and d.mean() > se)
        if improved:
            best_id, best_vals, shown = sid, vals, mean
        steps.append(
            LadderStep(sid, mean, shown, best_id, improved, None if math.isinf(se) else se)
        )
    return steps


def _paired_differences(
    new: Mapping[str, float | None], old: Mapping[str, float | None]
) -> FloatArray:
    """``new - old`` on the cases where both have a finite value."""
    out: list[float] = []
    for c, v in new.items():
        w = old.get(c)
        if v is not None and w is not None and not math.isnan(v) and not math.isnan(w):
            out.append(float(v) - float(w))
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class Leaderboard:
    """Rows sorted by rank, with scores, rank intervals and tiers, plus Kendall's tau."""

    rows: list[dict[str, Any]]
    stability: RankStability
    tiers: Tiers | None
    metric: str
    higher_is_better: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "rows": self.rows,
            "kendall_tau_mean": self.stability.kendall_tau_mean,
            "kendall_tau_quantiles": self.stability.kendall_tau_quantiles,
            "n_resamples": self.stability.n_resamples,
            "seed": self.stability.seed,
            "tiers": self.tiers.to_json() if self.tiers else None,
        }


def leaderboard(
    values: Values,
    *,
    metric: str,
    higher_is_better: bool,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
    aggregate: Aggregate = "mean",
    tiers: bool = True,
) -> Leaderboard:
    """Aggregate-then-rank leaderboard of one metric with rank intervals and significance tiers."""
    scores, ranks = aggregate_then_rank(
        values, higher_is_better=higher_is_better, aggregate=aggregate
    )
    stab = bootstrap_ranks(
        values,
        higher_is_better=higher_is_better,
        n_resamples=n_resamples,
        seed=seed,
        level=level,
        aggregate=aggregate,
    )
    tr = (
        significance_tiers(
            values, higher_is_better=higher_is_better, alpha=alpha, aggregate=aggregate
        )
        if tiers and len(values) > 1
        else None
    )
    rows = [
        {
            "entry": e,
            "rank": ranks[e],
            "score": scores[e],
            "rank_low": stab.rank_low[e],
            "rank_high": stab.rank_high[e],
            "tier": tr.tier[e] if tr else 1,
            "significantly_better_than": tr.wins[e] if tr else 0,
            "n_cases": sum(1 for v in values[e].values() if v is not None and not math.isnan(v)),
        }
        for e in values
    ]
    rows.sort(key=lambda r: (r["rank"], r["entry"]))
    return Leaderboard(rows, stab, tr, metric, higher_is_better)
