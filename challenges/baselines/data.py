"""A phase's data as the baselines see it (:class:`~challenges.baselines.registry.PhaseData`),
and the image and prediction-file helpers every baseline shares.

Only public files are read: the feature table and the train and test inputs under MEDIA_ROOT,
the train labels and the train masks (MEDIA_ROOT too). A test case's label and mask (the latter
under SCANBENCH_PRIVATE_ROOT) are never selected from the database, so no baseline can see
them.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings

from challenges.baselines.registry import PhaseData, TrainCase
from challenges.models import Case, CaseSplit, Phase, SubmissionKind, TaskType

#: every baseline draws its randomness from this seed (PhaseData.seed)
SEED = 0
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".png", ".npy")
#: columns of an input table that are never features
_NOT_FEATURES = {"case_id", "label", "split", "leaderboard_part"}


class NoBaselineData(ValueError):
    """The phase has nothing a baseline can learn from (no inputs, no train cases)."""


def _media(rel: str) -> Path:
    return Path(settings.MEDIA_ROOT) / rel


def image_suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise ValueError(f"{path.name}: not an image the baselines read ({', '.join(IMAGE_SUFFIXES)})")


def load_image(path: Path) -> np.ndarray:
    """The image's intensities as float32: 2-D (H, W) for PNG, the stored array otherwise
    (NIfTI and NRRD in their own axis order, as masks on their grid are)."""
    suffix = image_suffix(path)
    arr: Any
    if suffix == ".png":
        from PIL import Image

        with Image.open(path) as src:
            im: Any = (
                src if src.mode in ("L", "I", "F", "I;16", "I;16B", "I;16L") else src.convert("L")
            )
            arr = np.asarray(im)
    elif suffix in (".nii.gz", ".nii"):
        import nibabel as nib

        arr = np.asarray(nib.load(str(path)).dataobj)  # type: ignore[attr-defined]
    elif suffix == ".nrrd":
        import nrrd

        arr, _ = nrrd.read(str(path))
    else:
        arr = np.load(path, allow_pickle=False)
    return np.asarray(arr, dtype=np.float32)


def load_mask(path: Path) -> np.ndarray:
    """A train mask as an integer label array (any of the formats the evaluator reads)."""
    labels: np.ndarray = np.rint(load_image(path)).astype(np.int16)
    return labels


def _image_ndim(path: Path) -> int:
    suffix = image_suffix(path)
    if suffix == ".png":
        return 2
    if suffix == ".npy":
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    elif suffix == ".nrrd":
        import nrrd

        shape = tuple(int(n) for n in nrrd.read_header(str(path))["sizes"])
    else:
        import nibabel as nib

        shape = nib.load(str(path)).shape  # type: ignore[attr-defined]
    return len([n for n in shape if n > 1])


def input_kind_of(phase: Phase) -> str:
    """``table``, ``image2d`` or ``image3d`` (from the data: one input's header); raises
    NoBaselineData when the phase has no train case to learn from or no inputs."""
    dataset = phase.dataset
    cases = Case.objects.filter(dataset=dataset)
    if not cases.filter(split=CaseSplit.TRAIN).exists():
        raise NoBaselineData(f"{phase}: no train cases to train a baseline on")
    if dataset.input_table:
        return "table"
    first = (
        cases.filter(split=CaseSplit.TRAIN)
        .exclude(input_file="")
        .values_list("input_file", flat=True)
        .first()
    )
    if first is None:
        raise NoBaselineData(f"{phase}: the cases have neither a feature table nor input images")
    path = _media(first)
    try:
        ndim = _image_ndim(path)
    except (OSError, ValueError) as exc:
        raise NoBaselineData(f"{phase}: cannot read the input {Path(first).name}: {exc}") from exc
    return "image2d" if ndim <= 2 else "image3d"


def _label(value: str, classes: Sequence[str]) -> int:
    return int(value) if value.strip().isdigit() else list(classes).index(value)


def phase_data(phase: Phase, work_dir: Path) -> PhaseData:
    """The phase's train split (inputs, labels, train masks) and test inputs, read from the
    public files only; raises NoBaselineData (a ValueError) when no baseline could learn."""
    challenge = phase.challenge
    task = str(challenge.task_type)
    classes = [str(c) for c in (challenge.classes or [])]
    kind = input_kind_of(phase)
    cases = Case.objects.filter(dataset=phase.dataset).order_by("case_id")
    train_rows = list(
        cases.filter(split=CaseSplit.TRAIN).values_list(
            "case_id", "input_file", "label", "label_file"
        )
    )
    # Test cases: their id and public input only; label and label_file are never selected.
    test_rows = list(cases.filter(split=CaseSplit.TEST).values_list("case_id", "input_file"))
    classify = task == TaskType.CLASSIFICATION
    train: list[TrainCase] = []
    test: list[TrainCase] = []
    if kind == "table":
        table = pd.read_csv(_media(phase.dataset.input_table))
        table["case_id"] = table["case_id"].astype(str)
        table = table.set_index("case_id")
        table = table[[c for c in table.columns if c not in _NOT_FEATURES]]
        for case_id, _input, label, _mask in train_rows:
            row = table.loc[case_id].to_numpy(dtype=float)
            train.append(
                TrainCase(case_id, None, row, _label(label, classes) if classify else None, None)
            )
        for case_id, _input in test_rows:
            test.append(
                TrainCase(case_id, None, table.loc[case_id].to_numpy(dtype=float), None, None)
            )
    else:
        for case_id, input_file, label, label_file in train_rows:
            if not input_file or (classify and not label.strip()):
                continue
            train.append(
                TrainCase(
                    case_id,
                    _media(input_file),
                    None,
                    _label(label, classes) if classify else None,
                    _media(label_file) if (label_file and not classify) else None,
                )
            )
        missing = [case_id for case_id, input_file in test_rows if not input_file]
        if missing:
            raise NoBaselineData(f"{phase}: test case {missing[0]} has no input file")
        test = [TrainCase(c, _media(f), None, None, None) for c, f in test_rows]
    if not train:
        raise NoBaselineData(f"{phase}: no usable train cases")
    if not test:
        raise NoBaselineData(f"{phase}: no test cases to predict")
    work_dir.mkdir(parents=True, exist_ok=True)
    spec = phase.input_spec if phase.submission_kind == SubmissionKind.MODEL else None
    return PhaseData(
        task=task, input_kind=kind, classes=classes, train=train, test=test, seed=SEED,
        work_dir=work_dir, input_spec=dict(spec) if spec else None,
    )  # fmt: skip


def n_classes(data: PhaseData) -> int:
    return max(len(data.classes), 2)


# --- prediction files ---------------------------------------------------------------------------


def write_scores(data: PhaseData, scores: np.ndarray, name: str) -> Path:
    """``case_id,score`` (binary: the probability of class 1, from column 1 of a 2-column
    ``scores`` or a 1-D array) or ``case_id,class_0,..`` into work_dir; rows sum to 1."""
    ids = [c.case_id for c in data.test]
    k = n_classes(data)
    scores = np.asarray(scores, dtype=float)
    if k == 2:
        column = scores[:, 1] if scores.ndim == 2 else scores
        frame = pd.DataFrame({"case_id": ids, "score": np.round(np.clip(column, 0, 1), 6)})
    else:
        p = np.clip(scores, 0, None)
        p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
        frame = pd.DataFrame({"case_id": ids})
        for j in range(k):
            frame[f"class_{j}"] = np.round(p[:, j], 6)
    out = io.StringIO()
    frame.to_csv(out, index=False)
    path = data.work_dir / f"{name}.csv"
    path.write_bytes(out.getvalue().encode())
    return path


def mask_bytes_like(image: Path, mask: np.ndarray) -> tuple[str, bytes]:
    """``mask`` (on the image's array grid) encoded in the image's format, with its grid
    (affine and spacing for NIfTI, the space fields for NRRD): (suffix, bytes)."""
    suffix = image_suffix(image)
    mask = np.asarray(mask, dtype=np.uint8)
    buffer = io.BytesIO()
    if suffix in (".nii.gz", ".nii"):
        import nibabel as nib

        img: Any = nib.load(str(image))
        out = nib.Nifti1Image(mask, img.affine)  # type: ignore[no-untyped-call]
        out.header.set_zooms(img.header.get_zooms()[: mask.ndim])  # type: ignore[no-untyped-call]
        raw = out.to_bytes()
        return suffix, gzip.compress(raw, mtime=0) if suffix == ".nii.gz" else raw
    if suffix == ".nrrd":
        import nrrd

        header: dict[str, Any] = dict(nrrd.read_header(str(image)))
        keep: dict[str, Any] = {
            k: header[k]
            for k in ("space", "space directions", "space origin", "spacings")
            if k in header
        }
        fields: dict[str, Any] = {**keep, "encoding": "gzip"}
        nrrd.write(buffer, mask, fields)
        return suffix, buffer.getvalue()
    if suffix == ".png":
        from PIL import Image

        Image.fromarray(mask, mode="L").save(buffer, format="PNG")
        return suffix, buffer.getvalue()
    np.save(buffer, mask)
    return ".npy", buffer.getvalue()


def write_masks(data: PhaseData, masks: dict[str, np.ndarray], name: str) -> Path:
    """A zip of one mask per test case, ``<case_id>.<ext>`` in its input's format and grid."""
    path = data.work_dir / f"{name}.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for case in data.test:
            assert case.input_path is not None
            suffix, body = mask_bytes_like(case.input_path, masks[case.case_id])
            info = zipfile.ZipInfo(f"{case.case_id}{suffix}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, body)
    return path
