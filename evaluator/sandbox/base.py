"""The one interface every sandbox backend implements, and the pieces they share."""

from __future__ import annotations

import abc
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from .outputs import OutputCheck
from .spec import Limits, RunResult, RunSpec, RunStatus

__all__ = [
    "NoSandbox",
    "SandboxBackend",
    "SandboxUnavailable",
    "copy_readable",
    "finished_result",
    "make_scratch_dir",
    "make_world_readable_copy",
    "near_full",
    "result_message",
    "sandbox_error",
    "tail_bytes",
]

SANDBOX_UID = 65534  # "nobody" in Debian's base-passwd, present in the evaluator image
SANDBOX_GID = 65534


class SandboxUnavailable(RuntimeError):
    """This installation cannot run code submissions (no usable backend, image missing, ...)."""


class SandboxBackend(abc.ABC):
    """Runs untrusted code with no network, a read-only root, limits and a validated ``/output``."""

    name: str = "abstract"

    @abc.abstractmethod
    def check(self) -> list[str]:
        """Problems that stop this backend from running submissions; empty when it can."""

    @abc.abstractmethod
    def run(self, spec: RunSpec) -> RunResult:
        """Run ``spec`` to completion (or to its limits). Never raises for the code's misbehaviour:
        that is a :class:`RunResult` with a status. Raises ``ValueError`` for a bad spec."""

    def can_run_images(self) -> bool:
        """Whether arbitrary container images (not only the evaluator image) can run here."""
        return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class NoSandbox(SandboxBackend):
    """A machine with neither Docker nor bubblewrap: refuses every code submission."""

    name = "none"
    MESSAGE = (
        "This installation cannot run code submissions (no Docker engine and no bubblewrap); "
        "prediction-file phases still work."
    )

    def __init__(self, reasons: list[str] | None = None) -> None:
        self.reasons = reasons or []

    def check(self) -> list[str]:
        return [self.MESSAGE, *self.reasons]

    def run(self, spec: RunSpec) -> RunResult:
        return RunResult(
            status=RunStatus.SANDBOX_ERROR,
            backend=self.name,
            exit_code=None,
            participant_message=self.MESSAGE,
            logs_tail="[sandbox backend: none] " + "; ".join(self.check()),
            wall_s=0.0,
        )


def tail_bytes(data: bytes, limit: int) -> str:
    """The last ``limit`` bytes of ``data`` as text (undecodable bytes replaced)."""
    if len(data) > limit:
        data = b"[... earlier output cut ...]\n" + data[-limit:]
    return data.decode("utf-8", errors="replace")


def near_full(total_bytes: int, limits: Limits) -> bool:
    """Whether ``/output`` was (practically) filled to its cap."""
    slack = max(1024 * 1024, limits.output_bytes // 100)
    return total_bytes >= limits.output_bytes - slack


def result_message(
    *,
    timed_out: bool,
    oom: bool,
    exit_code: int | None,
    output: OutputCheck | None,
    limits: Limits,
) -> tuple[RunStatus, str]:
    """The status and the participant's message, from the facts of a finished run.

    The message is fixed text plus numbers the participant knows; nothing the code wrote.
    """
    if timed_out:
        return RunStatus.TIME_LIMIT, f"Time limit exceeded ({limits.time_limit_s:g} s)."
    if oom:
        mib = limits.memory_bytes // (1024 * 1024)
        return RunStatus.OUT_OF_MEMORY, f"Out of memory (limit {mib} MiB)."
    if output is not None and output.full:
        return RunStatus.INVALID_OUTPUT, f"Invalid output: {output.participant_reason}."
    if exit_code != 0:
        return RunStatus.EXIT_CODE, f"The submission stopped with exit code {exit_code}."
    if output is None or not output.ok:
        reason = output.participant_reason if output is not None else "it could not be read"
        return RunStatus.INVALID_OUTPUT, f"Invalid output: {reason}."
    if not output.files:
        return RunStatus.INVALID_OUTPUT, "Invalid output: nothing was written to /output."
    return RunStatus.SUCCEEDED, f"Finished: {len(output.files)} file(s) written."


def sandbox_error(
    *, backend: str, header: str, started: float, message: str, detail: str
) -> RunResult:
    """The RunResult of a run the sandbox could not carry out (not the submission's fault)."""
    return RunResult(
        status=RunStatus.SANDBOX_ERROR,
        backend=backend,
        exit_code=None,
        participant_message=message,
        logs_tail=header + detail,
        wall_s=time.monotonic() - started,
        detail=detail,
    )


def finished_result(
    *,
    backend: str,
    timed_out: bool,
    oom: bool,
    exit_code: int | None,
    output: OutputCheck | None,
    limits: Limits,
    log_text: str,
    started: float,
    run_started: float,
    run_ended: float,
    teardown_s: float,
) -> RunResult:
    """The RunResult of a run that started, from its facts (every backend ends this way):
    status and message from :func:`result_message`, the organizers' log with a footer, times."""
    status, message = result_message(
        timed_out=timed_out, oom=oom, exit_code=exit_code, output=output, limits=limits
    )
    detail = output.detail if output is not None and not output.ok else ""
    footer = f"\n[sandbox: {status.value}, exit code {exit_code}{', ' + detail if detail else ''}]"
    return RunResult(
        status=status,
        backend=backend,
        exit_code=exit_code,
        participant_message=message,
        logs_tail=log_text + footer,
        wall_s=run_ended - run_started,
        setup_s=run_started - started,
        teardown_s=teardown_s,
        output_files=output.files if output is not None and output.ok else (),
        output_bytes=output.total_bytes if output is not None else 0,
        detail=detail,
    )


def _all_world_readable(root: Path) -> bool:
    for dirpath, dirnames, filenames in os.walk(root):
        mode = os.stat(dirpath).st_mode
        if mode & 0o005 != 0o005:
            return False
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode) and not st.st_mode & 0o004:
                return False
        del dirnames  # walk into all
    return True


def _ancestors_searchable(path: Path) -> bool:
    return all(os.stat(parent).st_mode & 0o001 for parent in path.resolve().parents)


def make_scratch_dir(prefix: str) -> Path:
    """A private per-run directory the sandbox user can traverse (0711) but not list."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o711)  # noqa: S103 -- traversable by uid 65534, not listable
    if not _ancestors_searchable(path):
        raise SandboxUnavailable(
            f"the temporary directory {path.parent} is not searchable by others"
        )
    return path


def make_world_readable_copy(source: Path, scratch: Path) -> Path:
    """``source`` if the sandbox user can read all of it, else a readable copy under ``scratch``.

    The sandbox runs as uid 65534, which cannot read a worker's 0600 files; inputs are copied, not
    re-permissioned in place. Symbolic links are copied as links (they resolve inside the sandbox).
    """
    if source.is_dir() and _ancestors_searchable(source) and _all_world_readable(source):
        return source
    target = Path(tempfile.mkdtemp(prefix="input-", dir=scratch))
    copy_readable(source, target)
    return target


def copy_readable(source: Path, target: Path) -> None:
    """Copy ``source`` (a folder's contents, or a file into the folder ``target``) with modes
    the sandbox user (uid 65534) can read; symbolic links are copied as links."""
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    else:
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / source.name)
    for dirpath, _dirnames, filenames in os.walk(target):
        os.chmod(dirpath, 0o755)  # noqa: S103 -- the sandbox user must read its inputs
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o644)
