"""The task card of a challenge page, made from the challenge's data and its phases.

What a participant needs before the first submission, per task type: for classification the
classes, how many cases of each class each split holds, the decision threshold and what a trivial
"always negative" predictor scores; for segmentation the cases per split and the label names; for
both, every metric of every phase with its one-line definition, unit and direction from the
evaluator's registry (the same text as docs/metrics.md).

Nothing here reveals a hidden label: the test split is described by aggregate class counts only,
which the class balance panel has always shown, and the trivial score is a function of those
counts alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count

from challenges.models import Case, Challenge, Phase, TaskType
from challenges.selectors import challenge_class_balance
from evaluator.metrics.classification import BINARY_METRIC_NAMES, binary_metrics
from evaluator.metrics.registry import metric_info

SPLITS = ("train", "test")


@dataclass(frozen=True)
class MetricRow:
    name: str
    description: str
    definition: str
    unit: str
    direction: str
    primary: bool


@dataclass(frozen=True)
class TrivialScore:
    """What a constant predictor scores on the phase's primary metric over the whole test split."""

    predictor: str
    metric: str
    value: float


@dataclass(frozen=True)
class PhaseCard:
    phase: Phase
    metrics: list[MetricRow]
    trivial: TrivialScore | None = None


@dataclass(frozen=True)
class TaskCard:
    task_type: str
    #: classification: class balance rows per split (split, total, classes: name, n, percent)
    balance: list[dict[str, object]] = field(default_factory=list)
    #: segmentation: (split, number of cases)
    cases_per_split: list[tuple[str, int]] = field(default_factory=list)
    #: segmentation: (label value, name), label 0 being background
    labels: list[tuple[int, str]] = field(default_factory=list)
    phases: list[PhaseCard] = field(default_factory=list)

    @property
    def is_classification(self) -> bool:
        return self.task_type == TaskType.CLASSIFICATION

    @property
    def is_segmentation(self) -> bool:
        return self.task_type == TaskType.SEGMENTATION


def phase_metric_rows(*, phase: Phase) -> list[MetricRow]:
    """The phase's metrics (the primary one first) as the registry describes them; a name the
    registry does not know is left out rather than described wrongly."""
    task = phase.challenge.task_type
    names = [phase.primary_metric, *(m for m in phase.metrics if m != phase.primary_metric)]
    rows = []
    for name in names:
        try:
            info = metric_info(task, name)  # type: ignore[arg-type]
        except KeyError:
            continue
        rows.append(
            MetricRow(
                name=name,
                description=info.description,
                definition=info.definition,
                unit=info.unit,
                direction="higher is better" if info.higher_is_better else "lower is better",
                primary=name == phase.primary_metric,
            )
        )
    return rows


def _test_counts(balance: list[dict[str, object]]) -> list[int] | None:
    for row in balance:
        if row["split"] == "test":
            return [int(c["n"]) for c in row["classes"]]  # type: ignore[attr-defined]
    return None


def trivial_score(*, phase: Phase, class_counts: list[int] | None) -> TrivialScore | None:
    """What "always negative" (probability 0 of the positive class for every case) scores on
    the primary metric over the whole test split, computed by the evaluator itself from the
    public class counts. Binary classification only; None where it is undefined or unknown."""
    metric = phase.primary_metric
    if (
        class_counts is None
        or len(class_counts) != 2
        or not sum(class_counts)
        or metric not in BINARY_METRIC_NAMES
    ):
        return None
    y = np.repeat(np.array([0, 1], dtype=np.int64), class_counts)
    values, _ = binary_metrics(
        y, np.zeros(y.size), threshold=phase.decision_threshold, metrics=[metric]
    )
    value = values.get(metric, math.nan)
    if not math.isfinite(value):
        return None
    return TrivialScore(predictor="Always negative", metric=metric, value=value)


def _cases_per_split(challenge: Challenge) -> list[tuple[str, int]]:
    counts = dict(
        Case.objects.filter(dataset__challenge=challenge)
        .values_list("split")
        .annotate(n=Count("id"))
        .values_list("split", "n")
    )
    return [(split, counts[split]) for split in SPLITS if counts.get(split)]


def task_card_for_challenge(*, challenge: Challenge) -> TaskCard:
    """The task card of a published challenge, made for its task type."""
    phases = list(challenge.phases.select_related("challenge", "dataset"))
    if challenge.task_type == TaskType.SEGMENTATION:
        return TaskCard(
            task_type=challenge.task_type,
            cases_per_split=_cases_per_split(challenge),
            labels=[(i, name) for i, name in enumerate(challenge.classes or [], start=1)],
            phases=[PhaseCard(phase=p, metrics=phase_metric_rows(phase=p)) for p in phases],
        )
    balance = challenge_class_balance(challenge=challenge)
    counts = _test_counts(balance)
    return TaskCard(
        task_type=challenge.task_type,
        balance=balance,
        phases=[
            PhaseCard(
                phase=p,
                metrics=phase_metric_rows(phase=p),
                trivial=trivial_score(phase=p, class_counts=counts),
            )
            for p in phases
        ],
    )
