"""Classification metrics: documented fixtures (docs/metrics.md), edge cases, scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from evaluator.metrics.classification import (
    auc_pr,
    auc_roc,
    binary_metrics,
    multiclass_metrics,
    sens_at_spec,
)


def test_auc_fixtures_from_metrics_md():
    assert auc_roc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auc_roc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == 0.875


def test_confusion_metrics_hand_computed():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.5, 0.0])
    # threshold 0.5, ">=": flagged 0.9, 0.6, 0.7, 0.5 -> TP 2, FP 2, FN 1, TN 3
    m, _ = binary_metrics(y, s, threshold=0.5)
    assert m["sensitivity"] == pytest.approx(2 / 3)
    assert m["specificity"] == pytest.approx(3 / 5)
    assert m["ppv"] == pytest.approx(2 / 4)
    assert m["npv"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(4 / (4 + 2 + 1))
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 5) / 2)
    assert m["brier"] == pytest.approx(np.mean((s - y) ** 2))


def test_threshold_is_inclusive():
    m, _ = binary_metrics(np.array([1, 0]), np.array([0.5, 0.49]), threshold=0.5)
    assert m["sensitivity"] == 1 and m["specificity"] == 1


def test_undefined_values_are_nan_not_zero():
    only_neg = np.array([0, 0, 0])
    m, thr = binary_metrics(only_neg, np.array([0.1, 0.2, 0.3]))
    assert math.isnan(m["sensitivity"]) and math.isnan(m["auc_roc"]) and math.isnan(m["auc_pr"])
    assert math.isnan(m["ppv"])  # nothing flagged
    assert math.isnan(m["sens_at_spec"]) and thr is None
    assert m["specificity"] == 1


def test_hard_labels_leave_threshold_free_metrics_undefined():
    m, _ = binary_metrics(np.array([0, 1, 1]), np.array([0.0, 1.0, 0.0]), hard_labels=True)
    assert m["sensitivity"] == 0.5
    for k in ("auc_roc", "auc_pr", "sens_at_spec", "brier"):
        assert math.isnan(m[k])


def test_sens_at_spec_hand_computed():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.3, 0.85, 0.92, 0.99])
    # spec >= 0.9 allows one false positive: threshold 0.95 flags 0.95 and 0.99 -> sens 1/4;
    # threshold 0.92 would flag 0.95 plus 0.92, 0.99 (one FP): sens 2/4 -> best, threshold 0.92
    sens, thr = sens_at_spec(y, s, 0.9)
    assert sens == 0.5 and thr == 0.92
    sens, thr = sens_at_spec(y, s, 0.0)
    assert sens == 1.0 and thr == 0.3  # the highest threshold reaching full sensitivity


def test_sens_at_spec_matches_roc_curve_without_interpolation():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = rng.integers(0, 2, 60)
        s = np.round(rng.random(60), 2)
        if y.min() == y.max():
            continue
        fpr, tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
        for target in (0.5, 0.8, 0.9, 0.95):
            expected = tpr[(1 - fpr) >= target - 1e-12].max()
            assert sens_at_spec(y, s, target)[0] == pytest.approx(expected)


@pytest.mark.parametrize("seed", range(8))
def test_binary_metrics_agree_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 300))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = rng.random(n)
    if seed % 2:
        s = np.round(s, 1)  # many ties
    m, _ = binary_metrics(y, s, threshold=0.5)
    yp = (s >= 0.5).astype(int)
    assert m["auc_roc"] == pytest.approx(skm.roc_auc_score(y, s))
    assert m["auc_pr"] == pytest.approx(skm.average_precision_score(y, s))
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, s))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, yp))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, yp))
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, yp, zero_division=np.nan))
    assert m["specificity"] == pytest.approx(skm.recall_score(1 - y, 1 - yp, zero_division=np.nan))
    if yp.any():
        assert m["ppv"] == pytest.approx(skm.precision_score(y, yp))
        assert m["f1"] == pytest.approx(skm.f1_score(y, yp))
    if (1 - yp).any():
        assert m["npv"] == pytest.approx(skm.precision_score(1 - y, 1 - yp))


@pytest.mark.parametrize("seed", range(4))
def test_multiclass_is_macro_of_one_vs_rest_and_agrees_with_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    n, k = 120, 4
    y = rng.integers(0, k, n)
    y[:k] = np.arange(k)
    logits = rng.normal(size=(n, k))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    m, _ = multiclass_metrics(y, p, list(range(k)))
    assert m["auc_roc"] == pytest.approx(
        skm.roc_auc_score(y, p, multi_class="ovr", average="macro")
    )
    per_class_ap = [skm.average_precision_score(y == c, p[:, c]) for c in range(k)]
    assert m["auc_pr"] == pytest.approx(np.mean(per_class_ap))
    for c in range(k):
        assert m[f"auc_pr/{c}"] == pytest.approx(per_class_ap[c])
        flagged = p[:, c] >= 0.5
        assert m[f"sensitivity/{c}"] == pytest.approx(
            skm.recall_score(y == c, flagged, zero_division=np.nan), nan_ok=True
        )
    recalls = [m[f"sensitivity/{c}"] for c in range(k)]
    assert m["balanced_accuracy"] == pytest.approx(np.nanmean(recalls))
    assert m["brier"] == pytest.approx(np.mean((p - np.eye(k)[y]) ** 2))


def test_auc_pr_hand_computed():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.1])
    # thresholds 0.9: P=1 R=.5; 0.8: P=.5 R=.5; 0.7: P=2/3 R=1 -> AP = .5*1 + .5*2/3
    assert auc_pr(y, s) == pytest.approx(0.5 + 1 / 3)
