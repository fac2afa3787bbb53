"""Metric metadata the platform shows beside every score.

One :class:`MetricInfo` per metric: its name, direction, what a case gets when the metric has no
usable value (the worst-value rule of ``METRICS.md``) and a one-sentence plain-language description.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

__all__ = [
    "CLASSIFICATION_METRICS",
    "SEGMENTATION_METRICS",
    "MetricInfo",
    "metric_info",
]

Task = Literal["classification", "segmentation"]


@dataclass(frozen=True)
class MetricInfo:
    """What the platform needs to know to show, fill and rank one metric."""

    name: str
    task: Task
    higher_is_better: bool
    worst_value_rule: str
    description: str
    #: numeric worst value; ``None`` where it depends on the case (distances: the volume diagonal)
    worst_value: float | None
    #: True where NaN means "undefined by definition" and the case is left out of the mean
    nan_is_undefined: bool = False
    unit: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


_DIAGONAL = "the diagonal of the reference volume in mm"

SEGMENTATION_METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "dice",
            "segmentation",
            True,
            "0",
            "Overlap between predicted and true region: "
            "twice the shared voxels over the sum of both region sizes (1 is perfect).",
            0.0,
        ),
        MetricInfo(
            "iou",
            "segmentation",
            True,
            "0",
            "Shared voxels over voxels in either region (Jaccard index; 1 is perfect).",
            0.0,
        ),
        MetricInfo(
            "sensitivity",
            "segmentation",
            True,
            "0; undefined (left out) when the reference is empty",
            "Fraction of the true region's voxels that the prediction covers.",
            0.0,
            nan_is_undefined=True,
        ),
        MetricInfo(
            "specificity",
            "segmentation",
            True,
            "0",
            "Fraction of true background voxels that the prediction leaves as background.",
            0.0,
        ),
        MetricInfo(
            "hd95",
            "segmentation",
            False,
            _DIAGONAL,
            "Boundary error in mm that 95 % of "
            "boundary points stay within, taking the worse of the two directions.",
            None,
            unit="mm",
        ),
        MetricInfo(
            "hd",
            "segmentation",
            False,
            _DIAGONAL,
            "Largest distance in mm from a boundary "
            "point of one region to the nearest boundary point of the other.",
            None,
            unit="mm",
        ),
        MetricInfo(
            "assd",
            "segmentation",
            False,
            _DIAGONAL,
            "Average distance in mm between the "
            "boundaries of prediction and reference, both directions pooled.",
            None,
            unit="mm",
        ),
        MetricInfo(
            "nsd",
            "segmentation",
            True,
            "0",
            "Fraction of boundary points of both regions "
            "lying within the challenge's tolerance (in mm) of the other boundary.",
            0.0,
        ),
    )
}

CLASSIFICATION_METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "sensitivity",
            "classification",
            True,
            "0",
            "Fraction of positive cases the model flags at the decision threshold (recall).",
            0.0,
        ),
        MetricInfo(
            "specificity",
            "classification",
            True,
            "0",
            "Fraction of negative cases the model leaves unflagged at the decision threshold.",
            0.0,
        ),
        MetricInfo(
            "ppv",
            "classification",
            True,
            "0",
            "Fraction of flagged cases that are truly positive (precision).",
            0.0,
        ),
        MetricInfo(
            "npv",
            "classification",
            True,
            "0",
            "Fraction of unflagged cases that are truly negative.",
            0.0,
        ),
        MetricInfo(
            "f1",
            "classification",
            True,
            "0",
            "Harmonic mean of precision and recall at the decision threshold.",
            0.0,
        ),
        MetricInfo(
            "accuracy",
            "classification",
            True,
            "0",
            "Fraction of cases classified "
            "correctly at the decision threshold; misleading when classes are imbalanced.",
            0.0,
        ),
        MetricInfo(
            "balanced_accuracy",
            "classification",
            True,
            "0",
            "Average of the per-class "
            "recalls, so every class counts equally whatever its prevalence.",
            0.0,
        ),
        MetricInfo(
            "auc_roc",
            "classification",
            True,
            "0",
            "Probability that a random positive case "
            "gets a higher score than a random negative one (ties count half).",
            0.0,
        ),
        MetricInfo(
            "auc_pr",
            "classification",
            True,
            "0",
            "Average precision over all recall levels "
            "(area under the precision-recall curve, step-wise).",
            0.0,
        ),
        MetricInfo(
            "sens_at_spec",
            "classification",
            True,
            "0",
            "Highest sensitivity reachable "
            "while keeping specificity at or above the challenge's target.",
            0.0,
        ),
        MetricInfo(
            "brier",
            "classification",
            False,
            "1",
            "Mean squared difference between the "
            "predicted probability and the true outcome (0 is perfect).",
            1.0,
        ),
    )
}


def metric_info(task: Task, name: str) -> MetricInfo:
    """Look a metric up by task and name; a per-label/per-class suffix (``dice/2``) is ignored."""
    base = name.split("/", 1)[0]
    table = SEGMENTATION_METRICS if task == "segmentation" else CLASSIFICATION_METRICS
    try:
        return table[base]
    except KeyError:
        raise KeyError(f"unknown {task} metric {name!r}; known: {', '.join(table)}") from None
