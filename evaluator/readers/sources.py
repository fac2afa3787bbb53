"""Where case files come from: a folder, a zip archive, or a single file.

A :class:`CaseFiles` maps case ids (file names without their extension) to something that can
return the file's bytes. Files are read one case at a time, so a large submission never sits in
memory whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator._lru import recall, remember
from evaluator.errors import EvaluatorInputError, InvalidReference, InvalidSubmission
from evaluator.readers.safe_zip import UnsafeArchiveError, ZipLimits, iter_members, read_member

__all__ = [
    "MASK_EXTENSIONS",
    "CaseFile",
    "CaseFiles",
    "case_of",
    "digest_of",
    "error_class",
    "forget_digests",
    "known_digest",
    "list_case_files",
    "note_digest",
    "read_fd",
    "split_extension",
]

MASK_EXTENSIONS = (".nii.gz", ".nii", ".nrrd", ".png", ".npy", ".npz")
_IGNORED_DIRS = ("__MACOSX",)

ErrorClass = type[EvaluatorInputError]


def error_class(role: str) -> ErrorClass:
    """``InvalidReference`` for the reference, ``InvalidSubmission`` for predictions."""
    return InvalidReference if role == "reference" else InvalidSubmission


def split_extension(name: str, extensions: Iterable[str]) -> tuple[str, str] | None:
    """``("case_1", ".nii.gz")`` for ``case_1.nii.gz``; longest matching extension wins."""
    lower = name.lower()
    for ext in sorted(extensions, key=len, reverse=True):
        if lower.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)], ext
    return None


@dataclass(frozen=True)
class CaseFile:
    case_id: str
    extension: str
    display: str  # e.g. "case_1.nii.gz" or "preds.zip:case_1.nii.gz"; never a server path
    read: Callable[[], bytes]


@dataclass
class CaseFiles:
    files: dict[str, CaseFile]
    display: str
    _zip: zipfile.ZipFile | None = None

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> CaseFiles:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ignored(rel: str) -> bool:
    parts = rel.split("/")
    return parts[-1].startswith(".") or any(p in _IGNORED_DIRS for p in parts[:-1])


def _add(
    files: dict[str, CaseFile],
    rel: str,
    display: str,
    read: Callable[[], bytes],
    extensions: tuple[str, ...],
    err: ErrorClass,
    container: str,
) -> None:
    case_id, ext = case_of(rel, display, extensions, files, err)
    files[case_id] = CaseFile(case_id, ext, display, read)


def case_of(
    rel: str,
    display: str,
    extensions: Iterable[str],
    taken: Mapping[str, Any],
    err: ErrorClass = InvalidSubmission,
) -> tuple[str, str]:
    """The case id and extension a file stands for; refuses an unsupported type and a case id
    that ``taken`` (case id -> an entry with a ``display`` name) already holds."""
    extensions = tuple(extensions)
    base = rel.rsplit("/", 1)[-1]
    split = split_extension(base, extensions)
    if split is None:
        raise err(f"unsupported file type (expected one of {', '.join(extensions)})", file=display)
    case_id, ext = split
    if case_id in taken:
        shown = getattr(taken[case_id], "display", taken[case_id])
        raise err(f"duplicate case id: also given as {shown}", file=display, case=case_id)
    return case_id, ext


#: how a case file is opened: never through a symbolic link (one planted after the listing
#: fails to open), never blocking on a FIFO put where a file was, closed in any child process
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def read_fd(
    fd: int, max_bytes: int, display: str, err: ErrorClass, st: os.stat_result | None = None
) -> bytes:
    """All the bytes of an open file, refused by its size before reading when it is over
    ``max_bytes``, and read to its end but never more than one byte past the limit, so a file
    that grew after ``fstat`` is read whole or refused without being read whole. Plain
    ``os.read`` calls: a few times faster than ``Path.read_bytes`` for a submission's small
    files. ``st``: the file's ``fstat``, when the caller has it."""
    size = (st if st is not None else os.fstat(fd)).st_size
    if size > max_bytes:
        raise err(f"file size {size} bytes is over the limit {max_bytes}", file=display)
    limit = max_bytes + 1
    parts: list[bytes] = []
    got = 0
    step = min(size + 1, limit)  # the whole file and its end, in the usual case
    while got < limit:
        piece = os.read(fd, min(step, limit - got))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
        step = 1 << 20
    if got > max_bytes:
        raise err(f"file size is over the limit {max_bytes} bytes", file=display)
    return parts[0] if len(parts) == 1 else b"".join(parts)


# sha256 of files read by the readers here, by what identifies a file's content: device, inode,
# size, modification and change time (the last one cannot be set back by the file's owner). A
# report's digest of a folder (evaluator.scoring) takes each file's from here when the scorer has
# read it already, so a submission's files are read, and hashed, once, by the threads that score;
# every read hashes its bytes again (see _file_reader), so what scoring read is what is noted.
_digests: dict[tuple[int, ...], str] = {}
_digests_lock = threading.Lock()
#: file digests remembered (a 64-character string each): every file of a large reference
DIGESTS_KEPT = 4096


def _digest_key(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def known_digest(st: os.stat_result) -> str | None:
    """The remembered sha256 (hex) of the file whose ``stat`` is ``st``, or None."""
    with _digests_lock:
        known = recall(_digests, _digest_key(st))
    return None if known is None else str(known)


def note_digest(st: os.stat_result, digest: str) -> None:
    """Remember ``digest`` as the sha256 of the file whose ``stat`` is ``st``."""
    with _digests_lock:
        remember(_digests, _digest_key(st), digest, DIGESTS_KEPT)


_last_read = threading.local()


def digest_of(data: bytes) -> str | None:
    """The sha256 (hex) of ``data`` when it is the file this thread read last here (from a
    folder or as a single file), else None; asked once per read."""
    got = getattr(_last_read, "got", None)
    _last_read.got = None
    return got[1] if got is not None and got[0] is data else None


def forget_digests() -> None:
    """Drop every remembered file digest (a benchmark's "first submission")."""
    with _digests_lock:
        _digests.clear()


def _file_reader(path: Path, max_bytes: int, display: str, err: ErrorClass) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise err("symbolic links are not allowed", file=display) from exc
            raise err(
                f"cannot be read ({exc.strerror or type(exc).__name__})", file=display
            ) from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise err("not a regular file", file=display)
            data = read_fd(fd, max_bytes, display, err, st)
            # the bytes read are always hashed (here, on the scoring thread: hashlib lets go of
            # the GIL), never looked up by the file's times: a file rewritten within one tick
            # of the file system's clock, at the same size, must not pass for the old one
            digest = hashlib.sha256(data).hexdigest()
            _last_read.got = (data, digest)
            if len(data) == st.st_size and _digest_key(os.fstat(fd)) == _digest_key(st):
                note_digest(st, digest)  # unchanged while it was read: its content under st
            return data
        except OSError as exc:
            raise err(
                f"cannot be read ({exc.strerror or type(exc).__name__})", file=display
            ) from exc
        finally:
            os.close(fd)

    return read


def _walk(root: Path, err: ErrorClass) -> list[tuple[str, str, bool, bool]]:
    """Every entry below ``root`` as (relative path with "/", full path, is a symbolic link,
    is a folder), in the order of their path components (``sorted(root.rglob("*"))``'s).
    Symbolic links are listed, never followed; a folder that cannot be read is an error."""
    found: list[tuple[list[str], str, str, bool, bool]] = []
    stack = [(str(root), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for e in entries:
                    rel = prefix + e.name
                    link = e.is_symlink()
                    is_dir = not link and e.is_dir(follow_symlinks=False)
                    found.append((rel.split("/"), rel, e.path, link, is_dir))
                    if is_dir:
                        stack.append((e.path, rel + "/"))
        except OSError as exc:
            raise err(
                f"folder cannot be read ({exc.strerror or type(exc).__name__})",
                file=prefix.rstrip("/") or root.name,
            ) from exc
    found.sort(key=lambda f: f[0])
    return [(rel, full, link, is_dir) for _parts, rel, full, link, is_dir in found]


def list_case_files(
    path: Path,
    *,
    role: str,
    extensions: tuple[str, ...] = MASK_EXTENSIONS,
    limits: ZipLimits | None = None,
    display: str | None = None,
) -> CaseFiles:
    """List the case files of a folder (searched recursively), a ``.zip`` or a single file.

    Hidden files and ``__MACOSX`` folders are ignored; any other file must have one of
    ``extensions``. Symbolic links are refused (a sandboxed model could plant one pointing at a
    server file). Raises ``InvalidSubmission`` (or ``InvalidReference`` when ``role`` is
    ``"reference"``) naming the file and the problem.
    """
    limits = limits or ZipLimits()
    err = error_class(role)
    shown = display or path.name or str(path)
    files: dict[str, CaseFile] = {}
    if path.is_symlink():
        raise err("symbolic links are not allowed", file=shown)
    if path.is_dir():
        for rel, full, link, is_dir in _walk(path, err):
            if _ignored(rel):
                continue
            if link:
                raise err("symbolic links are not allowed", file=rel)
            if is_dir:
                continue
            read = _file_reader(Path(full), limits.max_member_bytes, rel, err)
            _add(files, rel, rel, read, extensions, err, shown)
        return CaseFiles(files, shown)
    if not path.exists():
        raise err("no such file or folder", file=shown)
    if path.suffix.lower() == ".zip":
        try:
            zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise err("not a readable zip archive", file=shown) from exc
        except (OSError, ValueError, EOFError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise err(f"not a readable zip archive ({reason})", file=shown) from exc
        try:
            members = list(iter_members(zf, limits=limits))
        except UnsafeArchiveError as exc:
            zf.close()
            raise err(exc.problem, file=f"{shown}:{exc.member}" if exc.member else shown) from exc
        for rel, info in members:
            if _ignored(rel):
                continue
            display = f"{shown}:{rel}"

            def read(info: zipfile.ZipInfo = info, display: str = display) -> bytes:
                try:
                    return read_member(zf, info, max_bytes=limits.max_member_bytes)
                except UnsafeArchiveError as exc:
                    raise err(exc.problem, file=display) from exc

            _add(files, rel, display, read, extensions, err, shown)
        return CaseFiles(files, shown, zf)
    read = _file_reader(path, limits.max_member_bytes, shown, err)
    _add(files, shown, shown, read, extensions, err, shown)
    return CaseFiles(files, shown)
