"""Rank intervals of set-level metrics: Scanbench's paired bootstrap against scikit-learn in a loop.

What a leaderboard worker pays, per recomputation, for the rank ranges and tiers of a board
ranked by AUC-ROC or sensitivity: every entry is scored again on every resample of the cases.
The peer is the obvious implementation with scikit-learn (``roc_auc_score`` / ``recall_score``
on each resample's cases, per entry); it runs fewer resamples and its time is scaled to the same
number (stated in the output). Both see the same resamples, and the largest difference between
their metric values is printed.

    .venv/bin/python benchmarks/rank_bench.py [--resamples 1000] [--peer-resamples 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import recall_score, roc_auc_score

from evaluator.ranking_sets import SetEntry, set_metric_bootstrap, set_metric_resamples
from evaluator.stats.intervals import resample_counts


def _board(n_entries: int, n_cases: int, seed: int = 0) -> tuple[np.ndarray, dict[str, SetEntry]]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n_cases) < 0.3).astype(np.int64)
    entries = {}
    for i in range(n_entries):
        logits = rng.normal(size=n_cases) + (0.5 + 2.0 * i / n_entries) * (2 * y - 1)
        entries[f"e{i}"] = SetEntry(np.round(1 / (1 + np.exp(-logits)), 4))
    return y, entries


def _peer(metric: str, w: np.ndarray, y: np.ndarray, entries: dict[str, SetEntry]) -> np.ndarray:
    out = np.empty((w.shape[0], len(entries)))
    for b in range(w.shape[0]):
        idx = np.repeat(np.arange(y.size), w[b].astype(np.int64))
        for j, entry in enumerate(entries.values()):
            if metric == "auc_roc":
                out[b, j] = roc_auc_score(y[idx], entry.probs[idx])
            else:
                out[b, j] = recall_score(y[idx], entry.probs[idx] >= 0.5)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--peer-resamples", type=int, default=50)
    args = parser.parse_args()
    print(
        f"{'metric':<12} {'entries':>7} {'cases':>6} | {'Scanbench (s)':>13} "
        f"{'sklearn loop (s, scaled)':>25} {'speed-up':>8} {'max |diff|':>10}"
    )
    for metric in ("auc_roc", "sensitivity"):
        for n_entries, n_cases in ((10, 500), (20, 2000), (50, 5000)):
            y, entries = _board(n_entries, n_cases)
            t0 = time.perf_counter()
            set_metric_bootstrap(
                y, entries, metric=metric, higher_is_better=True, n_resamples=args.resamples
            )
            ours = time.perf_counter() - t0
            w = resample_counts(n_cases, args.peer_resamples, seed=1)
            t0 = time.perf_counter()
            peer_values = _peer(metric, w, y, entries)
            peer = (time.perf_counter() - t0) * args.resamples / args.peer_resamples
            our_values = np.stack(
                [set_metric_resamples(metric, w, y, e) for e in entries.values()], axis=1
            )
            diff = float(np.nanmax(np.abs(our_values - peer_values)))
            print(
                f"{metric:<12} {n_entries:>7} {n_cases:>6} | {ours:>13.3f} {peer:>25.2f} "
                f"{peer / ours:>7.0f}x {diff:>10.1e}"
            )
    print(
        f"({args.resamples} resamples; the scikit-learn loop ran {args.peer_resamples} and is "
        f"scaled to {args.resamples}; Scanbench's time includes the tiers' pairwise tests)"
    )


if __name__ == "__main__":
    main()
