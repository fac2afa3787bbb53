"""`python manage.py make_synthetic_challenge`: write a generated challenge bundle of any size,
with the imbalance real data has, to try the platform at scale (docs/catalogue.md).

* ``classification``: one ``.npy`` image per case (noise; a positive case holds a faint blob),
  labels 0/1 with ``--prevalence`` positives (default 10 %);
* ``segmentation2d``: PNG images and PNG label masks; ``segmentation3d``: NIfTI volumes and
  masks (spacing 0.8, 0.8, 2.5 mm). One small structure per non-empty case (a few percent of
  the pixels in 2-D, well under one percent of the voxels in 3-D); ``--prevalence`` is the share
  of cases whose mask is not empty (default 70 %).

Cases are written one at a time (one volume in memory, whatever ``--cases``). The split is
stratified by class (classification) or by empty/non-empty mask, ``--test-fraction`` of each.
The bundle goes to ``var/synthetic-bundles/<slug>/`` (``--out`` changes the parent folder);
``--import`` then imports it like ``import_challenge``.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_slug
from numpy.typing import NDArray

from challenges.catalogue import CLASSIFICATION_METRICS, SEGMENTATION_METRICS
from evaluator.synthetic import ellipsoid_mask, write_nifti

TASKS = ("classification", "segmentation2d", "segmentation3d")
DEFAULT_SHAPES = {
    "classification": (32, 32),
    "segmentation2d": (128, 128),
    "segmentation3d": (64, 64, 32),
}
DEFAULT_PREVALENCE = {"classification": 0.1, "segmentation2d": 0.7, "segmentation3d": 0.7}
SPACING_3D = (0.8, 0.8, 2.5)
MAX_CASES = 1_000_000
MAX_VOXELS = 512 * 512 * 512


def _shape(text: str) -> tuple[int, ...]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError as exc:
        raise CommandError(f"--shape: {text!r} is not a shape like 64x64 or 64x64x32") from exc
    if not shape or any(n < 4 for n in shape):
        raise CommandError(f"--shape: {text!r}: every axis needs at least 4 pixels")
    return shape


def _positives(n: int, prevalence: float, rng: np.random.Generator) -> NDArray[np.bool_]:
    """Exactly round(prevalence * n) positive cases (at least one of each kind when n ≥ 2),
    placed at random."""
    k = round(prevalence * n)
    if n >= 2:
        k = min(max(k, 1), n - 1)
    flags = np.zeros(n, dtype=bool)
    flags[rng.permutation(n)[:k]] = True
    return flags


def _splits(flags: NDArray[np.bool_], test_fraction: float, rng: np.random.Generator) -> list[str]:
    """A split stratified by ``flags``: ``test_fraction`` of each group is test (at least one
    test case; a group of two or more keeps one train case)."""
    split = ["train"] * len(flags)
    for value in (True, False):
        idx = np.flatnonzero(flags == value)
        if len(idx) == 0:
            continue
        n_test = round(test_fraction * len(idx))
        n_test = min(max(n_test, 1), max(len(idx) - 1, 1))
        for i in rng.permutation(idx)[:n_test]:
            split[int(i)] = "test"
    return split


def _structure(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """Centre and radii (voxels) of one small structure: 4 to 10 % of each axis."""
    radii = [max(1.5, n * rng.uniform(0.04, 0.10)) for n in shape]
    centre = [rng.uniform(r + 1, n - r - 1) for n, r in zip(shape, radii, strict=True)]
    return centre, radii


def _image(
    shape: tuple[int, ...], mask: NDArray[np.uint8] | None, rng: np.random.Generator
) -> NDArray[np.float32]:
    img = rng.normal(100.0, 20.0, shape).astype(np.float32)
    if mask is not None:
        img[mask > 0] += 60.0
    return img


class Command(BaseCommand):
    help = (
        "Write a synthetic challenge bundle (classification, 2-D or 3-D segmentation) with "
        "realistic imbalance under var/synthetic-bundles/<slug>/, and optionally import it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--task", required=True, choices=TASKS)
        parser.add_argument("--cases", required=True, type=int, help="number of cases (≥ 2)")
        parser.add_argument(
            "--prevalence",
            type=float,
            help="classification: share of positive cases (default 0.1); segmentation: share "
            "of cases with a structure, the others' masks are empty (default 0.7)",
        )
        parser.add_argument("--shape", help="image shape, e.g. 64x64 or 64x64x32")
        parser.add_argument("--slug", help="challenge slug (default synthetic-<task>-<cases>)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--test-fraction", type=float, default=0.3)
        parser.add_argument(
            "--out", type=Path, help="parent folder (default var/synthetic-bundles)"
        )
        parser.add_argument("--import", action="store_true", dest="do_import")

    def handle(self, *args: Any, **opts: Any) -> None:
        task: str = opts["task"]
        n: int = opts["cases"]
        if not 2 <= n <= MAX_CASES:
            raise CommandError(f"--cases: between 2 and {MAX_CASES}")
        prevalence = opts["prevalence"]
        if prevalence is None:
            prevalence = DEFAULT_PREVALENCE[task]
        if not 0.0 < prevalence < 1.0:
            raise CommandError("--prevalence: must lie strictly between 0 and 1")
        if not 0.0 < opts["test_fraction"] < 1.0:
            raise CommandError("--test-fraction: must lie strictly between 0 and 1")
        shape = _shape(opts["shape"]) if opts["shape"] else DEFAULT_SHAPES[task]
        want = 3 if task == "segmentation3d" else 2
        if len(shape) != want:
            raise CommandError(f"--shape: {task} needs {want} axes, got {len(shape)}")
        if int(np.prod(shape)) > MAX_VOXELS:
            raise CommandError(f"--shape: at most {MAX_VOXELS} voxels per case")
        slug = opts["slug"] or f"synthetic-{task}-{n}"
        try:
            validate_slug(slug)
        except ValidationError as exc:
            raise CommandError(f"--slug: {slug!r} is not a slug") from exc
        parent = opts["out"] or Path(settings.VAR_DIR) / "synthetic-bundles"
        folder = Path(parent) / slug
        if folder.exists():
            if not (folder / "challenge.yaml").is_file():
                raise CommandError(f"{folder} exists and is not a bundle: not overwritten")
            shutil.rmtree(folder)
        (folder / "images").mkdir(parents=True)

        rng = np.random.default_rng(opts["seed"])
        flags = _positives(n, prevalence, rng)
        split = _splits(flags, opts["test_fraction"], rng)
        ids = [f"case{i:0{max(4, len(str(n - 1)))}d}" for i in range(n)]
        if task == "classification":
            self._write_classification(folder, ids, split, flags, shape, rng)
        else:
            self._write_segmentation(folder, task, ids, split, flags, shape, rng)
        self._write_manifest(folder, task, slug, n, prevalence, shape, opts["seed"])
        n_pos = int(flags.sum())
        what = "positive" if task == "classification" else "with a structure"
        self.stdout.write(
            f"Wrote {folder}: {n} cases ({split.count('test')} test), {n_pos} {what} "
            f"({n_pos / n:.1%}), shape {'x'.join(map(str, shape))}"
        )
        if opts["do_import"]:
            from challenges.services.bundles import BundleError, challenge_import_bundle

            try:
                report = challenge_import_bundle(path=folder)
            except BundleError as exc:
                raise CommandError(f"{folder}: {exc}") from exc
            self.stdout.write(self.style.SUCCESS(str(report)))

    def _write_classification(
        self,
        folder: Path,
        ids: list[str],
        split: list[str],
        flags: NDArray[np.bool_],
        shape: tuple[int, ...],
        rng: np.random.Generator,
    ) -> None:
        with (folder / "cases.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["case_id", "split", "label"])
            for case_id, s, positive in zip(ids, split, flags, strict=True):
                mask = None
                if positive:
                    centre, radii = _structure(shape, rng)
                    mask = ellipsoid_mask(shape, centre, [r * 2 for r in radii])
                np.save(folder / "images" / f"{case_id}.npy", _image(shape, mask, rng) / 4)
                writer.writerow([case_id, s, int(positive)])

    def _write_segmentation(
        self,
        folder: Path,
        task: str,
        ids: list[str],
        split: list[str],
        flags: NDArray[np.bool_],
        shape: tuple[int, ...],
        rng: np.random.Generator,
    ) -> None:
        from PIL import Image

        (folder / "labels").mkdir()
        with (folder / "cases.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["case_id", "split"])
            for case_id, s, non_empty in zip(ids, split, flags, strict=True):
                mask = np.zeros(shape, dtype=np.uint8)
                if non_empty:
                    centre, radii = _structure(shape, rng)
                    ellipsoid_mask(shape, centre, radii, out=mask)
                image = _image(shape, mask, rng)
                if task == "segmentation2d":
                    pixels = np.clip(image, 0, 255).astype(np.uint8)
                    Image.fromarray(pixels).save(folder / "images" / f"{case_id}.png")
                    Image.fromarray(mask).save(folder / "labels" / f"{case_id}.png")
                else:
                    volume = image.astype(np.int16)
                    write_nifti(folder / "images" / f"{case_id}.nii.gz", volume, SPACING_3D)
                    write_nifti(folder / "labels" / f"{case_id}.nii.gz", mask, SPACING_3D)
                writer.writerow([case_id, s])

    def _write_manifest(
        self,
        folder: Path,
        task: str,
        slug: str,
        n: int,
        prevalence: float,
        shape: tuple[int, ...],
        seed: int,
    ) -> None:
        size = "x".join(map(str, shape))
        if task == "classification":
            summary = (
                f"Generated data for load tests: {n} cases of {size} noise images; about "
                f"{prevalence:.0%} hold a faint blob (class 1). Predict its probability."
            )
            values: dict[str, Any] = {
                "task": "classification",
                "classes": ["no blob", "blob"],
                "input": f"One {size} float32 array per case, images/<case_id>.npy.",
                "output": "A CSV with columns case_id,score: the probability of class 1 (blob).",
            }
            metrics = CLASSIFICATION_METRICS
            dataset: dict[str, Any] = {"cases": "cases.csv", "inputs": "images/"}
        else:
            kind = "PNG images" if task == "segmentation2d" else "NIfTI volumes"
            summary = (
                f"Generated data for load tests: {n} {size} {kind}; about {prevalence:.0%} hold "
                "one small bright structure to segment, the others' masks are empty."
            )
            ext = "png" if task == "segmentation2d" else "nii.gz"
            values = {
                "task": "segmentation",
                "classes": ["structure"],
                "input": f"One {size} image per case, images/<case_id>.{ext}.",
                "output": f"One label mask per case on the image's grid (<case_id>.{ext}).",
            }
            metrics = SEGMENTATION_METRICS
            dataset = {"cases": "cases.csv", "inputs": "images/", "labels": "labels/"}
        dataset.update(public_fraction=0.3, seed=seed)
        manifest = {
            "slug": slug,
            "title": f"Synthetic {task} ({n} cases)",
            "summary": summary,
            **values,
            "licence": "CC0 1.0",
            "attribution": f"Generated by Scanbench's make_synthetic_challenge (seed {seed}).",
            "published": False,
            "dataset": dataset,
            "phases": [
                {
                    "slug": "open",
                    "title": "Open phase",
                    "submission_kind": "predictions",
                    "metrics": list(metrics),
                    "primary_metric": metrics[0],
                }
            ],
        }
        (folder / "challenge.yaml").write_text(
            yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
