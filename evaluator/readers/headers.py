"""The grid of an image file (shape, voxel spacing, orientation) read from its header alone.

The bundle importer compares each reference mask with its image before anything is stored.
Images are not masks (they hold floats, several channels), so they are never decoded as one:
NIfTI and NRRD headers give shape, spacing and orientation without reading a voxel; PNG and
``.npy`` give the shape only (their spacing is ``None``). The parsers are the mask reader's
(:mod:`evaluator.readers.masks`), so an image and its mask are measured the same way.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from evaluator.readers.masks import (
    Grid,
    MaskDecodeError,
    _inflate_upto,
    _nifti_header,
    _npz,
    _nrrd_header,
)

__all__ = ["HEADER_EXTENSIONS", "axis_codes", "read_grid"]

#: the image formats whose grid can be read; other files are not compared with their mask
HEADER_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".png", ".npy", ".npz")
_HEAD_BYTES = 1 << 20


def _read_head(path: Path, n: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _nifti_grid(path: Path, *, compressed: bool) -> Grid:
    raw = _read_head(path, 64 << 10)
    head = _inflate_upto(raw, 540) if compressed else raw
    hdr, shape, _dtype, _offset = _nifti_header(head)
    try:
        zooms = tuple(float(z) for z in hdr.get_zooms())
        affine = np.asarray(hdr.get_best_affine(), dtype=np.float64)
    except Exception as exc:  # nibabel raises many types on a bad header
        raise MaskDecodeError(f"bad NIfTI header ({type(exc).__name__})") from exc
    return Grid(shape, zooms[: min(len(shape), 3)], affine, "nifti")


def _nrrd_grid(path: Path) -> Grid:
    header, _ = _nrrd_header(_read_head(path, _HEAD_BYTES))
    try:
        sizes = tuple(int(n) for n in np.asarray(header.get("sizes", ())).ravel())
    except (TypeError, ValueError, OverflowError):
        raise MaskDecodeError("invalid 'sizes' in the NRRD header") from None
    spacing: tuple[float, ...] | None = None
    affine = None
    directions = header.get("space directions")
    if directions is not None:
        try:
            rows = [np.asarray(r, dtype=np.float64) for r in directions]
        except (TypeError, ValueError):
            raise MaskDecodeError("invalid 'space directions' in the NRRD header") from None
        spatial = [r for r in rows if r.ndim == 1 and np.all(np.isfinite(r))]
        if spatial and all(r.shape == (len(spatial),) for r in spatial):
            spacing = tuple(float(np.linalg.norm(r)) for r in spatial)
            n = len(spatial)
            affine = np.eye(n + 1)
            affine[:n, :n] = np.stack(spatial, axis=1)
            # the image's spatial axes only (a channel axis has no direction: "none")
            sizes = tuple(s for s, r in zip(sizes, rows, strict=False) if r.ndim == 1) or sizes
    elif "spacings" in header:
        try:
            spacing = tuple(float(s) for s in np.asarray(header["spacings"]).ravel())
        except (TypeError, ValueError):
            raise MaskDecodeError("invalid 'spacings' in the NRRD header") from None
        if not all(math.isfinite(s) for s in spacing):
            spacing = None
    return Grid(sizes, spacing, affine, f"nrrd:{header.get('space', '')}")


def _png_grid(path: Path) -> Grid:
    from PIL import Image

    try:
        with Image.open(path, formats=["PNG"]) as im:
            width, height = im.size
    except Exception as exc:  # PIL raises many types on bad input
        raise MaskDecodeError(f"unreadable PNG ({type(exc).__name__})") from None
    return Grid((height, width), None, None, "")


def _npy_grid(path: Path) -> Grid:
    with path.open("rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, _ = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, _ = np.lib.format.read_array_header_2_0(fh)
        except Exception as exc:  # numpy raises ValueError and others on a bad header
            raise MaskDecodeError(f"unreadable NumPy header ({type(exc).__name__})") from None
    return Grid(tuple(int(n) for n in shape), None, None, "")


def read_grid(path: Path, extension: str, *, max_bytes: int = 4 << 30) -> Grid:
    """The grid of the image at ``path`` (``extension`` one of :data:`HEADER_EXTENSIONS`),
    from its header; ``.npz`` is the exception and is read whole (it has no separate header).
    Raises :class:`~evaluator.readers.masks.MaskDecodeError` with a one-line reason."""
    ext = extension.lower()
    try:
        if ext in (".nii.gz", ".nii"):
            return _nifti_grid(path, compressed=ext == ".nii.gz")
        if ext == ".nrrd":
            return _nrrd_grid(path)
        if ext == ".png":
            return _png_grid(path)
        if ext == ".npy":
            return _npy_grid(path)
        if ext == ".npz":
            arr, spacing = _npz(path.read_bytes(), max_bytes=max_bytes, expected_shape=None)
            return Grid(tuple(arr.shape), spacing, None, "")
    except MaskDecodeError:
        raise
    except OSError as exc:
        raise MaskDecodeError(f"cannot read the file ({exc.strerror})") from None
    except Exception as exc:
        raise MaskDecodeError(f"unreadable {ext} header ({type(exc).__name__})") from None
    raise MaskDecodeError(f"unsupported extension {ext}")


def axis_codes(affine: np.ndarray, space: str) -> str:
    """The orientation of a grid's axes as letters (``RAS``, ``LPS``...): nibabel's
    ``aff2axcodes`` for NIfTI, the same for NRRD in its own space."""
    import nibabel as nib

    n = affine.shape[0] - 1
    full = np.eye(4)
    full[:n, :n] = affine[:n, :n]
    try:
        codes = nib.orientations.aff2axcodes(full)  # type: ignore[no-untyped-call]
    except Exception:
        return "?"
    return "".join(c or "?" for c in codes[:n])
