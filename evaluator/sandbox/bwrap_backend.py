"""The bubblewrap backend, for machines without a Docker engine (the embedded default's fallback).

It runs the evaluator root file system (the directory ``platform/evaluator-image/build.sh`` makes,
the same one the Docker image is imported from) read-only as ``/`` under ``bwrap --unshare-all``:
new user, pid, ipc, uts, cgroup and network namespaces, the last with no interface but a downed
loopback, so nothing can be reached. Only the inputs (``/input``), the run's own read-only files and
two size-capped tmpfs (``/tmp``, ``/output``) are visible; no host path is bound. Limits are
rlimits set with ``prlimit`` (address space, processes, CPU seconds, file size, core dumps), a
wall-clock limit enforced inside by the sandbox init and outside by killing the process group, and
``--die-with-parent``. When the worker runs as root, bubblewrap is started as uid 65534.

It runs model-file submissions (the runner in the evaluator image) and organizer scoring in the
evaluator image; arbitrary container images need Docker and are refused with a plain message.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import IO

from .base import (
    SANDBOX_GID,
    SANDBOX_UID,
    SandboxBackend,
    finished_result,
    make_scratch_dir,
    make_world_readable_copy,
    near_full,
    sandbox_error,
    tail_bytes,
)
from .image import evaluator_image_tag, evaluator_rootfs
from .outputs import (
    ChunkReader,
    OutputCheck,
    clear_dir,
    collect_tar_stream,
    ensure_empty_dir,
    stream_limit,
)
from .spec import RunResult, RunSpec

__all__ = ["BubblewrapBackend"]

_INIT = Path(__file__).with_name("bwrap_init.py")
_HEADER_BYTES = 128
_GRACE_S = 30.0  # for the init to pack /output after the submission stopped
_PATH = "/usr/local/bin:/usr/bin:/bin"
_TMP = "/tmp"  # noqa: S108 -- the path inside the sandbox, a private size-capped tmpfs


class _Tail:
    """Keeps the last ``limit`` bytes read from a pipe, in a thread."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        # A raw (unbuffered) read returns what is there, so a slow writer is not held up.
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._limit = limit
        self._stream = stream
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while chunk := self._stream.read(65536):
            self._chunks.append(chunk)
            self._size += len(chunk)
            while self._size - len(self._chunks[0]) >= self._limit:
                self._size -= len(self._chunks.popleft())

    def text(self, limit: int) -> str:
        self.thread.join(timeout=5)
        return tail_bytes(b"".join(self._chunks), limit)


class BubblewrapBackend(SandboxBackend):
    """Runs a :class:`RunSpec` under bubblewrap with the evaluator root file system as ``/``."""

    name = "bwrap"

    def __init__(self, *, rootfs: Path | None = None, bwrap: str | None = None) -> None:
        self.rootfs = rootfs or evaluator_rootfs()
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"
        self.prlimit = shutil.which("prlimit") or "prlimit"

    def check(self) -> list[str]:
        """Binaries and root file system present, and a probe sandbox starts (~0.1 s)."""
        problems = self._static_problems()
        if problems:
            return problems
        try:
            probe = subprocess.run(
                [*self._bwrap_base(), "--", "/bin/true"],
                capture_output=True,
                timeout=30,
                check=False,
                user=SANDBOX_UID if self._as_root() else None,
                group=SANDBOX_GID if self._as_root() else None,
                extra_groups=[] if self._as_root() else None,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [f"bubblewrap cannot start: {exc}"]
        if probe.returncode != 0:
            err = probe.stderr.decode(errors="replace").strip()[-300:]
            return [f"bubblewrap cannot create a sandbox here (user namespaces?): {err}"]
        return []

    def _static_problems(self) -> list[str]:
        problems = []
        if shutil.which(self.bwrap) is None:
            problems.append("bubblewrap (bwrap) is not installed")
        if shutil.which(self.prlimit) is None:
            problems.append("prlimit (util-linux) is not installed")
        if not (self.rootfs / ".scanbench-recipe").is_file():
            problems.append(
                f"the evaluator root file system {self.rootfs} is missing; "
                "build it with platform/evaluator-image/build.sh"
            )
        return problems

    @staticmethod
    def _as_root() -> bool:
        """Root starts bubblewrap as uid 65534 (so the sandbox holds no host uid 0 files' owner)."""
        return os.geteuid() == 0

    def _bwrap_base(self) -> list[str]:
        return [
            self.bwrap,
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
            "--ro-bind",
            str(self.rootfs),
            "/",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--uid",
            str(SANDBOX_UID),
            "--gid",
            str(SANDBOX_GID),
            "--hostname",
            "sandbox",
            "--disable-userns",
            "--cap-drop",
            "ALL",
            "--clearenv",
            "--setenv",
            "PATH",
            _PATH,
            "--setenv",
            "HOME",
            _TMP,
            "--setenv",
            "PYTHONDONTWRITEBYTECODE",
            "1",
            "--chdir",
            _TMP,
        ]

    def run(self, spec: RunSpec) -> RunResult:
        started = time.monotonic()
        ensure_empty_dir(spec.output_dir)
        limits = spec.limits
        run_id = uuid.uuid4().hex[:12]
        header = (
            f"[sandbox: bwrap (bubblewrap), run {run_id}, root {self.rootfs}, "
            f"time {limits.time_limit_s:g} s, memory {limits.memory_bytes // 2**20} MiB "
            "(address space rlimit)]\n"
        )

        def error(message: str, detail: str) -> RunResult:
            return sandbox_error(
                backend=self.name, header=header, started=started, message=message, detail=detail
            )

        if spec.image is not None and spec.image != evaluator_image_tag():
            return error(
                "This installation runs model files only: container images need a Docker engine.",
                f"image {spec.image} refused: the bubblewrap backend has no image support",
            )
        if limits.gpus:
            return error("This worker has no GPU.", "gpus requested on the bubblewrap backend")
        if spec.command is None:
            raise ValueError("the bubblewrap backend needs an explicit command")
        problems = self._static_problems()
        if problems:
            return error("The sandbox failed; this is not the submission's fault.", problems[0])

        scratch = make_scratch_dir("scanbench-bwrap-")
        try:
            init_dir = scratch / "init"
            init_dir.mkdir(mode=0o755)
            shutil.copyfile(_INIT, init_dir / "init.py")
            os.chmod(init_dir / "init.py", 0o644)
            input_source = make_world_readable_copy(spec.input_dir, scratch)
            args = [
                *self._bwrap_base(),
                "--size",
                str(limits.tmp_bytes),
                "--perms",
                "1777",
                "--tmpfs",
                _TMP,
                "--size",
                str(limits.output_bytes),
                "--perms",
                "0755",
                "--tmpfs",
                "/output",
                "--size",
                str(1024 * 1024),
                "--tmpfs",
                "/opt",
                "--ro-bind",
                str(init_dir),
                "/opt/scanbench-init",
                "--ro-bind",
                str(input_source),
                "/input",
            ]
            for extra in spec.mounts:
                source = make_world_readable_copy(extra.source, scratch)
                if extra.source.is_file():
                    source = source / extra.source.name
                if not (extra.target.startswith("/opt/") or extra.target == "/reference"):
                    return error(
                        "The sandbox failed; this is not the submission's fault.",
                        f"bubblewrap mounts go under /opt or at /reference, not {extra.target}",
                    )
                args += ["--ro-bind", str(source), extra.target]
            for key, value in spec.environment.items():
                args += ["--setenv", key, value]
            args += ["--remount-ro", "/opt"]

            read_fd, write_fd = os.pipe()
            args += [
                "--",
                "/usr/bin/python3",
                "-I",
                "-S",
                "/opt/scanbench-init/init.py",
                "--status-fd",
                str(write_fd),
                "--time-limit",
                f"{limits.time_limit_s:g}",
                "--",
                *spec.command,
            ]
            cpu_seconds = max(1, int(limits.time_limit_s * max(limits.cpus, 1.0)) + 1)
            command = [
                self.prlimit,
                f"--as={limits.memory_bytes}",
                f"--nproc={limits.pids}",
                f"--cpu={cpu_seconds}",
                f"--fsize={limits.output_bytes}",
                "--core=0",
                "--nofile=4096",
                "--",
                *args,
            ]
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                start_new_session=True,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
                user=SANDBOX_UID if self._as_root() else None,
                group=SANDBOX_GID if self._as_root() else None,
                extra_groups=[] if self._as_root() else None,
            )
            os.close(write_fd)
            assert process.stdout is not None
            logs = _Tail(process.stdout, limits.logs_tail_bytes)
            run_started = time.monotonic()

            status_box: dict[str, object] = {}
            output_box: list[OutputCheck] = []

            def pump_status() -> None:
                with os.fdopen(read_fd, "rb") as pipe:
                    raw = pipe.read(_HEADER_BYTES)
                    try:
                        status_box.update(json.loads(raw.decode()))
                    except (ValueError, UnicodeDecodeError):
                        return
                    reader = ChunkReader(iter(lambda: pipe.read(65536), b""), stream_limit(limits))
                    output_box.append(
                        collect_tar_stream(
                            reader, spec.output_dir, policy=spec.output_policy, limits=limits
                        )
                    )

            collector = threading.Thread(target=pump_status, daemon=True)
            collector.start()
            host_killed = False
            try:
                process.wait(timeout=limits.time_limit_s + _GRACE_S)
            except subprocess.TimeoutExpired:
                host_killed = True
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            run_ended = time.monotonic()
            collector.join(timeout=_GRACE_S)
            teardown_started = time.monotonic()
            log_text = logs.text(limits.logs_tail_bytes)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

        if not status_box:
            if host_killed:
                status_box = {"exit": -9, "timed_out": True}
            else:
                return error(
                    "The sandbox failed; this is not the submission's fault.",
                    f"bwrap exited {process.returncode} without a status\n{log_text}",
                )
        raw_exit = status_box.get("exit")
        exit_code = int(raw_exit) if isinstance(raw_exit, int) else -1
        timed_out = bool(status_box.get("timed_out")) or host_killed
        # RLIMIT_CPU: SIGXCPU, then SIGKILL at the hard limit.
        if exit_code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            timed_out = True
        oom = exit_code == _RUNNER_OOM_EXIT
        output = output_box[0] if output_box else None
        if output is not None and output.ok and near_full(output.total_bytes, limits):
            output = OutputCheck(
                ok=False,
                full=True,
                total_bytes=output.total_bytes,
                participant_reason=(
                    f"it filled the output limit of {limits.output_bytes // 2**20} MiB"
                ),
            )
        if timed_out or oom or (output is not None and not output.ok):
            clear_dir(spec.output_dir)
        if exit_code < 0:
            exit_code = 128 - exit_code
        return finished_result(
            backend=self.name,
            timed_out=timed_out,
            oom=oom,
            exit_code=exit_code,
            output=output,
            limits=limits,
            log_text=header + log_text,
            started=started,
            run_started=run_started,
            run_ended=run_ended,
            teardown_s=time.monotonic() - teardown_started,
        )


# The model runner exits with this code on MemoryError (the address-space rlimit makes allocations
# fail instead of waking an OOM killer); see evaluator/runner/__main__.py.
_RUNNER_OOM_EXIT = 86
