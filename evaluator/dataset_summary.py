"""Measured facts about an organizer's reference masks, for the task card of a challenge.

Per split: the image grid (voxels per axis and voxel spacing in mm, min and max over cases) and
the foreground fraction of every label (share of a case's voxels with that label: mean, min and
max over cases). Over the test split: what an all-background prediction scores on every
segmentation metric. That last number is computed with the evaluator's own per-case metric code
(:func:`~evaluator.metrics.segmentation.case_metrics`) on a zero mask of the reference's shape,
filled and averaged exactly as :func:`evaluator.score` does (docs/metrics.md: worst values for
distances, undefined values left out of the mean), so that it equals what submitting empty masks
would score instead of re-deriving the formulas.

Masks are read one at a time and only their counts are kept, so memory stays that of one volume
whatever the number of cases. Only aggregates come out: nothing here describes a single case.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.aggregation import aggregate_cases
from evaluator.metrics.registry import SEGMENTATION_METRICS
from evaluator.metrics.segmentation import (
    SEGMENTATION_METRIC_NAMES,
    case_metrics,
    empty_label_metrics,
)
from evaluator.readers.masks import DEFAULT_MAX_VOXEL_BYTES, Mask, MaskDecodeError, decode_mask
from evaluator.readers.sources import MASK_EXTENSIONS, split_extension

__all__ = ["SUMMARY_VERSION", "MaskSummaryError", "summarize_masks"]

#: bump when the layout of the summary changes (the web shows what it knows of any version)
SUMMARY_VERSION = 1
#: above this label value, labels are found with np.unique instead of one comparison per label
_DENSE_LABELS = 32


class MaskSummaryError(ValueError):
    """A mask that cannot be measured; the message names the file, the case and the problem."""


@dataclass
class _SplitStats:
    cases: int = 0
    ndims: set[int] = field(default_factory=set)
    shape_min: list[int] = field(default_factory=list)
    shape_max: list[int] = field(default_factory=list)
    spacing_min: list[float] = field(default_factory=list)
    spacing_max: list[float] = field(default_factory=list)
    without_spacing: int = 0
    #: label -> fraction of voxels of every case so far (one float per case, not a volume)
    fractions: dict[int, list[float]] = field(default_factory=dict)

    def add(self, mask: Mask, counts: dict[int, int]) -> None:
        shape = [int(n) for n in mask.grid.shape]
        self.ndims.add(len(shape))
        if len(self.ndims) == 1:
            self.shape_min = _fold(self.shape_min, shape, min)
            self.shape_max = _fold(self.shape_max, shape, max)
        spacing = mask.grid.spacing
        if spacing is None:
            self.without_spacing += 1
        elif len(self.ndims) == 1:
            self.spacing_min = _fold(self.spacing_min, list(spacing), min)
            self.spacing_max = _fold(self.spacing_max, list(spacing), max)
        total = int(np.prod(shape))
        for lab in set(self.fractions) | set(counts):
            # a label first seen now was absent (fraction 0) from every earlier case
            values = self.fractions.setdefault(lab, [0.0] * self.cases)
            values.append(counts.get(lab, 0) / total)
        self.cases += 1

    def to_json(self, labels: Sequence[int]) -> dict[str, Any]:
        mixed = len(self.ndims) > 1
        foreground = {}
        for lab in labels:
            values = self.fractions.get(lab, [0.0] * self.cases)
            if values:
                foreground[str(lab)] = {
                    "mean": float(np.mean(values)),
                    "min": float(min(values)),
                    "max": float(max(values)),
                }
        return {
            "cases": self.cases,
            "ndim": None if mixed or not self.ndims else next(iter(self.ndims)),
            "shape": None if mixed or not self.cases else {
                "min": self.shape_min, "max": self.shape_max
            },
            "spacing_mm": None if mixed or not self.spacing_min else {
                "min": self.spacing_min, "max": self.spacing_max
            },
            "cases_without_spacing": self.without_spacing,
            "foreground": foreground,
        }  # fmt: skip


def _fold(acc: list[Any], values: list[Any], pick: Any) -> list[Any]:
    return list(values) if not acc else [pick(a, v) for a, v in zip(acc, values, strict=True)]


def _label_counts(mask: Mask, declared: Sequence[int] | None) -> dict[int, int]:
    """Voxels per non-zero label; labels that occur, plus the declared ones (as 0)."""
    data = np.asarray(mask.data)
    counts: dict[int, int] = {int(lab): 0 for lab in declared or ()}
    if mask.max == 0:
        return counts
    if mask.max <= _DENSE_LABELS:
        for lab in range(1, mask.max + 1):
            n = int(np.count_nonzero(data == lab))
            if n or lab in counts:
                counts[lab] = n
        return counts
    values, n_values = np.unique(data, return_counts=True)
    for lab, n in zip(values.tolist(), n_values.tolist(), strict=True):
        if lab != 0:
            counts[int(lab)] = int(n)
    return counts


def _empty_prediction_values(mask: Mask) -> tuple[dict[int, dict[str, float]], float]:
    """The evaluator's per-label values of one case for an all-background prediction, and the
    case's volume diagonal in mm (the worst value of the distance metrics)."""
    data = np.asarray(mask.data)
    spacing = mask.grid.spacing or (1.0,) * data.ndim
    diagonal = float(math.sqrt(sum((n * s) ** 2 for n, s in zip(data.shape, spacing, strict=True))))
    if mask.max > _DENSE_LABELS:
        present = [int(v) for v in np.unique(data).tolist() if v != 0]
    else:
        present = list(range(1, mask.max + 1))
    if not present:
        return {}, diagonal
    empty = np.zeros(data.shape, dtype=np.uint8)
    per_label = case_metrics(
        data,
        empty,
        spacing,
        labels=present,
        metrics=SEGMENTATION_METRIC_NAMES,
        max_label=mask.max,
    )
    return per_label, diagonal


def _case_values(
    per_label: dict[int, dict[str, float]], diagonal: float, labels: Sequence[int]
) -> dict[str, float | None]:
    """One case's metric values as :func:`evaluator.score` reports them: worst value where a
    value is needed but missing, undefined values left out of the mean over labels."""
    values: dict[str, float | None] = {}
    for m in SEGMENTATION_METRIC_NAMES:
        info = SEGMENTATION_METRICS[m]
        per: list[float] = []
        for lab in labels:
            v = per_label.get(lab, empty_label_metrics())[m]
            if math.isnan(v) and not info.nan_is_undefined:
                v = info.worst_value if info.worst_value is not None else diagonal
            per.append(v)
        defined = [v for v in per if not math.isnan(v)]
        if len(labels) > 1:
            values[m] = float(np.mean(defined)) if defined else None
        else:
            values[m] = per[0] if math.isfinite(per[0]) else None
    return values


def summarize_masks(
    cases: Iterable[tuple[str, str, Path]],
    *,
    labels: Sequence[int] | None = None,
    max_voxel_bytes: int = DEFAULT_MAX_VOXEL_BYTES,
) -> dict[str, Any]:
    """Measure the masks of ``cases`` (``(case_id, split, path)``, read one at a time).

    ``labels`` are the challenge's declared labels (1..n), as the platform passes them to the
    scorer; without them, the labels found in the masks. The result is JSON: ``splits`` maps
    each split to its grid ranges and foreground fractions, ``empty_mask`` holds what an
    all-background prediction scores on every metric over the whole test split (``None``
    where a mean is undefined). Raises :class:`MaskSummaryError` for an unreadable mask.
    """
    stats: dict[str, _SplitStats] = {}
    test_cases: list[tuple[dict[int, dict[str, float]], float]] = []
    found: set[int] = set()
    test_found: set[int] = set()
    for case_id, split, path in cases:
        ext = split_extension(path.name, MASK_EXTENSIONS)
        if ext is None:
            raise MaskSummaryError(f"{path.name}: case '{case_id}': not a mask file type")
        try:
            mask = decode_mask(path.read_bytes(), ext[1], max_voxel_bytes=max_voxel_bytes)
        except (MaskDecodeError, OSError) as exc:
            raise MaskSummaryError(f"{path.name}: case '{case_id}': {exc}") from exc
        counts = _label_counts(mask, labels)
        found.update(lab for lab, n in counts.items() if n)
        stats.setdefault(split, _SplitStats()).add(mask, counts)
        if split == "test":
            per_label, diagonal = _empty_prediction_values(mask)
            test_found.update(lab for lab, n in counts.items() if n)
            test_cases.append((per_label, diagonal))
        del mask
    shown = sorted({int(lab) for lab in labels if int(lab) != 0}) if labels else sorted(found)
    # the scorer's label set: declared, else those in the scored (test) references, else [1]
    scored = (
        sorted({int(lab) for lab in labels if int(lab) != 0}) if labels else sorted(test_found)
    ) or [1]
    empty_mask: dict[str, Any] | None = None
    if test_cases:
        per_case = {
            str(i): _case_values(pl, diagonal, scored)
            for i, (pl, diagonal) in enumerate(test_cases)
        }
        means = aggregate_cases(per_case).means
        empty_mask = {
            "cases": len(test_cases),
            "labels": scored,
            "metrics": {m: means.get(m) for m in SEGMENTATION_METRIC_NAMES},
        }
    return {
        "version": SUMMARY_VERSION,
        "task": "segmentation",
        "labels": shown,
        "splits": {split: s.to_json(shown) for split, s in sorted(stats.items())},
        "empty_mask": empty_mask,
    }
