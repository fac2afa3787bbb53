"""Reading zip archives that come from untrusted people, safely.

A standalone helper (standard library only) that the evaluator, the challenge bundle importer and
the sandbox share. It refuses members with an absolute path, a ``..`` component, a drive letter or a
backslash, symbolic links, too many members, and members or archives whose *actual* uncompressed
size passes a limit (the sizes declared in the archive are checked first, then every read is
bounded, because declared sizes can lie).
"""

from __future__ import annotations

import posixpath
import re
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "UnsafeArchiveError",
    "ZipLimits",
    "check_member_name",
    "iter_members",
    "read_member",
    "safe_extract",
]

_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """The archive is unsafe or too large; ``member`` names the offending entry, if any."""

    def __init__(self, problem: str, *, member: str | None = None):
        self.problem = problem
        self.member = member
        super().__init__(f"zip entry {member!r}: {problem}" if member else problem)


@dataclass(frozen=True)
class ZipLimits:
    """Limits on an archive; the defaults suit a submission of 3-D masks."""

    max_members: int = 100_000
    max_member_bytes: int = 4 << 30
    max_total_bytes: int = 32 << 30


def check_member_name(name: str) -> str:
    """Return the normalised relative path of a member or raise :class:`UnsafeArchiveError`."""
    if not name or "\x00" in name:
        raise UnsafeArchiveError("empty name or NUL byte in the name", member=name)
    if "\\" in name:
        raise UnsafeArchiveError("backslash in the path", member=name)
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchiveError("absolute path", member=name)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafeArchiveError("'..' in the path", member=name)
    return posixpath.join(*parts) if parts else ""


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return mode != 0 and stat.S_ISLNK(mode)


def iter_members(
    zf: zipfile.ZipFile, *, limits: ZipLimits | None = None
) -> Iterator[tuple[str, zipfile.ZipInfo]]:
    """Yield ``(normalised name, info)`` of every regular file in the archive, after checking
    every member's name, type and declared size, and the declared total, up front."""
    limits = limits or ZipLimits()
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchiveError(f"{len(infos)} entries, more than the limit {limits.max_members}")
    total = 0
    checked: list[tuple[str, zipfile.ZipInfo]] = []
    for info in infos:
        name = check_member_name(info.filename)
        if _is_symlink(info):
            raise UnsafeArchiveError("symbolic links are not allowed", member=info.filename)
        if info.is_dir():
            continue
        if info.file_size > limits.max_member_bytes:
            raise UnsafeArchiveError(
                f"uncompressed size {info.file_size} bytes is over the limit "
                f"{limits.max_member_bytes}",
                member=info.filename,
            )
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"archive uncompressed size is over the limit {limits.max_total_bytes} bytes"
            )
        checked.append((name, info))
    yield from checked


def _reason(exc: BaseException) -> str:
    """A short reason from a decoder's exception, without anything that looks like a path."""
    text = " ".join(str(exc).split())[:120]
    return "corrupt data" if "/" in text else text


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, max_bytes: int) -> bytes:
    """Read one member, stopping as soon as more than ``max_bytes`` come out."""
    if info.file_size > max_bytes:
        raise UnsafeArchiveError(
            f"uncompressed size {info.file_size} bytes is over the limit {max_bytes}",
            member=info.filename,
        )
    chunks: list[bytes] = []
    got = 0
    try:
        with zf.open(info) as fh:
            while True:
                block = fh.read(min(_CHUNK, max_bytes + 1 - got))
                if not block:
                    break
                got += len(block)
                if got > max_bytes:
                    raise UnsafeArchiveError(
                        f"uncompressed size is over the limit {max_bytes} bytes",
                        member=info.filename,
                    )
                chunks.append(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
        # corrupt deflate streams, bad CRCs, encrypted members, unknown compression methods
        raise UnsafeArchiveError(
            f"cannot be read ({type(exc).__name__}: {_reason(exc)})", member=info.filename
        ) from exc
    except OSError as exc:
        raise UnsafeArchiveError(
            f"cannot be read ({exc.strerror or type(exc).__name__})", member=info.filename
        ) from exc
    return b"".join(chunks)


def safe_extract(
    archive: str | Path, dest: str | Path, *, limits: ZipLimits | None = None
) -> list[Path]:
    """Extract every regular file of ``archive`` under ``dest``; returns the written paths.

    Writes nothing outside ``dest``; on any problem raises :class:`UnsafeArchiveError` (files
    written before the problem was found are left for the caller to remove with ``dest``).
    """
    limits = limits or ZipLimits()
    dest = Path(dest)
    root = dest.resolve()
    written: list[Path] = []
    total = 0
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise UnsafeArchiveError(f"not a readable zip archive ({_reason(exc)})") from exc
    except OSError as exc:
        raise UnsafeArchiveError(
            f"not a readable zip archive ({exc.strerror or type(exc).__name__})"
        ) from exc
    with zf:
        for name, info in iter_members(zf, limits=limits):
            target = (root / name).resolve()
            if root != target and root not in target.parents:
                raise UnsafeArchiveError("path leaves the destination", member=info.filename)
            budget = min(limits.max_member_bytes, limits.max_total_bytes - total)
            data = read_member(zf, info, max_bytes=budget)
            total += len(data)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(target)
    return written
