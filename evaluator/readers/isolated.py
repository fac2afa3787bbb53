"""Decoding a participant's files in a separate, locked-down process.

Participant bytes are hostile: a file format can name another file, inflate to gigabytes or make
a parser slow. So the platform never parses them in the process that holds references. A
:class:`Decoder` forks a child from a clean fork server (a fresh interpreter that has imported the
readers and nothing else: no Django, no reference, no database connection), and the child:

1. opens the predictions (a file or a folder) while it still can, then
2. locks itself down, as far as the machine allows (each step is recorded in ``isolation``):
   a new mount and network namespace (a user namespace too when not root) in which an empty,
   read-only tmpfs covers the private data, the upload and database folders, ``/proc``, ``/run``,
   ``/tmp`` and the home folders, so none of them has a path; no network interface; uid/gid
   65534 when the worker is root; ``no_new_privs``; rlimits on address space, CPU seconds,
   written file size (zero: the decoder writes nothing) and core dumps;
3. decodes what the trusted side asks for, one case at a time, and sends back only plain data:
   a JSON header and the raw bytes of a label array (or of a probability table). Nothing the
   child sends is unpickled; the trusted side checks every shape, type and size it receives.

Any fault in the child (an exception, the memory or CPU limit, the wall-clock limit, a crash) is
the participant's: it becomes :class:`~evaluator.errors.InvalidSubmission` with a one-line reason
that names no server path.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import math
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from evaluator.errors import EvaluatorInputError, InvalidSubmission, one_line
from evaluator.metrics.surface import MaskSummary
from evaluator.readers.masks import (
    Grid,
    Mask,
    MaskDecodeError,
    RowsBuffer,
    decode_mask,
    decode_rows,
    pack_mask,
    restore_rows,
    reused_voxel_memory,
)
from evaluator.readers.safe_zip import UnsafeArchiveError, ZipLimits, iter_members, read_member
from evaluator.readers.sources import MASK_EXTENSIONS, case_of, read_fd

__all__ = ["DecodeLimits", "Decoder", "decode_table_isolated"]

#: paths covered in the child whatever the caller names (they hold sockets, secrets, other users)
DEFAULT_HIDDEN = ("/proc", "/run", "/var/run", "/tmp", "/dev/shm", "/home", "/root", "/srv")  # noqa: S108
_NOBODY = 65534
_HEADER_MAX = 1 << 20
_ALLOWED_KINDS = "biuf"


@dataclass(frozen=True)
class DecodeLimits:
    """Limits of the decoding process. ``memory_bytes`` is added to the address space the
    interpreter already uses when the child starts; ``hidden`` are host paths (private data,
    uploads, the database folder) the child must not see, on top of :data:`DEFAULT_HIDDEN`."""

    memory_bytes: int = 2 << 30
    cpu_seconds: int = 600
    wall_seconds: float = 900.0
    hidden: tuple[str, ...] = ()
    zip_limits: ZipLimits = field(default_factory=ZipLimits)
    table_bytes: int = 256 << 20


# ------------------------------------------------------------------------------ the zygote

_PRELOAD = (
    "evaluator.readers.tables",
    "nibabel",
    "nrrd",
    "PIL.PngImagePlugin",
    "encodings.utf_8_sig",
    "encodings.ascii",
    "encodings.latin_1",
    "encodings.cp437",
    "encodings.idna",
    "bz2",
    "csv",
)


class _Zygote:
    """A clean interpreter, started once per worker process with an empty environment, that has
    imported the readers and nothing else (no Django, no reference, no database connection or
    secret); every decoding child is forked from it, so starting one costs a fork, not an
    interpreter start. Requests are JSON plus one socket (``SCM_RIGHTS``); nothing is pickled."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._pid = 0

    def _start(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        root = str(Path(__file__).resolve().parents[2])
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": root, "PYTHONDONTWRITEBYTECODE": "1"}
        env.update({k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ")})
        code = (
            f"from evaluator.readers.isolated import _zygote_main; _zygote_main({child.fileno()})"
        )
        self._proc = subprocess.Popen(  # our own interpreter and module
            [sys.executable, "-s", "-c", code],
            pass_fds=[child.fileno()],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.close()
        self._sock = parent
        self._pid = os.getpid()

    def spawn(self, request: dict[str, Any]) -> Connection:
        """Fork a decoding child for ``request``; return the trusted side's connection to it."""
        with self._lock:
            for attempt in range(2):
                if (
                    self._sock is None
                    or self._pid != os.getpid()
                    or (self._proc is not None and self._proc.poll() is not None)
                ):
                    self._start()
                mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    assert self._sock is not None
                    payload = json.dumps(request).encode()
                    socket.send_fds(
                        self._sock, [len(payload).to_bytes(4, "big") + payload], [theirs.fileno()]
                    )
                    theirs.close()
                    return Connection(mine.detach())
                except OSError:
                    mine.close()
                    theirs.close()
                    self._sock = None
                    if attempt:
                        raise
            raise RuntimeError("unreachable")


_zygote = _Zygote()


def _warm_up() -> None:
    """Parse one small table of each kind the children parse, so that what the parsers set up
    lazily on their first call (pandas' CSV and string machinery) is done once here, not again
    in every child."""
    from evaluator.readers.tables import read_predictions_csv

    for text in (b"case_id,score\na,0.5\nb,1\n", b"case_id,class_0,class_1\na,0.5,0.5\n"):
        with contextlib.suppress(Exception):
            read_predictions_csv(text, "warm-up", classes=[0, 1])
    with contextlib.suppress(Exception):
        read_predictions_csv(b"case_id,label\na,1\n", "warm-up", classes=[0, 1, 2])


def _warm_up_masks() -> None:
    """Decode a small mask of each format and layout the children decode, and pack it as a
    child sends it: Numba's compiled loops (its own import included) are loaded here, before
    any child locks itself down. A locked-down child may not be able to import what Numba
    imports lazily (as uid 65534 it cannot read an interpreter installed under /root), and
    otherwise every child would import it again (about 0.4 s); without this, its decoding
    falls back to the slow NumPy paths. Run on the zygote's first mask request, so that a
    worker that only ever scores tables never loads Numba (about 0.4 s and 120 MB)."""
    import gzip
    import io

    import nibabel as nib
    from PIL import Image

    from evaluator.metrics import _compiled

    if _compiled.store_rows is None:
        return
    masks_3d = [np.zeros((16, 8, 4), np.uint8), np.zeros((24, 8, 4), np.uint8)]
    masks_3d[0][3:9, 2:6, 1:3] = 1
    masks_3d[1][5:7, 1:3, 0:2] = 2
    files: list[tuple[bytes, str]] = []
    for data in (*masks_3d, masks_3d[0][:, :, 0]):
        raw = nib.Nifti1Image(data, np.eye(4)).to_bytes()  # type: ignore[no-untyped-call]
        files += [(gzip.compress(raw), ".nii.gz"), (raw, ".nii")]
        npy = io.BytesIO()
        np.save(npy, np.ascontiguousarray(data))
        files.append((npy.getvalue(), ".npy"))
    png = io.BytesIO()
    Image.fromarray(masks_3d[0][:, :, 1] * 255).save(png, format="PNG")
    files.append((png.getvalue(), ".png"))
    buffer = RowsBuffer()
    with reused_voxel_memory():
        # the same size again with other rows: a reused buffer has its old rows cleared
        for raw, ext in files + files[:2]:
            with contextlib.suppress(MaskDecodeError):
                decode_rows(raw, ext, buffer)
                mask = decode_mask(raw, ext)
                pack_mask(mask)
                del mask


def _zygote_main(fd: int) -> None:
    """The zygote's loop: receive a request and a socket, fork a child for it. Ends with its
    parent (the control socket closes)."""
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    _warm_up()
    masks_warm = False
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    control = socket.socket(fileno=fd)
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(control, 1 << 20, 1)
        except OSError:
            return
        if not msg:
            return
        if not fds:
            continue
        size = int.from_bytes(msg[:4], "big")
        while len(msg) < 4 + size:
            more = control.recv(4 + size - len(msg))
            if not more:
                return
            msg += more
        request = json.loads(msg[4 : 4 + size])
        if request.get("task") == "segmentation" and not masks_warm:
            # the first mask request of this zygote loads the compiled loops, once
            with contextlib.suppress(Exception):
                _warm_up_masks()
            masks_warm = True
        pid = os.fork()
        if pid == 0:  # the child
            code = 0
            try:
                control.close()
                _child(Connection(fds[0]), request)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        os.close(fds[0])


# ------------------------------------------------------------------------------ the child side

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8
_MS_REC = 16384
_MS_PRIVATE = 1 << 18
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_DUMPABLE = 4


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    ulong, cstr = ctypes.c_ulong, ctypes.c_char_p
    libc.unshare.argtypes = [ctypes.c_int]
    libc.mount.argtypes = [cstr, cstr, cstr, ulong, ctypes.c_void_p]
    libc.prctl.argtypes = [ctypes.c_int, ulong, ulong, ulong, ulong]
    return libc


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _lock_down(limits: DecodeLimits) -> list[str]:
    """Apply every restriction this machine allows to the current (child) process; return what
    was applied. Call after the inputs are open and before any participant byte is parsed."""
    applied: list[str] = []
    try:
        with open("/proc/self/statm") as fh:
            vm_now = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        vm_now = 1 << 30
    root = os.geteuid() == 0
    libc = _libc() if os.name == "posix" else None
    if libc is not None and hasattr(libc, "unshare"):
        uid, gid = os.geteuid(), os.getegid()
        # A process whose credentials changed (a worker that dropped root) is not dumpable, so
        # its /proc/self files belong to root and it could not write its own uid map.
        libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        flags = _CLONE_NEWNS | _CLONE_NEWNET | (0 if root else _CLONE_NEWUSER)
        if libc.unshare(flags) == 0:
            applied.append("network namespace")
            if not root:
                try:
                    _write("/proc/self/setgroups", "deny")
                    _write("/proc/self/uid_map", f"{uid} {uid} 1")
                    _write("/proc/self/gid_map", f"{gid} {gid} 1")
                except OSError:
                    pass
            if libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None) == 0:
                hidden = []
                # The interpreter's own files (its standard library, the virtual environment)
                # stay visible: a default path that holds one of them is left alone.
                needed = [
                    os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, *sys.path) if p
                ]
                for path in (*limits.hidden, *DEFAULT_HIDDEN):
                    if not os.path.isdir(path):
                        continue
                    real = os.path.realpath(path)
                    if path in DEFAULT_HIDDEN and any(
                        n == real or n.startswith(real.rstrip("/") + "/") for n in needed
                    ):
                        continue
                    flags_m = _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
                    if (
                        libc.mount(b"tmpfs", path.encode(), b"tmpfs", flags_m, b"size=4k,mode=000")
                        == 0
                    ):
                        hidden.append(path)
                applied.append(f"{len(hidden)} paths hidden")
                # Without root, the new user namespace holds every capability over the mounts
                # just made, so code in this process could unmount them again. One more user
                # and mount namespace locks them (mounts inherited from a more privileged
                # namespace cannot be unmounted or moved).
                if not root and libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS) == 0:
                    applied.append("mounts locked")
    if root:
        os.setgroups([])
        os.setgid(_NOBODY)
        os.setuid(_NOBODY)
        applied.append("uid 65534")
    if libc is not None and hasattr(libc, "prctl"):
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            applied.append("no_new_privs")
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    resource.setrlimit(resource.RLIMIT_AS, (vm_now + limits.memory_bytes,) * 2)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    applied.append("rlimits")
    return applied


@dataclass(frozen=True)
class _Entry:
    """One case file in the child: its display name, extension and a bounded reader."""

    display: str
    extension: str
    read: Callable[[int], bytes]  # the argument is the most bytes that may come out


class _Source:
    """The predictions as the child opened them before locking down: a file or a folder fd."""

    def __init__(self, path: str, display: str):
        self.display = display
        try:
            self.fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            reason = "symbolic links are not allowed" if exc.errno == 40 else "cannot be opened"
            raise InvalidSubmission(reason, file=display) from None
        st = os.fstat(self.fd)
        self.is_dir = stat.S_ISDIR(st.st_mode)
        self.size = st.st_size
        self.is_zip = not self.is_dir and display.lower().endswith(".zip")

    def file(self) -> Any:
        return os.fdopen(os.dup(self.fd), "rb")

    def zip(self) -> zipfile.ZipFile:
        """The source as a zip archive; refuses one that cannot be opened as such."""
        try:
            return zipfile.ZipFile(self.file())
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            raise InvalidSubmission("not a readable zip archive", file=self.display) from None


def _read_fd(fd: int, max_bytes: int, display: str) -> bytes:
    return read_fd(fd, max_bytes, display, InvalidSubmission)


def _folder_files(src: _Source, extensions: Sequence[str], limits: ZipLimits) -> dict[str, _Entry]:
    """List a folder through its descriptor (never by a path), refusing links; files are opened
    relative to the folder's descriptor with ``O_NOFOLLOW``."""
    files: dict[str, _Entry] = {}
    count = 0
    for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=src.fd, follow_symlinks=False):
        rel_dir = os.path.normpath(dirpath)
        for d in dirnames:
            if stat.S_ISLNK(os.stat(d, dir_fd=dirfd, follow_symlinks=False).st_mode):
                raise InvalidSubmission("symbolic links are not allowed", file=d)
        dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX")
        for name in sorted(filenames):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if name.startswith("."):
                continue
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                raise InvalidSubmission("symbolic links are not allowed", file=rel)
            if not stat.S_ISREG(st.st_mode):
                continue
            count += 1
            if count > limits.max_members:
                raise InvalidSubmission(f"more than {limits.max_members} files", file=src.display)
            case_id, ext = case_of(rel, rel, extensions, files)

            def read(max_bytes: int, rel: str = rel) -> bytes:
                fd = os.open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src.fd)
                try:
                    return _read_fd(fd, min(max_bytes, limits.max_member_bytes), rel)
                finally:
                    os.close(fd)

            files[case_id] = _Entry(rel, ext, read)
    return files


def _zip_files(
    src: _Source, extensions: Sequence[str], limits: ZipLimits
) -> tuple[dict[str, _Entry], zipfile.ZipFile]:
    zf = src.zip()
    files: dict[str, _Entry] = {}
    try:
        members = list(iter_members(zf, limits=limits))
    except UnsafeArchiveError as exc:
        raise InvalidSubmission(
            exc.problem, file=f"{src.display}:{exc.member}" if exc.member else src.display
        ) from None
    for rel, info in members:
        base = rel.rsplit("/", 1)[-1]
        if base.startswith(".") or "__MACOSX" in rel.split("/")[:-1]:
            continue
        display = f"{src.display}:{rel}"
        case_id, ext = case_of(rel, display, extensions, files)

        def read(max_bytes: int, info: zipfile.ZipInfo = info, display: str = display) -> bytes:
            try:
                return read_member(zf, info, max_bytes=min(max_bytes, limits.max_member_bytes))
            except UnsafeArchiveError as exc:
                raise InvalidSubmission(exc.problem, file=display) from None

        files[case_id] = _Entry(display, ext, read)
    return files, zf


def _mask_files(src: _Source, limits: ZipLimits) -> dict[str, _Entry]:
    if src.is_dir:
        return _folder_files(src, MASK_EXTENSIONS, limits)
    if src.is_zip:
        return _zip_files(src, MASK_EXTENSIONS, limits)[0]
    case_id, ext = case_of(src.display, src.display, MASK_EXTENSIONS, {})

    def read(max_bytes: int) -> bytes:
        os.lseek(src.fd, 0, os.SEEK_SET)
        return _read_fd(src.fd, min(max_bytes, limits.max_member_bytes), src.display)

    return {case_id: _Entry(src.display, ext, read)}


def _csv_bytes(src: _Source, limits: ZipLimits) -> tuple[bytes, str]:
    if src.is_dir:
        csvs = sorted(n for n in os.listdir(src.fd) if n.lower().endswith(".csv"))
        if len(csvs) != 1:
            raise InvalidSubmission(
                f"expected exactly one .csv file in the folder, found {len(csvs)}", file=src.display
            )
        shown = f"{src.display}/{csvs[0]}"
        fd = os.open(csvs[0], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src.fd)
        try:
            return _read_fd(fd, limits.max_member_bytes, shown), shown
        finally:
            os.close(fd)
    if src.is_zip:
        zf = src.zip()
        try:
            members = [
                (n, i)
                for n, i in iter_members(zf, limits=limits)
                if n.lower().endswith(".csv") and not n.rsplit("/", 1)[-1].startswith(".")
            ]
            if len(members) != 1:
                raise InvalidSubmission(
                    f"expected exactly one .csv file in the archive, found {len(members)}",
                    file=src.display,
                )
            name, info = members[0]
            return read_member(zf, info, max_bytes=limits.max_member_bytes), f"{src.display}:{name}"
        except UnsafeArchiveError as exc:
            raise InvalidSubmission(
                exc.problem, file=f"{src.display}:{exc.member}" if exc.member else src.display
            ) from None
    return _read_fd(src.fd, limits.max_member_bytes, src.display), src.display


def _file_bound(expected: tuple[int, ...] | None, cap: int) -> int:
    """The most bytes a mask file of the expected shape can need: 8 bytes a voxel (the widest
    type), 1 % for a compressor's worst case and 1 MiB of header; so a file is refused by its
    size before it is read whole."""
    if expected is None:
        return cap
    return min(cap, math.prod(expected) * 8 * 101 // 100 + (1 << 20))


def _send(conn: Connection, header: dict[str, Any], payload: Any = None) -> None:
    conn.send_bytes(json.dumps(header).encode())
    if payload is not None:
        conn.send_bytes(payload)


def _error_header(exc: BaseException, case: str | None = None) -> dict[str, Any]:
    if isinstance(exc, EvaluatorInputError):
        return {"ok": False, "problem": exc.problem, "file": exc.file, "case": exc.case or case}
    if isinstance(exc, MemoryError):
        return {"ok": False, "problem": "decoding needs more memory than the limit", "case": case}
    return {"ok": False, "problem": f"cannot be decoded ({type(exc).__name__})", "case": case}


def _child(conn: Connection, request: dict[str, Any]) -> None:
    """Entry point of the decoding child (runs in the process forked from the zygote)."""
    try:
        task, path, display = str(request["task"]), str(request["path"]), str(request["display"])
        limits = _limits_from_json(request["limits"])
        classes = [int(c) for c in request.get("classes", [])]
        src = _Source(path, display)
        applied = _lock_down(limits)
        if task == "classification":
            from evaluator.readers.tables import read_predictions_csv

            zl = limits.zip_limits
            raw, shown = _csv_bytes(
                src,
                ZipLimits(
                    zl.max_members, min(zl.max_member_bytes, limits.table_bytes), zl.max_total_bytes
                ),
            )
            pred = read_predictions_csv(raw, shown, classes=classes)
            probs = np.ascontiguousarray(pred.probs, dtype=np.float64)
            _send(
                conn,
                {
                    "ok": True,
                    "display": shown,
                    "case_ids": pred.case_ids,
                    "hard_labels": pred.hard_labels,
                    "kind": pred.kind,
                    "shape": list(probs.shape),
                    "isolation": applied,
                },
                probs.tobytes(),
            )
            return
        files = _mask_files(src, limits.zip_limits)
        _send(
            conn,
            {
                "ok": True,
                "display": display,
                "cases": {c: [f.display, f.extension] for c, f in files.items()},
                "isolation": applied,
            },
        )
        rows_buffer = RowsBuffer()  # one mask's rows are sent before the next is decoded
        with reused_voxel_memory():  # one mask's memory serves the next
            while True:
                request = json.loads(conn.recv_bytes(_HEADER_MAX))
                if request.get("stop"):
                    return
                case = str(request["case"])
                expected = tuple(int(n) for n in request["shape"]) if request.get("shape") else None
                f = files[case]
                try:
                    raw = f.read(_file_bound(expected, limits.zip_limits.max_member_bytes))
                    # a gzipped one-byte NIfTI straight to the rows that are sent; any other
                    # file decoded whole
                    rows = decode_rows(
                        raw,
                        f.extension,
                        rows_buffer,
                        max_voxel_bytes=limits.zip_limits.max_member_bytes,
                        expected_shape=expected,
                    )
                    mask = (
                        decode_mask(
                            raw,
                            f.extension,
                            max_voxel_bytes=limits.zip_limits.max_member_bytes,
                            expected_shape=expected,
                        )
                        if rows is None
                        else None
                    )
                    del raw
                except MaskDecodeError as exc:
                    _send(
                        conn,
                        {"ok": False, "problem": exc.problem(), "file": f.display, "case": case},
                    )
                    continue
                except Exception as exc:
                    _send(conn, {**_error_header(exc, case), "file": f.display})
                    continue
                g = mask.grid if mask is not None else rows.grid  # type: ignore[union-attr]
                geometry = {
                    "spacing": list(g.spacing) if g.spacing is not None else None,
                    "affine": g.affine.tolist() if g.affine is not None else None,
                    "space": g.space,
                }
                packed = pack_mask(mask) if mask is not None else rows
                if packed is not None:
                    # a one-byte mask goes as its rows (runs along the axis contiguous in memory)
                    # that hold a voxel, with their numbers: a tenth of its bytes for an organ
                    header = {
                        "ok": True,
                        "dtype": "|u1",
                        "shape": list(packed.shape),
                        "order": packed.order,
                        "rows": int(packed.which.size),
                        **geometry,
                    }
                    _send(conn, header, packed.which.astype("<i8").data)
                    conn.send_bytes(packed.packed.reshape(-1).data)  # 1-D even with no rows
                    del mask, rows, packed  # its memory goes back for the next case
                    continue
                assert mask is not None
                # a Fortran-ordered array (NIfTI) goes as its transpose's bytes, without a copy
                order = (
                    "F"
                    if mask.data.flags.f_contiguous and not mask.data.flags.c_contiguous
                    else "C"
                )
                data = mask.data.T if order == "F" else np.ascontiguousarray(mask.data)
                header = {
                    "ok": True,
                    "dtype": data.dtype.str,
                    "shape": list(mask.data.shape),
                    "order": order,
                    **geometry,
                }
                _send(conn, header, data.data.cast("B"))
                del mask, data  # its memory goes back for the next case
    except EOFError:
        return
    except BaseException as exc:  # everything the child meets is the participant's file's doing
        with contextlib.suppress(OSError, ValueError):
            _send(conn, _error_header(exc))


# ------------------------------------------------------------------------------ the trusted side


#: a request to the decoding child: the case and the shape its mask must have
_Key = tuple[str, tuple[int, ...] | None]


class Decoder:
    """The trusted side of one decoding child. Use as a context manager::

        with Decoder("segmentation", path, display, limits) as dec:
            dec.cases            # {case_id: (display, extension)}
            mask = dec.mask(case_id, expected_shape=ref.grid.shape)

    Thread-safe: several scoring threads may ask at once, and ask ahead (:meth:`request`).
    Requests go out in order under one lock; a receiving thread takes the answers as they come
    (the child answers in order) and keeps each for whoever asked, so the child never waits
    for a scoring thread to read what it decoded.
    """

    #: the lock-down steps the child could apply
    isolation: list[str]
    #: case id -> (the file's name as the participant gave it, its extension)
    cases: dict[str, tuple[str, str]]

    def __init__(
        self,
        task: str,
        path: str | os.PathLike[str],
        display: str,
        limits: DecodeLimits,
        *,
        classes: Sequence[int] = (),
    ):
        conn = _zygote.spawn(
            {
                "task": task,
                "path": os.path.abspath(os.fspath(path)),
                "display": display,
                "limits": _limits_to_json(limits),
                "classes": [int(c) for c in classes],
            }
        )
        self._attach(conn, display, limits)
        try:
            self._first = self._receive_header()
            self.isolation = [str(x) for x in self._first.get("isolation", [])][:10]
            if task == "segmentation":
                cases = self._first.get("cases")
                if not isinstance(cases, dict):
                    raise self._protocol_error()
                self.cases = {str(c): (str(v[0]), str(v[1])) for c, v in cases.items()}
        except BaseException:
            self.close()
            raise

    # -- plumbing

    def _fail(
        self, problem: str, file: str | None = None, case: str | None = None
    ) -> InvalidSubmission:
        """The child cannot go on (it died, lied or ran out of time): end it."""
        self.close()
        return InvalidSubmission(problem, file=file or self.display, case=case)

    def _protocol_error(self) -> InvalidSubmission:
        return self._fail("the decoder of this file sent an invalid answer")

    def _died(self) -> InvalidSubmission:
        gib = self.limits.memory_bytes / (1 << 30)
        return self._fail(
            f"decoding stopped: the file needs more than the decoding limits "
            f"({gib:.1f} GiB of memory, {self.limits.cpu_seconds} s of CPU) or is malformed"
        )

    def _recv(self, max_bytes: int) -> bytes:
        if not self._conn.poll(self.limits.wall_seconds):
            raise self._fail(f"decoding took longer than {self.limits.wall_seconds:g} s")
        try:
            return self._conn.recv_bytes(max_bytes)
        except (EOFError, OSError):
            raise self._died() from None

    def _receive_header(self) -> dict[str, Any]:
        try:
            header = json.loads(self._recv(_HEADER_MAX * 64))
        except (ValueError, UnicodeDecodeError):
            raise self._protocol_error() from None
        if not isinstance(header, dict):
            raise self._protocol_error()
        if not header.get("ok"):
            # The child refused this file or case and goes on serving (other threads may still
            # be asking it for their cases); the first decode error ends the scoring anyway.
            raise InvalidSubmission(
                one_line(str(header.get("problem") or "cannot be decoded")),
                file=header["file"] if isinstance(header.get("file"), str) else self.display,
                case=header["case"] if isinstance(header.get("case"), str) else None,
            )
        return header

    def _attach(self, conn: Connection, display: str, limits: DecodeLimits) -> None:
        """This side's state over a connection to a child (the tests also attach it to a
        test playing a compromised child)."""
        self.display = display
        self.limits = limits
        self._conn = conn
        self._send_lock = threading.Lock()
        self._got = threading.Condition()  # guards the requests out and the answers kept
        self._receiver: threading.Thread | None = None
        self._fatal: InvalidSubmission | None = None  # the child died, lied or timed out
        self._closed = False
        self.isolation = []
        self.cases = {}
        # requests out, oldest first (and as a set), and answers received for a thread still
        # to take them
        self._asked: collections.deque[_Key] = collections.deque()
        self._out: set[_Key] = set()
        self._answers: dict[_Key, Any] = {}

    # -- answers

    def table(self) -> tuple[str, list[str], np.ndarray[Any, Any], bool, str, list[str]]:
        """(display, case ids, probabilities (n, k), hard labels?, kind) of a table."""
        h = self._first
        try:
            n, k = (int(x) for x in h["shape"])
            case_ids = [str(c) for c in h["case_ids"]]
        except (KeyError, TypeError, ValueError):
            raise self._protocol_error() from None
        if n != len(case_ids) or k < 1:
            raise self._protocol_error()
        raw = self._recv(n * k * 8 + 1)
        if len(raw) != n * k * 8:
            raise self._protocol_error()
        probs = np.frombuffer(raw, dtype=np.float64).reshape(n, k)
        return (
            str(h.get("display", self.display)),
            case_ids,
            probs,
            bool(h["hard_labels"]),
            str(h["kind"]),
            list(self.isolation),
        )

    def request(self, case_id: str, *, expected_shape: Sequence[int] | None) -> None:
        """Ask the child for a case before it is needed: the child decodes it while this side
        does other work, and :meth:`mask` with the same arguments takes the answer."""
        self._ask(case_id, expected_shape)

    def mask(self, case_id: str, *, expected_shape: Sequence[int] | None) -> Mask:
        """Decode one case in the child (or take the answer to an earlier :meth:`request`);
        returns a checked :class:`Mask`."""
        display = self.cases[case_id][0]
        key = (case_id, tuple(int(n) for n in expected_shape) if expected_shape else None)
        self._ask(case_id, expected_shape)
        with self._got:
            while key not in self._answers:
                if self._fatal is not None:
                    raise self._fatal
                self._got.wait()
            got = self._answers.pop(key)
        if isinstance(got, InvalidSubmission):
            raise got
        h, shape, order, payload = got
        rows = None
        summary: MaskSummary | None = None
        if isinstance(payload, tuple):
            which, packed = payload
            try:
                # the summary made here from the rows themselves, never taken from the child
                arr, rows, summary = restore_rows(shape, order, which, packed)
            except ValueError:
                raise self._protocol_error() from None
        else:
            flat = np.frombuffer(payload, dtype=np.dtype(str(h["dtype"])))
            arr = flat.reshape(shape, order="F" if order == "F" else "C")
        grid = Grid(
            shape,
            _floats(h.get("spacing"), len(shape)),
            _affine(h.get("affine")),
            str(h.get("space", ""))[:64],
        )
        if summary is not None:  # a one-byte mask: every value is a label
            return Mask(arr, grid, 0, summary.max, summary)
        try:
            data, lo, hi, summary = _labels(arr, rows)
        except MaskDecodeError as exc:
            raise InvalidSubmission(exc.problem(), file=display, case=case_id) from None
        return Mask(data, grid, lo, hi, summary)

    def _ask(self, case_id: str, expected_shape: Sequence[int] | None) -> None:
        """Send the request for a case unless it is out already or answered."""
        key = (case_id, tuple(int(n) for n in expected_shape) if expected_shape else None)
        with self._send_lock:
            with self._got:
                if key in self._answers or key in self._out:
                    return
                if self._fatal is not None:
                    raise self._fatal
            if self._closed:
                raise self._died()
            request = {"case": case_id, "shape": list(key[1]) if key[1] is not None else None}
            try:
                self._conn.send_bytes(json.dumps(request).encode())
            except (OSError, ValueError):
                raise self._died() from None
            with self._got:
                self._out.add(key)
                self._asked.append(key)
                self._got.notify_all()
            if self._receiver is None:
                self._receiver = threading.Thread(
                    target=self._receive_all, name="scanbench-decoder", daemon=True
                )
                self._receiver.start()

    def _receive_all(self) -> None:
        """The receiving thread: take each answer as it comes, in the order of the requests,
        and keep it for whoever asked. A case the child refused keeps its error for that case;
        an answer that breaks the protocol (or a child that died or took too long) ends the
        child, and every thread waiting gets that error."""
        while True:
            with self._got:
                while not self._asked and not self._closed:
                    self._got.wait()
                if self._closed:
                    return
                key = self._asked[0]
            try:
                got = self._answer(key)
            except InvalidSubmission as exc:
                fatal: InvalidSubmission | None = exc
            except BaseException:  # nothing may end this thread with threads left waiting
                fatal = self._protocol_error()
            else:
                fatal = None
            with self._got:
                if fatal is not None:
                    self._fatal = fatal
                    self._got.notify_all()
                    return
                self._asked.popleft()
                self._out.discard(key)
                self._answers[key] = got
                self._got.notify_all()

    def _answer(self, key: _Key) -> Any:
        """The next answer off the wire, checked against the request it answers."""
        try:
            h = self._receive_header()
        except InvalidSubmission as exc:
            if self._closed:  # died, timed out or lied: nothing more will come
                raise
            return exc
        max_bytes = self.limits.zip_limits.max_member_bytes
        try:
            dtype = np.dtype(str(h["dtype"]))
            shape = tuple(int(n) for n in h["shape"])
            order = str(h.get("order", "C"))
        except (KeyError, TypeError, ValueError):
            raise self._protocol_error() from None
        if (
            dtype.kind not in _ALLOWED_KINDS
            or dtype.hasobject
            or len(shape) not in (2, 3)
            or order not in ("C", "F")
        ):
            raise self._protocol_error()
        if key[1] is not None and shape != key[1]:
            raise self._protocol_error()
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > max_bytes:
            raise self._protocol_error()
        payload: bytes | tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]
        if "rows" in h:  # a one-byte mask as its nonzero rows (see _child)
            payload = self._packed_rows(h, shape, dtype)
        else:
            payload = self._recv(nbytes + 1)
            if len(payload) != nbytes:
                raise self._protocol_error()
        return (h, shape, order, payload)

    def _packed_rows(
        self, h: dict[str, Any], shape: tuple[int, ...], dtype: np.dtype[Any]
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """Receive a one-byte mask's nonzero rows: their numbers (int64), then their bytes;
        every size is checked against the mask's shape before anything is read."""
        order = h.get("order")
        row_bytes = shape[0] if order == "F" else shape[-1]
        try:
            k = int(h["rows"])
        except (TypeError, ValueError):
            raise self._protocol_error() from None
        if dtype != np.uint8 or row_bytes <= 0 or not 0 <= k <= math.prod(shape) // row_bytes:
            raise self._protocol_error()
        numbers = self._recv(8 * k + 1)
        if len(numbers) != 8 * k:
            raise self._protocol_error()
        data = self._recv_array(k * row_bytes)
        which = np.frombuffer(numbers, dtype="<i8").astype(np.intp)
        return which, data.reshape(k, row_bytes)

    def _recv_array(self, nbytes: int) -> np.ndarray[Any, Any]:
        """One message of exactly ``nbytes`` read straight into a new array: the framing of
        ``Connection.send_bytes`` (a 4-byte big-endian length, or -1 and an 8-byte one), without
        the chunked copies ``recv_bytes`` makes of a large message."""
        if not self._conn.poll(self.limits.wall_seconds):
            raise self._fail(f"decoding took longer than {self.limits.wall_seconds:g} s")
        fd = self._conn.fileno()
        try:
            size = int.from_bytes(self._read_exact(fd, 4), "big", signed=True)
            if size == -1:
                size = int.from_bytes(self._read_exact(fd, 8), "big")
            if size != nbytes:
                raise self._protocol_error()
            out = np.empty(nbytes, dtype=np.uint8)
            self._read_into(fd, out.data)
        except OSError:
            raise self._died() from None
        return out

    def _read_exact(self, fd: int, n: int) -> bytes:
        buf = bytearray(n)
        self._read_into(fd, memoryview(buf))
        return bytes(buf)

    def _read_into(self, fd: int, view: memoryview) -> None:
        got = 0
        while got < len(view):
            n = os.readv(fd, [view[got:]])
            if n == 0:
                raise self._died()
            got += n

    def close(self) -> None:
        """End the child: closing its socket makes it exit (it is blocked reading requests, or
        is killed by its own limits); a child still decoding has its CPU limit as the bound."""
        if self._closed:
            return
        self._closed = True
        with self._got:
            self._got.notify_all()
        with contextlib.suppress(OSError, ValueError):
            self._conn.send_bytes(b'{"stop": true}')
        receiver = self._receiver
        if receiver is not None and receiver is not threading.current_thread():
            # wake the receiving thread if it waits on the socket, and let it end before the
            # socket's descriptor is closed (and perhaps reused)
            with (
                contextlib.suppress(OSError, ValueError),
                socket.socket(fileno=os.dup(self._conn.fileno())) as sock,
            ):
                sock.shutdown(socket.SHUT_RDWR)
            receiver.join(timeout=10)
        self._conn.close()

    def __enter__(self) -> Decoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _limits_to_json(limits: DecodeLimits) -> dict[str, Any]:
    z = limits.zip_limits
    return {
        "memory_bytes": limits.memory_bytes,
        "cpu_seconds": limits.cpu_seconds,
        "wall_seconds": limits.wall_seconds,
        "hidden": list(limits.hidden),
        "zip": [z.max_members, z.max_member_bytes, z.max_total_bytes],
        "table_bytes": limits.table_bytes,
    }


def _limits_from_json(d: dict[str, Any]) -> DecodeLimits:
    members, member_bytes, total_bytes = (int(x) for x in d["zip"])
    return DecodeLimits(
        memory_bytes=int(d["memory_bytes"]),
        cpu_seconds=int(d["cpu_seconds"]),
        wall_seconds=float(d["wall_seconds"]),
        hidden=tuple(str(p) for p in d["hidden"]),
        zip_limits=ZipLimits(members, member_bytes, total_bytes),
        table_bytes=int(d["table_bytes"]),
    )


def _floats(value: Any, n: int) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise InvalidSubmission("the decoder sent an invalid spacing") from None
    if len(out) != n or not all(math.isfinite(x) and x > 0 for x in out):
        raise InvalidSubmission("the decoder sent an invalid spacing")
    return out


def _affine(value: Any) -> np.ndarray[Any, Any] | None:
    if value is None:
        return None
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidSubmission("the decoder sent an invalid orientation") from None
    if (
        arr.ndim != 2
        or arr.shape[0] != arr.shape[1]
        or arr.shape[0] > 4
        or not np.all(np.isfinite(arr))
    ):
        raise InvalidSubmission("the decoder sent an invalid orientation")
    return arr


def _labels(
    arr: np.ndarray[Any, Any], rows: np.ndarray[Any, Any] | None = None
) -> tuple[np.ndarray[Any, Any], int, int, MaskSummary | None]:
    from evaluator.readers.masks import _to_labels

    return _to_labels(arr, rows)


def decode_table_isolated(
    path: str | os.PathLike[str], display: str, limits: DecodeLimits, *, classes: Sequence[int]
) -> tuple[str, list[str], np.ndarray[Any, Any], bool, str, list[str]]:
    """Parse a classification predictions file (CSV, or a zip or folder holding one) in a child;
    the last item lists the lock-down steps the child could apply."""
    with Decoder("classification", path, display, limits, classes=classes) as dec:
        return dec.table()
