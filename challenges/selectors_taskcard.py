"""The task card of a challenge page, made from the challenge's data and its phases.

What a participant needs before the first submission, per task type: for classification the
classes, how many cases of each class each split holds, the decision threshold and what a trivial
"always negative" predictor scores; for segmentation the cases per split, the label names, the
image size and voxel spacing ranges, the foreground fraction of every label and what an empty mask
scores on each phase's metrics; for both, every metric of every phase with its one-line
definition, unit and direction from the evaluator's registry (the same text as docs/metrics.md).

The measured rows come from ``Dataset.summary``, computed at import from the organizer's files
(:func:`challenges.services.bundles.dataset_summary_refresh`); a page request never reads a mask.
A data set imported before summaries existed has none, and the card leaves those rows out.

Nothing here reveals a hidden label: the test split is described by aggregates over the whole
split only (class counts, ranges and mean foreground fractions, the empty-mask score), never per
case, and the trivial score is a function of the class counts alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from django.db.models import Count

from challenges.models import Case, Challenge, Dataset, Phase, TaskType
from challenges.selectors import challenge_class_balance
from challenges.selectors_columns import BoardColumn, board_columns, board_primary
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
class EmptyMaskScore:
    """What an all-background mask for every test case scores on one metric (the evaluator's
    own per-case code and conventions, measured at import)."""

    metric: str
    value: float | None
    unit: str


@dataclass(frozen=True)
class PhaseCard:
    phase: Phase
    metrics: list[MetricRow]
    trivial: TrivialScore | None = None
    #: segmentation: the phase's metrics (primary first) for an empty mask over the test split
    empty_mask: list[EmptyMaskScore] = field(default_factory=list)
    empty_mask_cases: int = 0
    #: a phase scored by the organizers' program: its board's columns, the ranking one first
    program_columns: list[BoardColumn] = field(default_factory=list)


@dataclass(frozen=True)
class MeasuredSplit:
    """Grid of one split's masks as text: voxels per axis and spacing in mm, min to max."""

    split: str
    cases: int
    size: str
    spacing: str


@dataclass(frozen=True)
class ForegroundRow:
    """Share of voxels with one label: per split, the mean over cases and the range."""

    label: int
    name: str
    #: (split, mean, minimum, maximum) as percentages of a case's voxels
    splits: list[tuple[str, str, str, str]]


@dataclass(frozen=True)
class TaskCard:
    task_type: str
    #: classification: class balance rows per split (split, total, classes: name, n, percent)
    balance: list[dict[str, object]] = field(default_factory=list)
    #: segmentation: (split, number of cases)
    cases_per_split: list[tuple[str, int]] = field(default_factory=list)
    #: segmentation: (label value, name), label 0 being background
    labels: list[tuple[int, str]] = field(default_factory=list)
    #: segmentation, measured at import: image grid per split and foreground per label
    measured: list[MeasuredSplit] = field(default_factory=list)
    foreground: list[ForegroundRow] = field(default_factory=list)
    #: split names of the foreground columns, in order
    foreground_splits: list[str] = field(default_factory=list)
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


#: typographic en dash (a range) and multiplication sign (between axes)
DASH, TIMES = "\u2013", "\u00d7"


def _range(lo: float, hi: float, fmt: str) -> str:
    a, b = format(lo, fmt), format(hi, fmt)
    return a if a == b else f"{a}{DASH}{b}"


def _axes(ranges: object, fmt: str) -> str:
    """``{"min": [..], "max": [..]}`` per axis as ``40-48 x 48 x 24`` (with an en dash and
    multiplication signs); "" when unknown."""
    if not isinstance(ranges, dict):
        return ""
    lows, highs = ranges.get("min") or [], ranges.get("max") or []
    return f" {TIMES} ".join(_range(lo, hi, fmt) for lo, hi in zip(lows, highs, strict=False))


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.3g} %"


def _segmentation_measured(
    challenge: Challenge, datasets: list[Dataset]
) -> tuple[list[MeasuredSplit], list[ForegroundRow], list[str]]:
    """The measured rows of every data set with a summary (version 1 layout)."""
    names = dict(enumerate(challenge.classes or [], start=1))
    measured: list[MeasuredSplit] = []
    per_label: dict[int, list[tuple[str, str, str, str]]] = {}
    columns: list[str] = []
    for ds in datasets:
        summary = ds.summary or {}
        if summary.get("task") != TaskType.SEGMENTATION:
            continue
        splits = summary.get("splits") or {}
        for split in SPLITS:
            row = splits.get(split)
            if not row or not row.get("cases"):
                continue
            shown = f"{ds.slug}: {split}" if len(datasets) > 1 else split
            spacing = _axes(row.get("spacing_mm"), ".3g")
            if spacing:
                spacing += " mm"
                if row.get("cases_without_spacing"):
                    spacing += f" ({row['cases_without_spacing']} cases without: 1 mm)"
            else:
                spacing = "not in the files (1 mm per voxel assumed)"
            measured.append(
                MeasuredSplit(
                    split=shown,
                    cases=int(row["cases"]),
                    size=_axes(row.get("shape"), "d") or "mixed 2-D and 3-D",
                    spacing=spacing,
                )
            )
            columns.append(shown)
            for label, fg in (row.get("foreground") or {}).items():
                per_label.setdefault(int(label), []).append(
                    (shown, _percent(fg["mean"]), _percent(fg["min"]), _percent(fg["max"]))
                )
    rows = []
    for lab, values in sorted(per_label.items()):
        by_split = {v[0]: v for v in values}
        cells = [by_split.get(c, (c, "—", "—", "—")) for c in columns]
        rows.append(ForegroundRow(label=lab, name=names.get(lab, f"label {lab}"), splits=cells))
    return measured, rows, columns


def empty_mask_scores(*, phase: Phase) -> tuple[list[EmptyMaskScore], int]:
    """The phase's metrics (primary first) for an empty mask per test case, from the data
    set's summary; nothing when the data set was measured before summaries existed."""
    summary = phase.dataset.summary or {}
    empty = summary.get("empty_mask") if summary.get("task") == TaskType.SEGMENTATION else None
    if not empty:
        return [], 0
    values = empty.get("metrics") or {}
    rows = [
        EmptyMaskScore(metric=m.name, value=values.get(m.name), unit=m.unit)
        for m in phase_metric_rows(phase=phase)
        if m.name in values
    ]
    return rows, int(empty.get("cases", 0))


def _segmentation_phase_card(phase: Phase) -> PhaseCard:
    empty, n = empty_mask_scores(phase=phase)
    return PhaseCard(
        phase=phase, metrics=phase_metric_rows(phase=phase), empty_mask=empty, empty_mask_cases=n
    )


def _program_card(phase: Phase) -> PhaseCard:
    """A phase scored by the organizers' program: its columns, not the registry's metrics
    (a column named like a built-in metric is whatever the program computes)."""
    primary = board_primary(phase)
    return PhaseCard(phase=phase, metrics=[], program_columns=[primary, *board_columns(phase)])


def task_card_for_challenge(*, challenge: Challenge) -> TaskCard:
    """The task card of a published challenge, made for its task type."""
    phases = list(challenge.phases.select_related("challenge", "dataset"))
    if challenge.task_type == TaskType.PROGRAM:
        return TaskCard(task_type=challenge.task_type, phases=[_program_card(p) for p in phases])
    if challenge.task_type == TaskType.SEGMENTATION:
        measured, foreground, columns = _segmentation_measured(
            challenge, list(challenge.datasets.order_by("slug"))
        )
        return TaskCard(
            task_type=challenge.task_type,
            cases_per_split=_cases_per_split(challenge),
            labels=[(i, name) for i, name in enumerate(challenge.classes or [], start=1)],
            measured=measured,
            foreground=foreground,
            foreground_splits=columns,
            phases=[
                _program_card(p) if p.scoring_program else _segmentation_phase_card(p)
                for p in phases
            ],
        )
    balance = challenge_class_balance(challenge=challenge)
    counts = _test_counts(balance)
    return TaskCard(
        task_type=challenge.task_type,
        balance=balance,
        phases=[
            _program_card(p)
            if p.scoring_program
            else PhaseCard(
                phase=p,
                metrics=phase_metric_rows(phase=p),
                trivial=trivial_score(phase=p, class_counts=counts),
            )
            for p in phases
        ],
    )
