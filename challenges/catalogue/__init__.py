"""The catalogue of public data sets (docs/catalogue.md): the 32 rows of the seed review's table,
with the corrections of its notes applied, in ``datasets.csv`` beside this module.

The file is read once, on first use (:func:`datasets`), into frozen :class:`CatalogueEntry`
rows; :func:`dataset_filter` selects rows for the page and :func:`template_zip` writes the
bundle skeleton (docs/bundles.md) an organizer fills with the data.
"""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

__all__ = [
    "CLASSIFICATION_METRICS",
    "SEGMENTATION_METRICS",
    "SIZE_BUCKETS",
    "TASKS",
    "CatalogueEntry",
    "dataset_filter",
    "dataset_get",
    "datasets",
    "modalities",
    "template_manifest",
    "template_zip",
]

CSV_PATH = Path(__file__).resolve().parent / "datasets.csv"

#: task values of the catalogue and the words the page shows for them
TASKS = {
    "classification": "Classification",
    "segmentation": "Segmentation",
    "survival": "Survival prediction",
}
#: the tasks a bundle can have (challenges.models.TaskType); the others get no template
TEMPLATE_TASKS = ("classification", "segmentation")
#: size filter: number of images, lower bound inclusive, upper bound exclusive
SIZE_BUCKETS: dict[str, tuple[str, int, int | None]] = {
    "small": ("under 1,000 images", 0, 1_000),
    "medium": ("1,000 to 10,000 images", 1_000, 10_000),
    "large": ("10,000 images or more", 10_000, None),
    "unknown": ("number of images not given", -1, -1),
}
#: suggested metrics of a template, the primary one first
CLASSIFICATION_METRICS = ["auc_roc", "sensitivity", "specificity", "balanced_accuracy"]
SEGMENTATION_METRICS = ["dice", "hd95", "nsd"]


@dataclass(frozen=True)
class CatalogueEntry:
    no: int
    slug: str
    name: str
    task: str
    modality: str
    image_size: str  # "W x H" in pixels as the review gives it, "" when not given
    images: str  # "1200", or "train/test" ("30/14"), "" when not given
    target: str
    classes: int | None  # number of classes (segmentation: background included)
    note: str

    @property
    def task_label(self) -> str:
        return TASKS.get(self.task, self.task)

    @property
    def n_images(self) -> int | None:
        """All images (train and test together), or None when the review gives no number."""
        if not self.images:
            return None
        return sum(int(part) for part in self.images.split("/"))

    @property
    def images_text(self) -> str:
        if not self.images:
            return "—"
        if "/" in self.images:
            train, test = self.images.split("/")
            return f"{int(train):,} train,\n{int(test):,} test"
        return f"{int(self.images):,}"

    @property
    def size(self) -> str:
        """The key of :data:`SIZE_BUCKETS` this data set falls in."""
        n = self.n_images
        if n is None:
            return "unknown"
        for key, (_, lo, hi) in SIZE_BUCKETS.items():
            if lo >= 0 and n >= lo and (hi is None or n < hi):
                return key
        return "unknown"  # pragma: no cover - the buckets cover every count

    @property
    def has_template(self) -> bool:
        return self.task in TEMPLATE_TASKS


def _entry(row: dict[str, str]) -> CatalogueEntry:
    return CatalogueEntry(
        no=int(row["no"]),
        slug=row["slug"],
        name=row["name"],
        task=row["task"],
        modality=row["modality"],
        image_size=row["image_size"].replace("x", " \u00d7 ") + " px" if row["image_size"] else "",
        images=row["images"],
        target=row["target"],
        classes=int(row["classes"]) if row["classes"] else None,
        note=row["note"],
    )


@cache
def datasets() -> tuple[CatalogueEntry, ...]:
    """Every row of the catalogue, in the review's order (read once per process)."""
    with CSV_PATH.open(newline="", encoding="utf-8") as fh:
        return tuple(_entry(row) for row in csv.DictReader(fh))


def dataset_get(slug: str) -> CatalogueEntry | None:
    return next((d for d in datasets() if d.slug == slug), None)


def modalities() -> list[str]:
    return sorted({d.modality for d in datasets()}, key=str.lower)


def dataset_filter(
    *, task: str = "", modality: str = "", size: str = "", q: str = ""
) -> list[CatalogueEntry]:
    """The rows matching every given filter (an empty value matches all); ``q`` is searched,
    case-insensitively, in the name, target, modality and note."""
    needle = q.strip().lower()
    found = []
    for d in datasets():
        if task and d.task != task:
            continue
        if modality and d.modality != modality:
            continue
        if size and d.size != size:
            continue
        if needle and needle not in " ".join((d.name, d.target, d.modality, d.note)).lower():
            continue
        found.append(d)
    return found


# --- the bundle template ----------------------------------------------------------------------


def _class_names(d: CatalogueEntry) -> list[str]:
    """Placeholder class names in label order: classification classes 0..n-1; segmentation
    the foreground labels 1..n-1 (the review's count includes the background)."""
    if d.task == "classification":
        n = max(d.classes or 2, 2)
        return [f"class {k}" for k in range(n)]
    n = max((d.classes or 2) - 1, 1)
    target = d.target.lower() or "structure"
    return [target] if n == 1 else [f"{target} part {k}" for k in range(1, n + 1)]


def template_manifest(d: CatalogueEntry) -> dict[str, object]:
    """challenge.yaml of the template, as a mapping (see docs/bundles.md)."""
    if not d.has_template:
        raise ValueError(f"{d.name}: no bundle template for the task {d.task_label!r}")
    segmentation = d.task == "segmentation"
    metrics = SEGMENTATION_METRICS if segmentation else CLASSIFICATION_METRICS
    dataset: dict[str, object] = {"cases": "cases.csv", "inputs": "images/"}
    if segmentation:
        dataset["labels"] = "labels/"
    dataset.update(public_fraction=0.3, seed=1)
    size = f" of {d.image_size} pixels" if d.image_size else ""
    if segmentation:
        output = "One label mask per test case, on the image's grid (0 = background)."
    elif len(_class_names(d)) == 2:
        output = "A CSV with columns case_id,score: the probability of class 1."
    else:
        output = "A CSV with columns case_id,class_0,...: one probability per class."
    return {
        "slug": d.slug,
        "title": f"{d.name}: {d.task} of {d.target.lower() or 'images'} ({d.modality})",
        "summary": (
            f"{d.task_label} of {d.modality} images{size} ({d.target or 'no target given'}). "
            "TODO: describe the task in plain machine-learning words."
        ),
        "task": d.task,
        "classes": _class_names(d),
        "input": f"One {d.modality} image per case{size}, in images/<case_id>.<ext>.",
        "output": output,
        "licence": f"TODO: the licence of the {d.name} data",
        "attribution": f"TODO: who made {d.name}, and the paper to cite",
        "published": False,
        "dataset": dataset,
        "phases": [
            {
                "slug": "open",
                "title": "Open phase",
                "submission_kind": "predictions",
                "daily_limit": 5,
                "total_limit": 100,
                "metrics": list(metrics),
                "primary_metric": metrics[0],
            }
        ],
    }


def _readme(d: CatalogueEntry) -> str:
    segmentation = d.task == "segmentation"
    header = "case_id,split" if segmentation else "case_id,split,label"
    labels = (
        "* `labels/`: one label mask per case, `<case_id>.nii.gz` (or `.nii`, `.nrrd`, `.png`,\n"
        "  `.npy`, `.npz`) on the same grid as its image; 0 is the background and 1..n the\n"
        "  `classes` of challenge.yaml, in that order. Test masks stay private.\n"
        if segmentation
        else ""
    )
    label_note = (
        "" if segmentation else "  `label` is the class index (0..n-1) in the order of `classes`.\n"
    )
    return (
        f"# {d.name}: a Scanbench challenge bundle template\n\n"
        f"Generated from the Scanbench data set catalogue ({d.task_label}, {d.modality}, "
        f"target: {d.target or 'not given'}). The catalogue holds no data: fetch {d.name} from "
        "its publisher, respect its licence, then fill this folder.\n\n"
        "## What goes where\n\n"
        "* `challenge.yaml`: replace every `TODO` (summary, licence, attribution), name the\n"
        "  classes (placeholders now) and check the metrics and limits of the phase. The\n"
        "  challenge stays unpublished after the import until you publish it in the console.\n"
        f"* `cases.csv`: one row per case under the header `{header}`; `split` is `train` or\n"
        "  `test` (at least one test case).\n"
        f"{label_note}"
        "* `images/`: one image per case, `<case_id>.<ext>` (e.g. `.png`, `.nii.gz`, `.npy`);\n"
        "  no other files (the `.keep` file may stay or go).\n"
        f"{labels}\n"
        "## Check and import\n\n"
        "Zip the folder and upload it at `/organize/new/` (a dry run lists every problem before\n"
        "anything is written), or run `python manage.py import_challenge PATH`. The format is\n"
        "described in docs/bundles.md.\n"
    )


def template_zip(d: CatalogueEntry) -> bytes:
    """The bundle skeleton of one data set as a zip, everything under ``<slug>/``."""
    manifest = yaml.safe_dump(template_manifest(d), sort_keys=False, allow_unicode=True)
    header = "case_id,split\n" if d.task == "segmentation" else "case_id,split,label\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{d.slug}/challenge.yaml", manifest)
        zf.writestr(f"{d.slug}/cases.csv", header)
        zf.writestr(f"{d.slug}/README.md", _readme(d))
        zf.writestr(f"{d.slug}/images/.keep", "")
        if d.task == "segmentation":
            zf.writestr(f"{d.slug}/labels/.keep", "")
    return buf.getvalue()
