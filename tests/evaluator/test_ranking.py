"""Ranking: ties, both schemes, bootstrap intervals and Kendall's tau, tiers, split, Ladder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau

from evaluator.ranking import (
    aggregate_then_rank,
    bootstrap_ranks,
    holm_adjust,
    kendall_tau_b,
    ladder,
    leaderboard,
    public_private_split,
    rank_scores,
    rank_then_aggregate,
    significance_tiers,
)


def test_ties_share_a_rank():
    assert rank_scores({"a": 0.9, "b": 0.9, "c": 0.5}, higher_is_better=True) == {
        "a": 1,
        "b": 1,
        "c": 3,
    }
    assert rank_scores({"a": 3.0, "b": 1.0, "c": 1.0, "d": None}, higher_is_better=False) == {
        "a": 3,
        "b": 1,
        "c": 1,
        "d": 4,
    }


def test_aggregate_then_rank_uses_full_precision():
    values = {"a": {"x": 0.1 + 0.2}, "b": {"x": 0.3}}
    _scores, ranks = aggregate_then_rank(values, higher_is_better=True)
    assert ranks == {"a": 1, "b": 2}  # 0.30000000000000004 > 0.3


def test_rank_then_aggregate_hand_computed():
    dice = {"a": {"1": 0.9, "2": 0.5}, "b": {"1": 0.8, "2": 0.6}, "c": {"1": 0.1, "2": 0.1}}
    hd = {"a": {"1": 1.0, "2": 9.0}, "b": {"1": 2.0, "2": 3.0}, "c": {"1": 5.0, "2": 5.0}}
    mean_rank, ranks = rank_then_aggregate(
        {"dice": dice, "hd": hd}, higher_is_better={"dice": True, "hd": False}
    )
    # a: dice ranks 1,2; hd ranks 1,3 -> 7/4; b: 2,1,2,1 -> 6/4; c: 3,3,3,2 -> 11/4
    assert mean_rank == {"a": 1.75, "b": 1.5, "c": 2.75}
    assert ranks == {"b": 1, "a": 2, "c": 3}


def make_values(rng, n_entries, n_cases, spread=0.05):
    return {
        f"e{i}": {f"c{j}": float(v) for j, v in enumerate(rng.normal(i * spread, 1, n_cases))}
        for i in range(n_entries)
    }


def test_bootstrap_ranks_are_seeded_and_bracket_the_rank():
    values = make_values(np.random.default_rng(0), 8, 60)
    a = bootstrap_ranks(values, higher_is_better=True, n_resamples=300, seed=1)
    b = bootstrap_ranks(values, higher_is_better=True, n_resamples=300, seed=1)
    assert a == b
    for e in values:
        assert a.rank_low[e] <= a.ranks[e] <= a.rank_high[e]
    assert -1 <= a.kendall_tau_mean <= 1


def test_clear_separation_gives_tight_intervals_and_tau_one():
    values = {f"e{i}": {f"c{j}": i * 10.0 + j * 0.01 for j in range(30)} for i in range(5)}
    s = bootstrap_ranks(values, higher_is_better=True, n_resamples=200)
    assert s.rank_low == s.rank_high == s.ranks
    assert s.kendall_tau_mean == pytest.approx(1.0)


def test_kendall_tau_b_matches_scipy_with_ties():
    rng = np.random.default_rng(2)
    ref = rng.integers(1, 6, 12).astype(float)
    others = rng.integers(1, 6, (5, 12)).astype(float)
    ours = kendall_tau_b(ref, others)
    for k in range(5):
        assert ours[k] == pytest.approx(kendalltau(ref, others[k]).statistic)


def test_holm_adjustment():
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # monotone step-down


def test_tiers_group_entries_not_significantly_different():
    rng = np.random.default_rng(5)
    base = rng.normal(size=80)
    values = {
        "best": {f"c{j}": base[j] + 1.0 for j in range(80)},
        "twin": {f"c{j}": base[j] + 1.0 + rng.normal(0, 0.01) for j in range(80)},
        "worse": {f"c{j}": base[j] for j in range(80)},
    }
    t = significance_tiers(values, higher_is_better=True)
    assert t.tier["best"] == t.tier["twin"] == 1
    assert t.tier["worse"] == 2
    assert t.wins["worse"] == 0


def test_lower_is_better_direction_in_tiers():
    values = {
        "low": {f"c{j}": 1.0 + j * 1e-3 for j in range(30)},
        "high": {f"c{j}": 5.0 + j * 1e-3 for j in range(30)},
    }
    t = significance_tiers(values, higher_is_better=False)
    assert t.tier == {"low": 1, "high": 2}


def test_public_private_split_is_seeded_and_order_free():
    ids = [f"c{i}" for i in range(100)]
    pub, priv = public_private_split(ids, public_fraction=0.3, seed=7)
    assert len(pub) == 30 and len(priv) == 70 and not set(pub) & set(priv)
    assert public_private_split(list(reversed(ids)), public_fraction=0.3, seed=7) == (pub, priv)
    assert public_private_split(ids, public_fraction=0.3, seed=8) != (pub, priv)


def test_ladder_moves_only_on_real_improvement():
    rng = np.random.default_rng(0)
    base = rng.normal(0.7, 0.1, 100)
    subs = [
        ("s1", {f"c{j}": float(base[j]) for j in range(100)}),
        ("s2", {f"c{j}": float(base[j] + rng.normal(0, 0.05)) for j in range(100)}),  # noise
        ("s3", {f"c{j}": float(base[j] + 0.05) for j in range(100)}),  # real gain
    ]
    steps = ladder(subs, higher_is_better=True)
    assert [s.improved for s in steps] == [True, False, True]
    assert steps[1].shown == steps[0].score
    assert steps[2].shown == pytest.approx(steps[2].score)


def test_leaderboard_rows():
    values = make_values(np.random.default_rng(3), 6, 40, spread=0.5)
    board = leaderboard(values, metric="dice", higher_is_better=True, n_resamples=200)
    rows = board.to_json()["rows"]
    assert [r["rank"] for r in rows] == sorted(r["rank"] for r in rows)
    best = max(values, key=lambda e: np.mean(list(values[e].values())))
    assert rows[0]["entry"] == best
    assert all(r["n_cases"] == 40 for r in rows)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_permuting_case_order_changes_nothing(seed):
    rng = np.random.default_rng(seed)
    values = make_values(rng, 4, 15)
    perm = rng.permutation(15)
    shuffled = {e: {f"c{j}": v[f"c{j}"] for j in perm} for e, v in values.items()}
    assert aggregate_then_rank(values, higher_is_better=True) == aggregate_then_rank(
        shuffled, higher_is_better=True
    )
    a = bootstrap_ranks(values, higher_is_better=True, n_resamples=50, seed=1)
    b = bootstrap_ranks(shuffled, higher_is_better=True, n_resamples=50, seed=1)
    assert a == b
