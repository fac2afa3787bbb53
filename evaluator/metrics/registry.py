"""Metric metadata the platform shows beside every score.

One :class:`MetricInfo` per metric: its name, direction, what a case gets when the metric has no
usable value (its worst-value rule), a one-sentence plain-language description, its unit, its
formula and its edge cases. ``docs/metrics.md`` is generated from here
(``python -m evaluator metrics-doc``), so the page and the code cannot disagree.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

__all__ = [
    "CLASSIFICATION_METRICS",
    "SEGMENTATION_METRICS",
    "MetricInfo",
    "metric_info",
    "metrics_markdown",
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
    #: "mm" for distances, "" for unitless values (fractions, probabilities)
    unit: str = ""
    #: the formula, in the notation of docs/metrics.md (TP, FP, ... per case and label)
    definition: str = ""
    #: what the metric is on empty masks, a single class, hard labels ("" where nothing special)
    edge_cases: str = ""

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
            definition="2·TP / (2·TP + FP + FN)",
            edge_cases="both empty: 1; prediction empty: 0; reference empty: 0",
        ),
        MetricInfo(
            "iou",
            "segmentation",
            True,
            "0",
            "Shared voxels over voxels in either region (Jaccard index; 1 is perfect).",
            0.0,
            definition="TP / (TP + FP + FN)",
            edge_cases="both empty: 1; prediction empty: 0; reference empty: 0",
        ),
        MetricInfo(
            "sensitivity",
            "segmentation",
            True,
            "0; undefined (left out) when the reference is empty",
            "Fraction of the true region's voxels that the prediction covers.",
            0.0,
            nan_is_undefined=True,
            definition="TP / (TP + FN), voxel-wise",
            edge_cases=(
                "both empty: undefined (left out of the mean); prediction empty: 0; reference "
                "empty: undefined (left out)"
            ),
        ),
        MetricInfo(
            "specificity",
            "segmentation",
            True,
            "0",
            "Fraction of true background voxels that the prediction leaves as background.",
            0.0,
            definition="TN / (TN + FP), voxel-wise",
            edge_cases=(
                "both empty: 1; prediction empty: 1; reference empty: below 1 where anything is "
                "predicted; undefined (left out) only when the reference fills the whole volume"
            ),
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
            definition=(
                "max of the two directed 95th percentiles (numpy's linear interpolation) of the "
                "distances from the surface voxels of one mask to those of the other"
            ),
            edge_cases=(
                "both empty: 0; prediction or reference empty: no value, the worst value is used"
            ),
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
            definition="as hd95 with the maximum instead of the 95th percentile",
            edge_cases=(
                "both empty: 0; prediction or reference empty: no value, the worst value is used"
            ),
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
            definition="mean of all surface-to-surface distances of both directions, pooled",
            edge_cases=(
                "both empty: 0; prediction or reference empty: no value, the worst value is used"
            ),
        ),
        MetricInfo(
            "nsd",
            "segmentation",
            True,
            "0",
            "Fraction of boundary points of both regions "
            "lying within the challenge's tolerance (in mm) of the other boundary.",
            0.0,
            definition=(
                "(surface voxels of P within τ of R's surface + surface voxels of R within τ of "
                "P's surface) / (all surface voxels of P and R); τ is the phase's NSD tolerance, "
                "counted inclusively"
            ),
            edge_cases="both empty: 1; prediction empty: 0; reference empty: 0",
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
            definition="TP / (TP + FN) at the decision threshold",
            edge_cases="undefined (null) without positive cases",
        ),
        MetricInfo(
            "specificity",
            "classification",
            True,
            "0",
            "Fraction of negative cases the model leaves unflagged at the decision threshold.",
            0.0,
            definition="TN / (TN + FP) at the decision threshold",
            edge_cases="undefined (null) without negative cases",
        ),
        MetricInfo(
            "ppv",
            "classification",
            True,
            "0",
            "Fraction of flagged cases that are truly positive (precision).",
            0.0,
            definition="TP / (TP + FP) at the decision threshold",
            edge_cases="undefined (null) when nothing is flagged",
        ),
        MetricInfo(
            "npv",
            "classification",
            True,
            "0",
            "Fraction of unflagged cases that are truly negative.",
            0.0,
            definition="TN / (TN + FN) at the decision threshold",
            edge_cases="undefined (null) when everything is flagged",
        ),
        MetricInfo(
            "f1",
            "classification",
            True,
            "0",
            "Harmonic mean of precision and recall at the decision threshold.",
            0.0,
            definition="2·TP / (2·TP + FP + FN) at the decision threshold",
            edge_cases="undefined (null) when nothing is flagged and there are no positives",
        ),
        MetricInfo(
            "accuracy",
            "classification",
            True,
            "0",
            "Fraction of cases classified "
            "correctly at the decision threshold; misleading when classes are imbalanced.",
            0.0,
            definition=(
                "(TP + TN) / all cases at the decision threshold; multi-class: macro of "
                "one-vs-rest accuracies"
            ),
            edge_cases='at 1 % prevalence "always negative" scores 0.99',
        ),
        MetricInfo(
            "balanced_accuracy",
            "classification",
            True,
            "0",
            "Average of the per-class "
            "recalls, so every class counts equally whatever its prevalence.",
            0.0,
            definition="mean of per-class recall (binary: (sensitivity + specificity) / 2)",
        ),
        MetricInfo(
            "auc_roc",
            "classification",
            True,
            "0",
            "Probability that a random positive case "
            "gets a higher score than a random negative one (ties count half).",
            0.0,
            definition="Mann-Whitney statistic, ties count ½",
            edge_cases="undefined (null) with one class only and for hard-label predictions",
        ),
        MetricInfo(
            "auc_pr",
            "classification",
            True,
            "0",
            "Average precision over all recall levels "
            "(area under the precision-recall curve, step-wise).",
            0.0,
            definition="average precision, step-wise, no interpolation",
            edge_cases="undefined (null) with one class only and for hard-label predictions",
        ),
        MetricInfo(
            "sens_at_spec",
            "classification",
            True,
            "0",
            "Highest sensitivity reachable "
            "while keeping specificity at or above the challenge's target.",
            0.0,
            definition=(
                "highest true-positive rate over thresholds whose specificity reaches the target "
                "(default 0.9), no interpolation; the threshold is reported too (the most specific"
                " one reaching it)"
            ),
            edge_cases=(
                "undefined (null) with one class only and for hard-label predictions; a null "
                'threshold means "flag nothing"'
            ),
        ),
        MetricInfo(
            "brier",
            "classification",
            False,
            "1",
            "Mean squared difference between the "
            "predicted probability and the true outcome (0 is perfect).",
            1.0,
            definition="mean squared error of the positive-class probability",
            edge_cases="undefined (null) for hard-label predictions",
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


# --- docs/metrics.md ----------------------------------------------------------------------------

#: Conventions that hold for every metric of a task, beyond each metric's own edge cases.
SEGMENTATION_CONVENTIONS: tuple[str, ...] = (
    "P is the prediction and R the reference, per case and per label; label 0 is background "
    "and is not scored. TP, FP, FN and TN count voxels.",
    "Surface voxels of a mask M are `M & ~binary_erosion(M)` with the face-connected structuring "
    "element (6 neighbours in 3-D, 4 in 2-D); a voxel at the volume border counts as surface.",
    "Distances are in mm, with the voxel spacing of the reference (NIfTI/NRRD header; PNG and "
    "`.npy`: 1 mm), in numpy axis order. A prediction on another grid is rejected, not resampled.",
    "Multi-label masks: per case `metric/<label>` for each label and `metric` = the mean over "
    "labels (after worst-value filling; undefined values left out). With the single label 1 "
    "only `metric`.",
    "Label set: the challenge's labels if declared, else those present in the scored reference "
    "masks; a predicted label outside it is an error.",
    "hd95 and hd take the worse of the two directed values (Metrics Reloaded, MONAI "
    "`percentile=95`); pooling both directions, as some libraries do, can hide a whole "
    "false-positive region.",
)

CLASSIFICATION_CONVENTIONS: tuple[str, ...] = (
    "The decision threshold (default 0.5, set per phase) applies to the positive-class score "
    "and is inclusive: a case is flagged when `score >= threshold`.",
    "Multi-class: every metric is the one-vs-rest binary metric of class k (its probability "
    "column as score, the same threshold), macro-averaged; per-class values are `metric/k`. "
    "`accuracy` is then the macro of one-vs-rest accuracies, higher than top-1 accuracy.",
    "Undefined values are `null`, never 0, and `meta.undefined` says why.",
    "Hard-label predictions (`case_id,label`): the threshold metrics come from the one-hot "
    "labels; `auc_roc`, `auc_pr`, `sens_at_spec` and `brier` are `null`.",
    "The prevalence of each class is reported beside every result, because accuracy alone "
    'misleads: at 1 % prevalence "always negative" scores 99 % accuracy and 0 sensitivity.',
    "Per-case values are `correct` (0/1, top-1), `brier` and the probabilities scored "
    "(`p/1` for a binary task, `p/k` per class otherwise; the worst prediction for a missing "
    "case); with the submitted scores they would reveal the hidden labels, so the platform "
    "keeps them hidden.",
)

GENERAL_CONVENTIONS: tuple[str, ...] = (
    "Per-case values are always kept; means are over cases (patients, never voxels).",
    "A value a case must have but lacks (a distance with an empty mask, a case missing from "
    "the submission) gets the metric's worst value before any mean, and such cases are counted "
    "(`meta.worst_filled`). Values undefined by definition are left out of the mean and the "
    "number of cases in the mean is shown (`meta.n_in_mean`).",
    "Missing cases: the command line rejects them unless `--allow-missing`; the platform scores "
    "them with the worst value and never silently: the evaluation's message says how many of "
    "how many test cases were missing, counted over the public and private parts together, "
    "and names only cases of the public part (the ids of the private part are never shown).",
    "Confidence intervals: bootstrap over cases (seeded, percentile, at least 1000 resamples), "
    "DeLong for AUC, Wilson for sensitivity and specificity.",
    "Ranking: aggregate-then-rank on the primary metric by default, rank-then-aggregate over "
    "several metrics as an option; ties share a rank (1, 1, 3); full-precision values.",
    "Rank intervals are the 2.5 and 97.5 % quantiles of the ranks over bootstrap resamples "
    "of the cases. For a mean over cases (Dice, HD95, Brier) tiers come from paired one-sided "
    "Wilcoxon signed-rank tests, Holm-adjusted. For a metric of the whole set (AUC, "
    "sensitivity, accuracy, ...) the bootstrap is paired: every entry is scored again on the "
    "same resamples from its probabilities and the labels, and the one-sided p-value that a "
    "beats b is the share of resamples where a does not beat b (plus one, over the number of "
    "resamples plus one), Holm-adjusted; tiers then form as for Wilcoxon.",
    "The test set is split once, by a seeded draw, into a public part scored live and a "
    "private part that decides the final standings and is revealed when the phase closes.",
)


def _direction(info: MetricInfo) -> str:
    return "higher is better" if info.higher_is_better else "lower is better"


def _table(table: dict[str, MetricInfo]) -> list[str]:
    lines = [
        "| metric | what it measures | definition | unit | direction | edge cases | worst value |",
        "|---|---|---|---|---|---|---|",
    ]
    for m in table.values():
        cells = (
            f"`{m.name}`",
            m.description,
            m.definition,
            m.unit or "none",
            _direction(m),
            m.edge_cases or "none",
            m.worst_value_rule,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def metrics_markdown() -> str:
    """The text of ``docs/metrics.md``: every metric with its description, definition, unit,
    direction, edge cases and worst value, then the conventions, all from this module."""
    lines = [
        "# Metrics",
        "",
        "<!-- Generated from evaluator/metrics/registry.py by "
        "`python -m evaluator metrics-doc --output docs/metrics.md`; do not edit by hand. -->",
        "",
        "One convention per metric, stated on every challenge page and tested. The worst value "
        "is what a case gets when the metric needs a value it does not have (see the "
        "conventions at the end).",
    ]
    for title, table, conventions in (
        ("Segmentation (per case, per label)", SEGMENTATION_METRICS, SEGMENTATION_CONVENTIONS),
        (
            "Classification (per phase, over cases)",
            CLASSIFICATION_METRICS,
            CLASSIFICATION_CONVENTIONS,
        ),
    ):
        lines += ["", f"## {title}", "", *_table(table), ""]
        lines += [f"- {c}" for c in conventions]
    lines += ["", "## Aggregation, missing cases, uncertainty and ranking", ""]
    lines += [f"- {c}" for c in GENERAL_CONVENTIONS]
    return "\n".join(lines) + "\n"
