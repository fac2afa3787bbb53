"""The Docker backend: one throw-away container per run, through the Docker SDK for Python.

Every run gets: no network (``network_mode="none"``), a read-only root file system, a small
``tmpfs`` at ``/tmp``, uid/gid 65534 whatever the image says, all capabilities dropped,
``no-new-privileges``, a pids limit, memory == memory+swap, a CPU quota, a wall-clock limit after
which the container is killed and removed, and GPUs only through a device request when asked for.

``/output`` is a ``tmpfs``-backed Docker volume with a ``size=`` option, so the kernel refuses the
byte past the cap. A tmpfs volume is unmounted (and emptied) when its last container stops, so a
tiny *holder* container from the trusted evaluator image (``sleep``, equally locked down, the volume
read-only) keeps it mounted while the submission runs; afterwards the host reads ``/output`` out of
the holder with ``get_archive`` and validates it (:mod:`.outputs`). Nothing the submission wrote
reaches the host file system unchecked.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import DeviceRequest, LogConfig, Mount, Ulimit

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
from .image import evaluator_image_tag
from .outputs import (
    ChunkReader,
    OutputCheck,
    clear_dir,
    collect_tar_stream,
    ensure_empty_dir,
    stream_limit,
)
from .spec import Limits, RunResult, RunSpec

__all__ = ["DockerBackend", "docker_run_flags"]

_LABEL = "org.scanbench.sandbox"
# Who a run belongs to (RunSpec.label, e.g. "evaluation-42"), so a later delivery of the same
# work can remove what a crashed worker left of it without touching other workers' runs.
_OWNER = "org.scanbench.owner"
SANDBOX_TMP = "/tmp"  # noqa: S108 -- the path inside the container, a private tmpfs


_SHM_BYTES = 64 * 1024 * 1024
_LOG_MAX_SIZE = "1m"


def _create_args() -> dict[str, Any]:
    """The container-level lock-down of every sandbox container (``create_container``)."""
    return {"user": f"{SANDBOX_UID}:{SANDBOX_GID}", "hostname": "sandbox", "detach": True}


def _host_hardening(memory_bytes: int, pids: int) -> dict[str, Any]:
    """The host-config lock-down of every sandbox container (``create_host_config``)."""
    return {
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": pids,
        "mem_limit": memory_bytes,
        "memswap_limit": memory_bytes,
        "ipc_mode": "private",
        "shm_size": _SHM_BYTES,
        "ulimits": [
            Ulimit(name="core", soft=0, hard=0),
            Ulimit(name="nofile", soft=4096, hard=4096),
        ],
        "log_config": LogConfig(
            type="json-file", config={"max-size": _LOG_MAX_SIZE, "max-file": "1"}
        ),
        "privileged": False,
    }


_FLAGGED = frozenset(
    {
        "network_mode",
        "read_only",
        "cap_drop",
        "security_opt",
        "pids_limit",
        "mem_limit",
        "memswap_limit",
        "ipc_mode",
        "shm_size",
        "ulimits",
        "log_config",
        "privileged",  # False: docker run's default
    }
)


def docker_run_flags(limits: Limits) -> list[str]:
    """The same lock-down as ``docker run`` options, from the same settings (for the benchmark's
    side-by-side bare ``docker run``; ``/output`` there is a plain ``--tmpfs`` of the same size)."""
    create = _create_args()
    host = _host_hardening(limits.memory_bytes, limits.pids)
    unknown = (set(create) - {"user", "hostname", "detach"}) | (set(host) - _FLAGGED)
    if unknown:  # a setting added to the backend must be added here too
        raise ValueError(f"no docker run flag for {sorted(unknown)}")
    flags = [
        f"--user={create['user']}",
        f"--hostname={create['hostname']}",
        f"--network={host['network_mode']}",
        "--read-only",
        *(f"--cap-drop={cap}" for cap in host["cap_drop"]),
        *(f"--security-opt={opt}" for opt in host["security_opt"]),
        f"--pids-limit={host['pids_limit']}",
        f"--memory={host['mem_limit']}",
        f"--memory-swap={host['memswap_limit']}",
        f"--ipc={host['ipc_mode']}",
        f"--shm-size={host['shm_size']}",
        *(f"--ulimit={u.name}={u.soft}:{u.hard}" for u in host["ulimits"]),
        f"--log-driver={host['log_config'].type}",
        *(f"--log-opt={k}={v}" for k, v in host["log_config"].config.items()),
        f"--cpus={limits.cpus:g}",
        f"--tmpfs={SANDBOX_TMP}:rw,nosuid,nodev,size={limits.tmp_bytes},mode=1777",
        f"--tmpfs=/output:rw,nosuid,nodev,noexec,size={limits.output_bytes},"
        f"uid={SANDBOX_UID},gid={SANDBOX_GID},mode=0755",
        f"--env=HOME={SANDBOX_TMP}",
    ]
    return flags


_SIGKILL_EXIT = 128 + 9
_POLL_S = 0.5
_UNKNOWN_EXIT_S = 5.0
_VOLUME_TRIES = 20


def _optional_list(items: tuple[str, ...] | None) -> list[str] | None:
    return list(items) if items is not None else None


class _Tail:
    """The last ``limit`` bytes (and one more, so the cut shows) of a stream, in bounded memory."""

    def __init__(self, limit: int) -> None:
        self.limit = limit + 1
        self.data = bytearray()

    def read_all(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.data += chunk
            if len(self.data) > 2 * self.limit:
                del self.data[: -self.limit]


def _exec(api: docker.APIClient, container: str, spec: RunSpec) -> tuple[int | None, bool, bytes]:
    """Run ``spec.command`` in the started ``container`` (as uid 65534, with the container's
    environment, limits and lock-down); returns (exit code, timed out, the output's tail)."""
    limits = spec.limits
    exec_id = api.exec_create(
        container, list(spec.command or ()), user=f"{SANDBOX_UID}:{SANDBOX_GID}"
    )["Id"]
    deadline = time.monotonic() + limits.time_limit_s
    stream = api.exec_start(exec_id, stream=True)
    tail = _Tail(max(limits.logs_tail_bytes, 1))
    reader = _Background(tail.read_all, stream)
    exit_code: int | None = None
    timed_out = False
    unknown_since = 0.0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            timed_out = True
            break
        # The stream ends when the process does (unless it left children holding its stdout);
        # the exec's state is asked at least every _POLL_S.
        reader.join(min(remaining, _POLL_S) if reader.is_alive() else 0.0)
        state = api.exec_inspect(exec_id)
        if not state.get("Running"):
            if state.get("ExitCode") is not None:
                exit_code = int(state["ExitCode"])
                break
            # Not running and no exit code: not started yet, or the engine has not yet
            # recorded the exit; a while after the stream ended, give up on the code.
            if not reader.is_alive():
                unknown_since = unknown_since or time.monotonic()
                if time.monotonic() - unknown_since > _UNKNOWN_EXIT_S:
                    exit_code = -1
                    break
        if not reader.is_alive():
            time.sleep(0.005)
    if timed_out:
        api.kill(container)
    reader.join(0.2 if not timed_out else 10.0)  # the last of the output, if it is still coming
    if reader.is_alive():  # children of the run still hold its output open: stop listening
        with contextlib.suppress(Exception):
            stream.close()
        reader.join(1.0)
    return exit_code, timed_out, bytes(tail.data)


def _remove(
    api: docker.APIClient, containers: list[str], volume: str | None, scratch: Path
) -> None:
    for container in containers:
        with contextlib.suppress(docker.errors.DockerException):
            api.remove_container(container, force=True)
    if volume is not None:
        # The engine may release the volume a moment after the container is gone ("in use").
        for attempt in range(_VOLUME_TRIES):
            try:
                api.remove_volume(volume, force=True)
                break
            except docker.errors.NotFound:
                break
            except docker.errors.DockerException:
                if attempt + 1 < _VOLUME_TRIES:
                    time.sleep(0.1)
    shutil.rmtree(scratch, ignore_errors=True)


class _Stages:
    """Seconds spent in each step of a run, for the benchmark (``DockerBackend.last_stages``)."""

    def __init__(self, started: float) -> None:
        self._last = started
        self.durations: dict[str, float] = {}

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.durations[name] = self.durations.get(name, 0.0) + now - self._last
        self._last = now


class _Background(threading.Thread):
    """One call in a thread; ``result()`` joins it and returns the exception it raised, or None."""

    def __init__(
        self, call: Callable[..., object], *args: Any, daemon: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(daemon=daemon)
        self.call, self.args, self.kwargs = call, args, kwargs
        self.exception: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.call(*self.args, **self.kwargs)
        except BaseException as exc:  # handed to the caller by result()
            self.exception = exc

    def result(self) -> BaseException | None:
        self.join()
        return self.exception


_CLIENTS: dict[int, docker.DockerClient] = {}
_CLIENTS_LOCK = threading.Lock()


def _shared_client() -> docker.DockerClient:
    """One ``from_env`` client per process (its connections are reused from run to run); a forked
    worker makes its own rather than share its parent's sockets."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(os.getpid())
        if client is None:
            client = _CLIENTS[os.getpid()] = docker.from_env(timeout=60)
        return client


class DockerBackend(SandboxBackend):
    """Runs a :class:`RunSpec` in a locked-down container. ``client`` defaults to ``from_env``."""

    name = "docker"

    def __init__(
        self, client: docker.DockerClient | None = None, *, evaluator_image: str | None = None
    ) -> None:
        self._client = client
        self.evaluator_image = evaluator_image or evaluator_image_tag()
        self.last_stages: dict[str, float] = {}

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = _shared_client()
        return self._client

    def check(self) -> list[str]:
        try:
            self.client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            return [f"no Docker engine answers: {exc}"]
        try:
            self.client.images.get(self.evaluator_image)
        except docker.errors.ImageNotFound:
            return [
                f"the evaluator image {self.evaluator_image} is not on this Docker engine; "
                "build it with platform/evaluator-image/build.sh"
            ]
        except docker.errors.APIError as exc:
            return [f"Docker engine error: {exc}"]
        return []

    def can_run_images(self) -> bool:
        return True

    def remove_leftovers(self, owner: str | None = None) -> int:
        """Remove sandbox containers and volumes a crashed worker left behind; returns how many.

        With ``owner`` (a RunSpec label such as ``evaluation-42``), only that work's leftovers:
        safe while other runs are going on. Without it, everything of the sandbox's: call that
        only at start-up of the only worker using this engine.
        """
        removed = 0
        label = {"label": f"{_OWNER}={owner}" if owner is not None else _LABEL}
        for container in self.client.containers.list(all=True, filters=label):
            with contextlib.suppress(docker.errors.DockerException):
                container.remove(force=True)
                removed += 1
        for volume in self.client.volumes.list(filters=label):
            with contextlib.suppress(docker.errors.DockerException):
                volume.remove(force=True)
                removed += 1
        return removed

    def gpus_available(self) -> bool:
        """An NVIDIA runtime is registered (or ``SCANBENCH_DOCKER_GPUS=1`` says the engine's default
        runtime handles device requests, as with CDI set-ups)."""
        if os.environ.get("SCANBENCH_DOCKER_GPUS") == "1":
            return True
        info = self.client.info()
        return "nvidia" in (info.get("Runtimes") or {}) or info.get("DefaultRuntime") == "nvidia"

    def run(self, spec: RunSpec) -> RunResult:
        started = time.monotonic()
        stages = _Stages(started)
        ensure_empty_dir(spec.output_dir)
        limits = spec.limits
        image = spec.image or self.evaluator_image
        run_id = uuid.uuid4().hex[:12]
        header = (
            f"[sandbox: docker, run {run_id}, image {image}, time {limits.time_limit_s:g} s, "
            f"memory {limits.memory_bytes // 2**20} MiB, cpus {limits.cpus:g}, "
            f"gpus {limits.gpus}]\n"
        )
        api = self.client.api
        scratch = make_scratch_dir("scanbench-docker-")
        volume: str | None = None
        holder: str | None = None
        container: str | None = None
        logs = b""
        timed_out = oom = False
        exit_code: int | None = None
        output: OutputCheck | None = None
        run_started = run_ended = started
        removal: _Background | None = None
        exec_mode = False
        labels = {_LABEL: run_id, _OWNER: spec.label}

        def error(message: str, detail: str) -> RunResult:
            return sandbox_error(
                backend=self.name, header=header, started=started, message=message, detail=detail
            )

        try:
            device_requests = None
            if limits.gpus:
                if not self.gpus_available():
                    return error("This worker has no GPU.", "gpus requested, no nvidia runtime")
                device_requests = [DeviceRequest(count=limits.gpus, capabilities=[["gpu"]])]

            input_source = make_world_readable_copy(spec.input_dir, scratch)
            mounts = [
                Mount(target="/input", source=str(input_source), type="bind", read_only=True),
            ]
            for extra in spec.mounts:
                source = make_world_readable_copy(extra.source, scratch)
                if extra.source.is_file():
                    source = source / extra.source.name
                mounts.append(
                    Mount(target=extra.target, source=str(source), type="bind", read_only=True)
                )
            stages.mark("stage inputs")

            volume = api.create_volume(
                name=f"scanbench-output-{run_id}",
                driver="local",
                driver_opts={
                    "type": "tmpfs",
                    "device": "tmpfs",
                    "o": f"size={limits.output_bytes},uid={SANDBOX_UID},gid={SANDBOX_GID},"
                    "mode=0755,nosuid,nodev,noexec",
                },
                labels=labels,
            )["Name"]
            # no_copy: Docker must not copy the image's /output (owner root) into the volume.
            output_mount = Mount(target="/output", source=volume, type="volume", no_copy=True)
            # The evaluator image's own runs (model files, scoring programs) need no holder: the
            # container's first process is the image's trusted ``sleep`` (uid 65534 like the rest;
            # as PID 1 it ignores every signal sent from inside), which keeps ``/output`` mounted,
            # and the code runs beside it through ``exec`` with the same limits.
            exec_mode = spec.image is None and spec.entrypoint is None and spec.command is not None
            hold = ["sleep", str(int(limits.time_limit_s) + 600)]
            # The low-level API: one request per step (the high-level create/run add an inspect).
            try:
                container = api.create_container(
                    image,
                    command=hold if exec_mode else _optional_list(spec.command),
                    entrypoint=_optional_list(spec.entrypoint),
                    name=f"scanbench-run-{run_id}",
                    environment={"HOME": SANDBOX_TMP, **spec.environment},
                    working_dir=SANDBOX_TMP if spec.image is None else None,
                    labels=labels,
                    **_create_args(),
                    host_config=api.create_host_config(
                        mounts=[*mounts, output_mount],
                        tmpfs={SANDBOX_TMP: f"rw,nosuid,nodev,size={limits.tmp_bytes},mode=1777"},
                        nano_cpus=int(limits.cpus * 1e9),
                        device_requests=device_requests,
                        **_host_hardening(limits.memory_bytes, limits.pids),
                    ),
                )["Id"]
            except docker.errors.ImageNotFound:
                if spec.image is None:
                    raise
                return error("The submission's image could not be found.", f"no image {image}")
            if exec_mode:
                stages.mark("create")
                api.start(container)
                stages.mark("start")
                run_started = time.monotonic()
                exit_code, timed_out, logs = _exec(api, container, spec)
                run_ended = time.monotonic()
                # A SIGKILL the run did not get from us: the memory cgroup's OOM killer (an exec'd
                # process's OOM kill does not set the container's OOMKilled).
                oom = exit_code == _SIGKILL_EXIT and not timed_out
                stages.mark("wait")
                outputs_from = container
            else:
                holder = api.create_container(
                    self.evaluator_image,
                    command=hold,
                    name=f"scanbench-holder-{run_id}",
                    labels=labels,
                    **_create_args(),
                    host_config=api.create_host_config(
                        mounts=[
                            Mount(
                                target="/output",
                                source=volume,
                                type="volume",
                                read_only=True,
                                no_copy=True,
                            )
                        ],
                        nano_cpus=100_000_000,
                        **_host_hardening(32 * 1024 * 1024, 8),
                    ),
                )["Id"]
                stages.mark("create")
                # The holder must hold the volume mounted before the submission can stop.
                api.start(holder)
                stages.mark("start holder")
                run_started = time.monotonic()
                api.start(container)
                stages.mark("start")
                try:
                    outcome = api.wait(container, timeout=limits.time_limit_s)
                    exit_code = int(outcome.get("StatusCode", -1))
                except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                    timed_out = True
                    api.kill(container)
                    api.wait(container, timeout=60)
                run_ended = time.monotonic()
                stages.mark("wait")
                state = api.inspect_container(container).get("State", {})
                oom = bool(state.get("OOMKilled")) and not timed_out
                if exit_code is None:
                    exit_code = int(state.get("ExitCode", -1))
                logs = api.logs(container, stdout=True, stderr=True, tail=2000)
                stages.mark("logs")
                # The stopped container is removed while /output is read out of the holder.
                removal = _Background(api.remove_container, container, force=True)
                outputs_from = holder

            if not timed_out and not oom:
                chunks, _stat = api.get_archive(outputs_from, "/output")
                reader = ChunkReader(chunks, stream_limit(limits))
                output = collect_tar_stream(
                    reader, spec.output_dir, policy=spec.output_policy, limits=limits
                )
                if output.ok and near_full(output.total_bytes, limits):
                    clear_dir(spec.output_dir)
                    output = OutputCheck(
                        ok=False,
                        full=True,
                        total_bytes=output.total_bytes,
                        participant_reason=(
                            f"it filled the output limit of {limits.output_bytes // 2**20} MiB"
                        ),
                    )
            stages.mark("collect outputs")
        except docker.errors.DockerException as exc:
            return error("The sandbox failed; this is not the submission's fault.", repr(exc))
        finally:
            cleanup_started = time.monotonic()
            if removal is not None and removal.result() is None:
                container = None  # removed while the outputs were read
            leftovers = [thing for thing in (container, holder) if thing is not None]
            self.last_stages = stages.durations
            _remove(api, leftovers, volume, scratch)
            stages.mark("remove")
            teardown = time.monotonic() - cleanup_started

        result = finished_result(
            backend=self.name,
            timed_out=timed_out,
            oom=oom,
            exit_code=exit_code,
            output=output,
            limits=limits,
            log_text=header + tail_bytes(logs, limits.logs_tail_bytes),
            started=started,
            run_started=run_started,
            run_ended=run_ended,
            teardown_s=teardown,
        )
        return result
