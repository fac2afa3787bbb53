"""Choosing a backend: by name, or automatically (Docker if an engine answers, else bubblewrap)."""

from __future__ import annotations

import os

from .base import NoSandbox, SandboxBackend
from .bwrap_backend import BubblewrapBackend
from .docker_backend import DockerBackend

__all__ = ["BACKEND_NAMES", "get_backend"]

BACKEND_NAMES = ("auto", "docker", "bwrap", "kubernetes", "none")


def get_backend(name: str | None = None) -> SandboxBackend:
    """The backend called ``name``; ``None`` reads ``$SCANBENCH_SANDBOX_BACKEND`` (or ``auto``).

    ``auto``: Docker if an engine answers and has the evaluator image, else bubblewrap if it can
    create a sandbox here, else :class:`NoSandbox`, which refuses code submissions with a plain
    message. A named backend is returned even when it cannot run; its ``check()`` says why (the
    platform turns that into a system check error at start-up).
    """
    name = (name or os.environ.get("SCANBENCH_SANDBOX_BACKEND") or "auto").strip().lower()
    if name == "docker":
        return DockerBackend()
    if name in ("bwrap", "bubblewrap"):
        return BubblewrapBackend()
    if name == "kubernetes":  # never chosen by auto; docs/kubernetes.md
        from .k8s_backend import KubernetesBackend  # the client is optional

        return KubernetesBackend()
    if name == "none":
        return NoSandbox()
    if name != "auto":
        raise ValueError(
            f"unknown sandbox backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}"
        )
    reasons: list[str] = []
    for candidate in (DockerBackend(), BubblewrapBackend()):
        problems = candidate.check()
        if not problems:
            return candidate
        reasons += [f"{candidate.name}: {p}" for p in problems]
    return NoSandbox(reasons)
