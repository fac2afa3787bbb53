"""Validate what a sandboxed run left in ``/output`` and copy it out.

Both backends hand the host a tar stream of ``/output`` (Docker: ``get_archive`` from the container
that holds the output volume; bubblewrap: the in-sandbox init writes one to a pipe). The stream was
produced by untrusted code, so it is read in stream mode, bounded in bytes, and every member is
checked before a byte of it is written: only regular files and directories with plain names, no
links or device files, nothing outside the allowed prediction formats, no ``metrics.json`` or other
self-reported score. Files are created with ``O_EXCL | O_NOFOLLOW`` under a fresh directory.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .spec import SCORER_FILES, Limits, OutputPolicy

__all__ = [
    "ChunkReader",
    "OutputCheck",
    "clear_dir",
    "collect_tar_stream",
    "ensure_empty_dir",
    "stream_limit",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
# Files that look like a submission scoring itself. Refused with their own message.
_SELF_SCORES = frozenset({*SCORER_FILES, "scores.json", "score.json", "results.json", "score.txt"})
_TAR_SLACK = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class OutputCheck:
    ok: bool
    files: tuple[str, ...] = ()
    total_bytes: int = 0
    participant_reason: str = ""
    detail: str = ""
    full: bool = False


class OutputLimitExceeded(Exception):
    pass


class ChunkReader:
    """A read-only file object over an iterator of byte chunks, refusing to go past ``limit``."""

    def __init__(self, chunks: Iterable[bytes], limit: int) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""
        self._limit = limit
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            self._buffer += chunk
            if self.consumed + len(self._buffer) > self._limit:
                raise OutputLimitExceeded
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        self.consumed += len(data)
        return data


def ensure_empty_dir(path: Path) -> None:
    """Create ``path`` (0755) or check that it is an empty real directory."""
    if path.is_symlink():
        raise ValueError(f"output directory {path} is a symbolic link")
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise ValueError(f"output directory {path} is not empty")


def clear_dir(dest: Path) -> None:
    """Remove everything inside ``dest`` (after a refusal: nothing partial reaches a scorer)."""
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _refuse(dest: Path, reason: str, detail: str, *, full: bool = False) -> OutputCheck:
    clear_dir(dest)
    return OutputCheck(ok=False, participant_reason=reason, detail=detail, full=full)


def collect_tar_stream(
    stream: IO[bytes] | ChunkReader,
    dest: Path,
    *,
    policy: OutputPolicy,
    limits: Limits,
    strip_prefix: str = "output",
) -> OutputCheck:
    """Copy the validated contents of a tar stream of ``/output`` into the empty directory ``dest``.

    On any refusal ``dest`` is left empty and the reason is fixed text safe for a participant (it
    never repeats a name the submission chose); ``detail`` names the member, for organizers.
    """
    total = 0
    files: list[str] = []
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:  # type: ignore[call-overload]
            for member in archive:
                name = member.name
                parts = [p for p in name.split("/") if p not in ("", ".")]
                if parts and parts[0] == strip_prefix:
                    parts = parts[1:]
                if not parts:
                    continue  # /output itself
                shown = "/".join(parts)[:200]
                if name.startswith("/") or ".." in parts:
                    return _refuse(dest, "a path that leaves /output", f"member {shown!r}")
                if not all(_NAME.match(p) for p in parts):
                    return _refuse(
                        dest,
                        "a file name that is not allowed (letters, digits, '.', '_', '-' only)",
                        f"member {shown!r}",
                    )
                if len(parts) > policy.max_depth:
                    return _refuse(dest, "folders nested too deep", f"member {shown!r}")
                relative = "/".join(parts)
                target = dest.joinpath(*parts)
                if member.isdir():
                    target.mkdir(mode=0o755, exist_ok=True)
                    continue
                if not member.isreg():
                    return _refuse(
                        dest,
                        "a link or special file (only regular files are allowed)",
                        f"member {shown!r} of type {member.type!r}",
                    )
                if parts[-1].lower() in _SELF_SCORES and not policy.allows(relative):
                    return _refuse(
                        dest,
                        f"it contains {parts[-1].lower()}: scores are computed by the evaluator, "
                        "never read from a submission",
                        f"member {shown!r}",
                    )
                if not policy.allows(relative):
                    allowed = ", ".join(policy.suffixes + policy.exact_names)
                    return _refuse(
                        dest,
                        f"a file of a type that is not allowed (allowed: {allowed})",
                        f"member {shown!r}",
                    )
                if len(files) >= limits.max_output_files:
                    return _refuse(dest, f"more than {limits.max_output_files} files", "")
                total += member.size
                if total > limits.output_bytes:
                    return _refuse(dest, _too_big(limits), f"{total} bytes", full=True)
                source = archive.extractfile(member)
                if source is None:
                    return _refuse(dest, "an unreadable file", f"member {shown!r}")
                target.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                files.append(relative)
    except OutputLimitExceeded:
        return _refuse(dest, _too_big(limits), "tar stream over the limit", full=True)
    except (tarfile.TarError, OSError, EOFError) as exc:
        return _refuse(dest, "an unreadable /output", f"{type(exc).__name__}: {exc}")
    return OutputCheck(ok=True, files=tuple(sorted(files)), total_bytes=total)


def _too_big(limits: Limits) -> str:
    return f"more than the output limit of {limits.output_bytes // (1024 * 1024)} MiB"


def stream_limit(limits: Limits) -> int:
    """Bytes of tar stream the host reads at most (data, headers, padding of the allowed files)."""
    return limits.output_bytes + _TAR_SLACK + 1024 * min(limits.max_output_files, 100_000)
