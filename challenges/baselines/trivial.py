"""Trivial baselines: what a method must beat to have learnt anything.

Classification: "Always negative" (every test case in class 0; on imbalanced data its accuracy
looks good, its AUC is 0.5) and, for image inputs, "Class prior" (the train prevalence of every
class as the score). Segmentation: "Empty mask" and "Otsu threshold".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from challenges.baselines.data import load_image, load_mask, n_classes, write_masks, write_scores
from challenges.baselines.registry import Baseline, PhaseData, register


def _classification(data: PhaseData) -> bool:
    return data.task == "classification"


def _segmentation(data: PhaseData) -> bool:
    return data.task == "segmentation" and data.input_kind != "table"


def _always_negative(data: PhaseData) -> Path:
    scores = np.zeros((len(data.test), n_classes(data)))
    scores[:, 0] = 1.0
    return write_scores(data, scores, "always-negative")


def _class_prior(data: PhaseData) -> Path:
    k = n_classes(data)
    labels = np.array([c.label for c in data.train if c.label is not None], dtype=int)
    prior = np.bincount(labels, minlength=k)[:k].astype(float)
    prior = prior / max(prior.sum(), 1.0)
    return write_scores(data, np.tile(prior, (len(data.test), 1)), "class-prior")


def _empty_mask(data: PhaseData) -> Path:
    masks = {}
    for case in data.test:
        assert case.input_path is not None
        masks[case.case_id] = np.zeros(load_image(case.input_path).shape, dtype=np.uint8)
    return write_masks(data, masks, "empty-mask")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def otsu_foreground(image: np.ndarray, above: bool) -> np.ndarray:
    """Foreground of one image by its own Otsu threshold: above it, or below."""
    from skimage.filters import threshold_otsu

    if float(image.min()) == float(image.max()):
        return np.zeros(image.shape, dtype=bool)
    t = threshold_otsu(image)  # type: ignore[no-untyped-call]
    return np.asarray(image > t if above else image <= t)


def otsu_direction(data: PhaseData) -> bool:
    """True (foreground above the threshold) unless below matches the train masks better
    (mean Dice over the train cases with a mask)."""
    above, below = [], []
    for case in data.train:
        if case.input_path is None or case.mask_path is None:
            continue
        image, ref = load_image(case.input_path), load_mask(case.mask_path) > 0
        if image.shape != ref.shape:
            continue
        fg = otsu_foreground(image, True)
        above.append(_dice(fg, ref))
        below.append(_dice(~fg if image.min() != image.max() else fg, ref))
    return not above or float(np.mean(above)) >= float(np.mean(below))


def _otsu(data: PhaseData) -> Path:
    above = otsu_direction(data)
    masks = {}
    for case in data.test:
        assert case.input_path is not None
        masks[case.case_id] = otsu_foreground(load_image(case.input_path), above).astype(np.uint8)
    return write_masks(data, masks, "otsu-threshold")


ALWAYS_NEGATIVE = register(
    Baseline(
        name="Always negative",
        description="Predicts class 0 for every case (score 0): the floor any method must beat.",
        family="trivial",
        applies=_classification,
        run=_always_negative,
    )
)
CLASS_PRIOR = register(
    Baseline(
        name="Class prior",
        description="Scores every case with the class frequencies of the train split.",
        family="trivial",
        # Not on feature tables: their leaderboards keep the rows they have always had.
        applies=lambda d: _classification(d) and d.input_kind != "table",
        run=_class_prior,
    )
)
EMPTY_MASK = register(
    Baseline(
        name="Empty mask",
        description="An all-background mask for every case: what predicting nothing scores.",
        family="trivial",
        applies=_segmentation,
        run=_empty_mask,
    )
)
OTSU = register(
    Baseline(
        name="Otsu threshold",
        description="Otsu's intensity threshold per image; the side that fits the train masks "
        "better is foreground.",
        family="trivial",
        applies=_segmentation,
        run=_otsu,
    )
)
