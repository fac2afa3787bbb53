"""Fixtures for the evaluator tests (no Django needed)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from evaluator.synthetic import write_nifti

WriteMasks = Callable[[Path, dict[str, np.ndarray]], Path]


@pytest.fixture
def write_masks() -> WriteMasks:
    """Write ``{case_id: array}`` as ``<case_id>.nii.gz`` with spacing (1, 1, 1) into a folder."""

    def write(folder: Path, masks: dict[str, np.ndarray], spacing=(1.0, 1.0, 1.0)) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for case_id, arr in masks.items():
            write_nifti(folder / f"{case_id}.nii.gz", arr.astype(np.uint8), spacing)
        return folder

    return write


@pytest.fixture
def write_csv() -> Callable[[Path, str], Path]:
    def write(path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write
