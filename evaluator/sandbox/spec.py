"""What a sandboxed run is asked to do (:class:`RunSpec`) and what came of it (:class:`RunResult`).

These types are the whole contract between the platform (the Celery ``gpu`` task) and a backend.
They are plain frozen dataclasses with no Django in them.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "PREDICTION_SUFFIXES",
    "PROGRAM_SCORE_FILES",
    "SCORER_FILES",
    "Limits",
    "Mount",
    "OutputPolicy",
    "RunResult",
    "RunSpec",
    "RunStatus",
]

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# The prediction formats of DESIGN.md. Anything else a submission writes is refused.
PREDICTION_SUFFIXES: tuple[str, ...] = (".csv", ".nii.gz", ".nii", ".nrrd", ".png")
# What an organizer's scoring container may (and must) write.
SCORER_FILES: tuple[str, ...] = ("metrics.json",)
# What an organizer's Codabench/CodaLab scoring program may write (see programs.py).
PROGRAM_SCORE_FILES: tuple[str, ...] = (
    "scores.json",
    "scores.txt",
    "scores_per_case.csv",
    "detailed_results.html",
)


_RESERVED = frozenset({"", "/input", "/output", "/tmp", "/proc", "/dev", "/sys"})  # noqa: S108


class RunStatus(enum.StrEnum):
    SUCCEEDED = "succeeded"
    TIME_LIMIT = "time_limit"
    OUT_OF_MEMORY = "out_of_memory"
    EXIT_CODE = "exit_code"
    INVALID_OUTPUT = "invalid_output"
    SANDBOX_ERROR = "sandbox_error"


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits of one run. Sizes are bytes, times seconds."""

    time_limit_s: float = 600.0
    memory_bytes: int = 4 * GiB
    cpus: float = 1.0
    pids: int = 256
    gpus: int = 0
    output_bytes: int = 1 * GiB
    tmp_bytes: int = 256 * MiB
    logs_tail_bytes: int = 16 * KiB
    max_output_files: int = 100_000

    def __post_init__(self) -> None:
        if self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        if self.memory_bytes < 16 * MiB:
            raise ValueError("memory_bytes must be at least 16 MiB")
        if self.cpus <= 0:
            raise ValueError("cpus must be positive")
        if self.pids < 8:
            raise ValueError("pids must be at least 8")
        if self.gpus < 0:
            raise ValueError("gpus must not be negative")
        if self.output_bytes < 1 * MiB or self.tmp_bytes < 1 * MiB:
            raise ValueError("output_bytes and tmp_bytes must be at least 1 MiB")


@dataclass(frozen=True, slots=True)
class Mount:
    """A host directory (or file) mounted read-only into the sandbox.

    Only for trusted content: the model runner and the model file, or, for an organizer's scoring
    container only, the hidden labels at ``/reference``. Never give a participant's run a mount of
    labels or of anything beyond its own inputs.
    """

    source: Path
    target: str

    def __post_init__(self) -> None:
        if not self.target.startswith("/") or ".." in self.target.split("/"):
            raise ValueError(f"mount target must be an absolute path without '..': {self.target}")
        if self.target.rstrip("/") in _RESERVED:
            raise ValueError(f"mount target {self.target} is reserved")


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """Which files a run may leave in ``/output``.

    Names are checked on the host, after the run, before anything is handed to the scorer: only
    regular files and directories, no links, no hidden files, nothing outside the allowed names.
    ``any_name`` lifts the name rule (links, hidden files, depth, size and count limits still hold).
    """

    suffixes: tuple[str, ...] = PREDICTION_SUFFIXES
    exact_names: tuple[str, ...] = ()
    max_depth: int = 2
    any_name: bool = False

    @classmethod
    def predictions(cls) -> OutputPolicy:
        return cls()

    @classmethod
    def scorer(cls) -> OutputPolicy:
        """An organizer's scoring container: ``metrics.json`` and nothing else."""
        return cls(suffixes=(), exact_names=SCORER_FILES, max_depth=1)

    @classmethod
    def program_scores(cls) -> OutputPolicy:
        """An organizer's scoring program: ``scores.json``, ``scores.txt``,
        ``scores_per_case.csv``, ``detailed_results.html``, at the top of ``/output`` only."""
        return cls(suffixes=(), exact_names=PROGRAM_SCORE_FILES, max_depth=1)

    @classmethod
    def any_files(cls) -> OutputPolicy:
        """An organizer's ingestion program: any plain, non-hidden file name, at most one folder
        deep; still regular files only and within the run's size and file-count limits."""
        return cls(suffixes=(), exact_names=(), max_depth=2, any_name=True)

    def allows(self, relative_name: str) -> bool:
        if self.any_name:
            return True
        base = relative_name.rsplit("/", 1)[-1]
        if base in self.exact_names:
            return "/" not in relative_name
        return any(base.lower().endswith(s) and len(base) > len(s) for s in self.suffixes)


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One sandboxed run.

    ``image`` is a Docker image id or a name already on the worker (never pulled); ``None`` is the
    evaluator base image, which is what model-file submissions run in (the runner is then passed in
    ``mounts`` and started by ``command``). ``input_dir`` is mounted read-only at ``/input``;
    ``output_dir`` must be empty or absent and receives the validated contents of ``/output``.
    """

    input_dir: Path
    output_dir: Path
    image: str | None = None
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    output_policy: OutputPolicy = field(default_factory=OutputPolicy)
    label: str = "submission"


@dataclass(frozen=True, slots=True)
class RunResult:
    """What came of a run.

    ``participant_message`` is short fixed text plus numbers the participant already knows (limits,
    their exit code); it never quotes anything the code printed or named, so it cannot carry hidden
    data out. ``logs_tail`` is the bounded end of the run's output, for organizers only.
    """

    status: RunStatus
    backend: str
    exit_code: int | None
    participant_message: str
    logs_tail: str
    wall_s: float
    setup_s: float = 0.0
    teardown_s: float = 0.0
    output_files: tuple[str, ...] = ()
    output_bytes: int = 0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is RunStatus.SUCCEEDED
