"""The baselines' interface: what a baseline gets (:class:`PhaseData`), what it is
(:class:`Baseline`), and the registry that lists those that apply to a phase.

A module defines its baselines and calls :func:`register` at import; :func:`baselines_for`
imports the built-in modules (trivial, classical, then the CNN ones where torch imports) so that
registry order is always trivial, classical, CNN.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Baseline", "PhaseData", "TrainCase", "baselines_for", "register", "registered"]


@dataclass(frozen=True)
class TrainCase:
    case_id: str
    input_path: Path | None  # image file (PNG/NIfTI/NRRD/npy), None for feature tables
    features: np.ndarray | None  # a feature-table row, None for image inputs
    label: int | None  # classification
    mask_path: Path | None  # segmentation reference mask (train split only)


@dataclass(frozen=True)
class PhaseData:
    task: str  # "classification" | "segmentation"
    input_kind: str  # "table" | "image2d" | "image3d"
    classes: list[str]
    train: list[TrainCase]
    test: list[TrainCase]  # label/mask_path are None here: test labels are never given
    seed: int
    work_dir: Path  # a private scratch folder for this run
    # model phases: the phase's input specification (evaluator.runner.inputspec); a baseline
    # that can serve it also leaves a TorchScript "model.pt" in work_dir (cnn.MODEL_FILE)
    input_spec: dict[str, Any] | None = None


@dataclass(frozen=True)
class Baseline:
    name: str  # shown on the leaderboard, e.g. "Random forest on image features"
    description: str  # one line: what it is
    family: str  # "trivial" | "classical" | "cnn"
    applies: Callable[[PhaseData], bool]
    # Writes a predictions file in work_dir: classification CSV case_id,score (binary) or
    # case_id,class_0..; segmentation a zip of one mask per test case named <case_id>.<ext> in
    # the format and grid of the input (see the evaluator readers).
    run: Callable[[PhaseData], Path]


_REGISTRY: dict[str, Baseline] = {}
_BUILTIN = ("challenges.baselines.trivial", "challenges.baselines.classical")


def register(b: Baseline) -> Baseline:
    """Add ``b`` to the registry (a second registration under the same name replaces the
    first, keeping its place, so re-importing a module is harmless)."""
    if b.family not in ("trivial", "classical", "cnn"):
        raise ValueError(f"{b.name}: unknown baseline family {b.family!r}")
    _REGISTRY[b.name] = b
    return b


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(module)
    try:
        import torch  # noqa: F401
    except Exception:  # not installed (the web image), or broken: no CNN baselines
        return
    try:
        importlib.import_module("challenges.baselines.cnn")
    except ImportError as exc:
        logger.warning("CNN baselines not available: %s", exc)


def registered() -> list[Baseline]:
    """Every registered baseline, in registry order."""
    _load_builtin()
    return list(_REGISTRY.values())


def baselines_for(data: PhaseData) -> list[Baseline]:
    """The baselines that apply to ``data``, in registry order (trivial, classical, CNN)."""
    return [b for b in registered() if b.applies(data)]
