"""Sandboxed inference: run participants' model files and container images against hidden inputs.

Django-free. The platform uses::

    backend = get_backend()            # or get_backend("docker" | "bwrap" | "none")
    problems = backend.check()         # -> Django system check errors
    result = run_model_submission(model_path=..., input_dir=..., output_dir=...,
                                  input_spec=InputSpec(...), limits=Limits(...), backend=backend)
    scores = scoring_run(program=program_read(folder), reference_dir=..., results_dir=...,
                         output_dir=..., limits=..., backend=backend, label=...)
    image_id = load_image_tarball(path, client, TarballLimits())
    result = backend.run(RunSpec(input_dir=..., output_dir=..., image=image_id, limits=...))

See docs/sandbox.md for the threat model and what each backend enforces.
"""

from evaluator.runner.inputspec import InputSpec, Intensity, OutputKind

from .base import NoSandbox, SandboxBackend, SandboxUnavailable
from .bwrap_backend import BubblewrapBackend
from .docker_backend import DockerBackend
from .image import build_evaluator_image, evaluator_image_tag, evaluator_rootfs
from .models import ModelFormat, run_model_submission
from .programs import (
    Program,
    ProgramError,
    ProgramScores,
    ingestion_run,
    program_read,
    scoring_run,
    translate_command,
)
from .selection import BACKEND_NAMES, get_backend
from .spec import Limits, Mount, OutputPolicy, RunResult, RunSpec, RunStatus
from .tarball import InvalidImageTarball, TarballLimits, inspect_image_tarball, load_image_tarball

__all__ = [
    "BACKEND_NAMES",
    "BubblewrapBackend",
    "DockerBackend",
    "InputSpec",
    "Intensity",
    "InvalidImageTarball",
    "Limits",
    "ModelFormat",
    "Mount",
    "NoSandbox",
    "OutputKind",
    "OutputPolicy",
    "Program",
    "ProgramError",
    "ProgramScores",
    "RunResult",
    "RunSpec",
    "RunStatus",
    "SandboxBackend",
    "SandboxUnavailable",
    "TarballLimits",
    "build_evaluator_image",
    "evaluator_image_tag",
    "evaluator_rootfs",
    "get_backend",
    "ingestion_run",
    "inspect_image_tarball",
    "load_image_tarball",
    "program_read",
    "run_model_submission",
    "scoring_run",
    "translate_command",
]
