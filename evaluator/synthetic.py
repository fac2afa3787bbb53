"""Seeded synthetic fixtures: classification CSVs and segmentation masks (NIfTI).

For examples, demo bundles, pipeline tests and benchmarks. Nothing here is used when scoring.

    ref, pred = write_classification(tmp_path, n_cases=200, seed=1)
    ref_dir, pred_dir = write_segmentation(tmp_path, n_cases=5, shape=(64, 64, 32), seed=1)
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "ellipsoid_mask",
    "mask_pair",
    "write_classification",
    "write_nifti",
    "write_segmentation",
]


def ellipsoid_mask(
    shape: Sequence[int],
    center: Sequence[float],
    radii: Sequence[float],
    *,
    out: NDArray[np.uint8] | None = None,
    label: int = 1,
) -> NDArray[np.uint8]:
    """Paint a filled ellipsoid (in voxel units) into ``out`` (a new zero array by default).

    Only the ellipsoid's bounding box is computed, so large volumes stay cheap.
    """
    arr = np.zeros(tuple(shape), dtype=np.uint8) if out is None else out
    lo = [max(0, int(np.floor(c - r))) for c, r in zip(center, radii, strict=True)]
    hi = [min(n, int(np.ceil(c + r)) + 1) for n, c, r in zip(shape, center, radii, strict=True)]
    if any(a >= b for a, b in zip(lo, hi, strict=True)):
        return arr
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii, strict=True)) <= 1.0
    box = arr[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    box[inside] = label
    return arr


def mask_pair(
    shape: Sequence[int],
    *,
    seed: int = 0,
    size: float = 0.25,
    labels: int = 1,
    false_positive: bool = True,
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """A (reference, prediction) pair of label masks: per label one ellipsoid in the reference;
    the prediction is shifted and resized a little, and (optionally) adds a small false-positive
    blob away from the structure, as real models do."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in shape)
    ref = np.zeros(shape, dtype=np.uint8)
    pred = np.zeros(shape, dtype=np.uint8)
    for lab in range(1, labels + 1):
        centre = [n * rng.uniform(0.35, 0.65) for n in shape]
        radii = [n * size * rng.uniform(0.6, 1.0) / max(1, labels) ** 0.5 for n in shape]
        ellipsoid_mask(shape, centre, radii, out=ref, label=lab)
        shift = [rng.uniform(-0.06, 0.06) * r for r in radii]
        scale = rng.uniform(0.95, 1.05)
        ellipsoid_mask(
            shape,
            [c + s for c, s in zip(centre, shift, strict=True)],
            [r * scale for r in radii],
            out=pred,
            label=lab,
        )
        if false_positive:
            fp_centre = [n * rng.uniform(0.1, 0.2) for n in shape]
            ellipsoid_mask(
                shape, fp_centre, [max(1.0, r * 0.1) for r in radii], out=pred, label=lab
            )
    return ref, pred


def write_nifti(
    path: Path, data: NDArray[np.generic], spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> Path:
    """Write ``data`` as NIfTI-1 (``.nii`` or ``.nii.gz`` by the suffix) with a diagonal affine."""
    import nibabel as nib

    affine = np.diag([*map(float, spacing[: data.ndim]), *([1.0] * (4 - data.ndim))])
    img = nib.Nifti1Image(np.asarray(data), affine)  # type: ignore[no-untyped-call]
    img.header.set_zooms(tuple(float(s) for s in spacing[: data.ndim]))  # type: ignore[no-untyped-call]
    nib.save(img, str(path))
    return path


def write_segmentation(
    folder: Path,
    *,
    n_cases: int = 5,
    shape: Sequence[int] = (64, 64, 32),
    spacing: Sequence[float] = (0.8, 0.8, 2.5),
    labels: int = 1,
    seed: int = 0,
    prefix: str = "case_",
    empty_every: int = 0,
) -> tuple[Path, Path]:
    """Write ``folder/reference/<id>.nii.gz`` and ``folder/predictions/<id>.nii.gz``.

    ``empty_every=k`` makes every k-th reference empty (a case without the structure) to
    exercise the empty-mask conventions. Returns (reference folder, predictions folder).
    """
    ref_dir, pred_dir = Path(folder) / "reference", Path(folder) / "predictions"
    ref_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n_cases):
        ref, pred = mask_pair(shape, seed=seed * 100_003 + i, labels=labels)
        if empty_every and i % empty_every == empty_every - 1:
            ref[:] = 0
        case_id = f"{prefix}{i:03d}"
        write_nifti(ref_dir / f"{case_id}.nii.gz", ref, spacing)
        write_nifti(pred_dir / f"{case_id}.nii.gz", pred, spacing)
    return ref_dir, pred_dir


def write_classification(
    folder: Path,
    *,
    n_cases: int = 100,
    n_classes: int = 2,
    prevalence: float = 0.3,
    separation: float = 1.5,
    seed: int = 0,
    prefix: str = "case_",
) -> tuple[Path, Path]:
    """Write ``folder/reference.csv`` (``case_id,label``) and ``folder/predictions.csv``.

    Binary: ``case_id,score`` with positives at the given prevalence; multi-class:
    ``case_id,class_0,...`` softmax probabilities. ``separation`` sets how good the synthetic model
    is (0: chance). Returns (reference path, predictions path).
    """
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"{prefix}{i:04d}" for i in range(n_cases)]
    if n_classes == 2:
        y = (rng.random(n_cases) < prevalence).astype(int)
        logits = rng.normal(0.0, 1.0, n_cases) + separation * (2 * y - 1)
        scores = 1.0 / (1.0 + np.exp(-logits))
        header = ["case_id", "score"]
        rows = [[c, f"{s:.6f}"] for c, s in zip(ids, scores, strict=True)]
    else:
        y = rng.integers(0, n_classes, n_cases)
        logits = rng.normal(0.0, 1.0, (n_cases, n_classes))
        logits[np.arange(n_cases), y] += separation
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        header = ["case_id", *(f"class_{k}" for k in range(n_classes))]
        rows = []
        for c, row in zip(ids, p, strict=True):
            vals = np.round(row, 6)
            vals[-1] = round(1.0 - float(vals[:-1].sum()), 6)
            rows.append([c, *(f"{v:.6f}" for v in vals)])
    ref_path, pred_path = folder / "reference.csv", folder / "predictions.csv"
    with ref_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "label"])
        w.writerows([c, int(v)] for c, v in zip(ids, y, strict=True))
    with pred_path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return ref_path, pred_path
