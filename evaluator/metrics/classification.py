"""Classification metrics over cases, exactly as ``docs/metrics.md`` fixes them.

Binary: ``y`` holds 0/1 labels and ``s`` the positive-class probability. A case is flagged
positive when ``s >= threshold``. Multi-class: every metric is computed one-vs-rest per class
(class ``k`` positive, its probability column the score, the same threshold) and macro-averaged
over classes; the per-class values are reported too (``metric/k``).

Undefined values are NaN: e.g. sensitivity without positive cases, PPV when nothing is flagged,
AUCs when only one class is present.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
from numpy.typing import NDArray

from evaluator.stats.ranks import average_ranks

__all__ = [
    "BINARY_METRIC_NAMES",
    "THRESHOLD_FREE_METRICS",
    "auc_pr",
    "auc_roc",
    "binary_metrics",
    "brier",
    "confusion",
    "multiclass_metrics",
    "sens_at_spec",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

BINARY_METRIC_NAMES = (
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "accuracy",
    "balanced_accuracy",
    "auc_roc",
    "auc_pr",
    "sens_at_spec",
    "brier",
)
#: metrics that need scores, not hard labels
THRESHOLD_FREE_METRICS = frozenset({"auc_roc", "auc_pr", "sens_at_spec", "brier"})

NAN = float("nan")


def _div(a: float, b: float) -> float:
    return a / b if b else NAN


def confusion(y: IntArray, s: FloatArray, threshold: float) -> tuple[int, int, int, int]:
    """(TP, FP, TN, FN) with a case flagged positive when ``s >= threshold``."""
    flagged = s >= threshold
    pos = y == 1
    tp = int(np.count_nonzero(flagged & pos))
    fp = int(np.count_nonzero(flagged & ~pos))
    fn = int(np.count_nonzero(~flagged & pos))
    tn = int(y.size - tp - fp - fn)
    return tp, fp, tn, fn


def auc_roc(y: IntArray, s: FloatArray) -> float:
    """Mann-Whitney U / (n1 n0), ties counting one half; NaN if a class is absent."""
    n1 = int(np.count_nonzero(y == 1))
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return NAN
    ranks = average_ranks(s)  # average ranks: a tie between a positive and a negative counts 1/2
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def _curve(y: IntArray, s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Cumulative TP and FP when flagging ``s >= t`` for each distinct score t, descending."""
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(ss) != 0), ss.size - 1]
    tps = np.cumsum(yy == 1)[last_of_run].astype(np.float64)
    fps = (last_of_run + 1 - tps).astype(np.float64)
    return tps, fps, ss[last_of_run]


def auc_pr(y: IntArray, s: FloatArray) -> float:
    """Average precision: sum over thresholds of (recall step) x precision, no interpolation."""
    n1 = int(np.count_nonzero(y == 1))
    if n1 == 0 or y.size == 0:
        return NAN
    tps, fps, _ = _curve(y, s)
    precision = tps / (tps + fps)
    recall = tps / n1
    steps = np.diff(np.r_[0.0, recall])
    return float(np.sum(steps * precision))


def sens_at_spec(y: IntArray, s: FloatArray, target: float) -> tuple[float, float | None]:
    """Highest sensitivity over thresholds whose specificity is >= ``target``, no interpolation.

    Returns ``(sensitivity, threshold)``: cases with ``s >= threshold`` are flagged. Among
    thresholds reaching the best sensitivity the highest (most specific) one is reported;
    ``None`` means "flag nothing" (sensitivity 0). NaN if a class is absent.
    """
    n1 = int(np.count_nonzero(y == 1))
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return NAN, None
    tps, fps, thresholds = _curve(y, s)
    spec = 1.0 - fps / n0
    ok = np.flatnonzero(spec >= target - 1e-12)
    if ok.size == 0:
        return 0.0, None
    sens = tps[ok] / n1
    best = float(sens.max())
    if best == 0.0:
        return 0.0, None
    i = ok[np.flatnonzero(sens == best)[0]]  # thresholds descend: first is the highest
    return best, float(thresholds[i])


def brier(y: IntArray, s: FloatArray) -> float:
    """Mean squared error of the positive-class probability."""
    return float(np.mean((s - y) ** 2)) if y.size else NAN


def binary_metrics(
    y: IntArray,
    s: FloatArray,
    *,
    threshold: float = 0.5,
    sens_at_spec_target: float = 0.9,
    hard_labels: bool = False,
    metrics: Collection[str] = BINARY_METRIC_NAMES,
) -> tuple[dict[str, float], float | None]:
    """All binary metrics; returns ``(values, sens_at_spec threshold)``.

    With ``hard_labels`` (predictions are 0/1 decisions, not probabilities) the metrics that
    need a ranking or a probability (AUCs, sens_at_spec, Brier) are NaN: computing them from
    0/1 values would report a number that means something else.
    """
    y = np.asarray(y, dtype=np.int64)
    s = np.asarray(s, dtype=np.float64)
    tp, fp, tn, fn = confusion(y, s, threshold)
    sens = _div(tp, tp + fn)
    spec = _div(tn, tn + fp)
    out = {
        "sensitivity": sens,
        "specificity": spec,
        "ppv": _div(tp, tp + fp),
        "npv": _div(tn, tn + fn),
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "accuracy": _div(tp + tn, y.size),
        "balanced_accuracy": (sens + spec) / 2.0,
    }
    thr: float | None = None
    if hard_labels:
        out.update(dict.fromkeys(("auc_roc", "auc_pr", "sens_at_spec", "brier"), NAN))
    else:
        if "auc_roc" in metrics:
            out["auc_roc"] = auc_roc(y, s)
        if "auc_pr" in metrics:
            out["auc_pr"] = auc_pr(y, s)
        if "sens_at_spec" in metrics:
            out["sens_at_spec"], thr = sens_at_spec(y, s, sens_at_spec_target)
        if "brier" in metrics:
            out["brier"] = brier(y, s)
    return {k: v for k, v in out.items() if k in metrics}, thr


def multiclass_metrics(
    y: IntArray,
    probs: FloatArray,
    classes: Sequence[int],
    *,
    threshold: float = 0.5,
    sens_at_spec_target: float = 0.9,
    hard_labels: bool = False,
    metrics: Collection[str] = BINARY_METRIC_NAMES,
) -> tuple[dict[str, float], dict[int, float | None]]:
    """Macro averages of per-class one-vs-rest values, plus the per-class values as
    ``metric/k``. ``probs[:, j]`` is the probability of ``classes[j]``. Returns
    ``(values, {class: sens_at_spec threshold})``."""
    wanted = set(metrics)
    if "balanced_accuracy" in wanted:
        wanted.add("sensitivity")
    per_class: dict[int, dict[str, float]] = {}
    thresholds: dict[int, float | None] = {}
    for j, k in enumerate(classes):
        per_class[k], thresholds[k] = binary_metrics(
            (y == k).astype(np.int64),
            probs[:, j],
            threshold=threshold,
            sens_at_spec_target=sens_at_spec_target,
            hard_labels=hard_labels,
            metrics=wanted,
        )
    out: dict[str, float] = {}
    for name in BINARY_METRIC_NAMES:
        if name not in metrics:
            continue
        vals = np.array([per_class[k][name] for k in classes], dtype=np.float64)
        if name == "balanced_accuracy":
            # "mean of per-class recall": the macro sensitivity, not a macro of binary values
            vals = np.array([per_class[k].get("sensitivity", NAN) for k in classes])
            out[name] = _nanmean(vals)
            continue
        out[name] = _nanmean(vals)
        for k in classes:
            out[f"{name}/{k}"] = per_class[k][name]
    return out, thresholds


def _nanmean(vals: FloatArray) -> float:
    ok = ~np.isnan(vals)
    return float(np.mean(vals[ok])) if np.any(ok) else NAN
