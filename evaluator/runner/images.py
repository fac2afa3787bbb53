"""Reading cases, resampling and intensity scaling, writing masks (NumPy, nibabel, Pillow)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .inputspec import InputSpec, Intensity

__all__ = ["CASE_SUFFIXES", "Case", "case_id_of", "find_cases", "load_case", "prepare", "resize"]

CASE_SUFFIXES = (".nii.gz", ".nii", ".png", ".npy")


@dataclass
class Case:
    case_id: str
    path: Path
    array: np.ndarray[Any, Any]  # channels first: (C, *spatial)
    kind: str  # "nifti" | "png" | "npy"
    header: Any = None  # the nibabel image, to save a mask on the same grid


def case_id_of(path: Path) -> str | None:
    name = path.name
    for suffix in CASE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def find_cases(directory: Path) -> list[Path]:
    return sorted(
        p
        for p in directory.iterdir()
        if p.is_file() and not p.name.startswith(".") and case_id_of(p)
    )


def load_case(path: Path, spec: InputSpec) -> Case:
    case_id = case_id_of(path) or path.name
    spatial = len(spec.image_size)
    name = path.name.lower()
    header = None
    if name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        image: Any = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
        kind, header = "nifti", image
        while data.ndim > spatial + 1 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.ndim == spatial + 1:
            data = np.moveaxis(data, -1, 0)  # NIfTI keeps channels (or time) last
    elif name.endswith(".png"):
        from PIL import Image

        with Image.open(path) as img:
            mode = "RGB" if spec.channels == 3 else "L"
            data = np.asarray(img.convert(mode), dtype=np.float32)
        kind = "png"
        if data.ndim == 3:
            data = np.moveaxis(data, -1, 0)
    else:
        data = np.load(path, allow_pickle=False).astype(np.float32)
        kind = "npy"
    if data.ndim == spatial:
        data = data[np.newaxis]
    if data.ndim != spatial + 1:
        raise ValueError(f"image has {data.ndim} dimensions, the model takes {spatial}-D images")
    if data.shape[0] == 1 and spec.channels > 1:
        data = np.repeat(data, spec.channels, axis=0)
    if data.shape[0] != spec.channels:
        raise ValueError(f"image has {data.shape[0]} channels, the model takes {spec.channels}")
    return Case(case_id=case_id, path=path, array=data, kind=kind, header=header)


def _resize_axis(
    data: np.ndarray[Any, Any], axis: int, size: int, *, nearest: bool
) -> np.ndarray[Any, Any]:
    old = data.shape[axis]
    if old == size:
        return data
    # Align pixel centres (like align_corners=False).
    coords = (np.arange(size, dtype=np.float64) + 0.5) * (old / size) - 0.5
    coords = np.clip(coords, 0, old - 1)
    if nearest:
        return np.take(data, np.rint(coords).astype(np.int64), axis=axis)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, old - 1)
    weight = (coords - low).astype(np.float32)
    shape = [1] * data.ndim
    shape[axis] = size
    weight = weight.reshape(shape)
    result: np.ndarray[Any, Any] = (
        np.take(data, low, axis=axis) * (1 - weight) + np.take(data, high, axis=axis) * weight
    )
    return result


def resize(
    data: np.ndarray[Any, Any], size: tuple[int, ...], *, nearest: bool = False
) -> np.ndarray[Any, Any]:
    """Resample the trailing ``len(size)`` axes of ``data`` to ``size`` (separable)."""
    offset = data.ndim - len(size)
    for i, target in enumerate(size):
        data = _resize_axis(data, offset + i, target, nearest=nearest)
    return data


def prepare(case: Case, spec: InputSpec) -> np.ndarray[Any, Any]:
    """The model input (1, C, *image_size), float32."""
    data = resize(case.array, spec.image_size)
    if spec.intensity is Intensity.MINMAX:
        low, high = float(data.min()), float(data.max())
        data = (data - low) / (high - low) if high > low else np.zeros_like(data)
    elif spec.intensity is Intensity.ZSCORE:
        std = float(data.std())
        data = (data - float(data.mean())) / std if std > 0 else data - float(data.mean())
    elif spec.intensity is Intensity.WINDOW:
        assert spec.window is not None
        low, high = spec.window
        data = (np.clip(data, low, high) - low) / (high - low)
    elif spec.intensity is Intensity.SCALE:
        data = data * spec.scale
    return np.ascontiguousarray(data[np.newaxis], dtype=np.float32)


def save_mask(case: Case, labels: np.ndarray[Any, Any], output_dir: Path, mask_format: str) -> Path:
    """Write ``labels`` (the case's own spatial shape) as ``<case_id>.nii.gz`` or ``.png``."""
    fmt = mask_format
    if fmt == "same":
        fmt = "png" if case.kind == "png" else "nii.gz"
    if fmt == "png":
        from PIL import Image

        target = output_dir / f"{case.case_id}.png"
        Image.fromarray(labels.astype(np.uint8), mode="L").save(target)
        return target
    import nibabel as nib

    nifti: Any = nib.Nifti1Image
    target = output_dir / f"{case.case_id}.nii.gz"
    dtype = np.uint8 if int(labels.max(initial=0)) < 256 else np.int16
    if case.header is not None:
        header = case.header.header.copy()
        header.set_data_dtype(dtype)
        image = nifti(labels.astype(dtype), case.header.affine, header)
    else:
        image = nifti(labels.astype(dtype), np.eye(4))
    nib.save(image, str(target))
    return target
