"""The evaluator base image: where its recipe lives, its tag, its root file system, how to build it.

The recipe is ``platform/evaluator-image/`` (``build.sh``, ``debian-packages.txt``,
``requirements.txt``); its tag is ``scanbench/evaluator-base:<first 16 hex of the recipe's
sha256>``, computed here exactly as ``build.sh`` computes it. The built root file system is kept in
a cache directory: the Docker backend uses the imported image, the bubblewrap backend the directory.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

__all__ = [
    "IMAGE_REPOSITORY",
    "build_evaluator_image",
    "evaluator_image_tag",
    "evaluator_rootfs",
    "recipe_dir",
    "recipe_hash",
]

IMAGE_REPOSITORY = "scanbench/evaluator-base"
_RECIPE_FILES = ("build.sh", "debian-packages.txt", "requirements.txt")


def recipe_dir() -> Path:
    """``platform/evaluator-image`` of this checkout, or ``$SCANBENCH_IMAGE_RECIPE``."""
    configured = os.environ.get("SCANBENCH_IMAGE_RECIPE")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2] / "platform" / "evaluator-image"


def recipe_hash(directory: Path | None = None) -> str:
    directory = directory or recipe_dir()
    digest = hashlib.sha256()
    for name in _RECIPE_FILES:
        digest.update(name.encode() + b"\0")
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:16]


def evaluator_image_tag() -> str:
    """The tag of the evaluator base image; ``$SCANBENCH_EVALUATOR_IMAGE`` overrides it."""
    configured = os.environ.get("SCANBENCH_EVALUATOR_IMAGE")
    if configured:
        return configured
    return f"{IMAGE_REPOSITORY}:{recipe_hash()}"


def _cache_dir() -> Path:
    configured = os.environ.get("SCANBENCH_IMAGE_CACHE")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:  # as build.sh: reachable by uid 65534, unlike root's home
        return Path("/var/cache/scanbench/evaluator-image")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "scanbench" / "evaluator-image"


def evaluator_rootfs() -> Path:
    """The evaluator root file system (for bubblewrap); ``$SCANBENCH_ROOTFS`` overrides it."""
    configured = os.environ.get("SCANBENCH_ROOTFS")
    if configured:
        return Path(configured)
    return _cache_dir() / f"rootfs-{recipe_hash()}"


def build_evaluator_image(*, python: str | None = None, timeout_s: float = 1800) -> str:
    """Run the recipe's ``build.sh`` (a no-op when the image and root exist); returns the tag.

    Needs root (debootstrap) and the Debian mirror; a CPython 3.11 with pip for ``python``.
    """
    env = dict(os.environ)
    if python:
        env["PYTHON"] = python
    completed = subprocess.run(
        ["/bin/sh", str(recipe_dir() / "build.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"evaluator image build failed:\n{completed.stderr[-4000:]}")
    return completed.stdout.strip().splitlines()[-1]
