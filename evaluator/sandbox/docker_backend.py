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
import time
import uuid
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
from .spec import RunResult, RunSpec

__all__ = ["DockerBackend"]

_LABEL = "org.scanbench.sandbox"
# Who a run belongs to (RunSpec.label, e.g. "evaluation-42"), so a later delivery of the same
# work can remove what a crashed worker left of it without touching other workers' runs.
_OWNER = "org.scanbench.owner"
SANDBOX_TMP = "/tmp"  # noqa: S108 -- the path inside the container, a private tmpfs


def _hardening(memory_bytes: int, pids: int) -> dict[str, Any]:
    return {
        "user": f"{SANDBOX_UID}:{SANDBOX_GID}",
        "network_mode": "none",
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": pids,
        "mem_limit": memory_bytes,
        "memswap_limit": memory_bytes,
        "ipc_mode": "private",
        "shm_size": 64 * 1024 * 1024,
        "hostname": "sandbox",
        "ulimits": [
            Ulimit(name="core", soft=0, hard=0),
            Ulimit(name="nofile", soft=4096, hard=4096),
        ],
        "log_config": LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        "privileged": False,
        "detach": True,
    }


class DockerBackend(SandboxBackend):
    """Runs a :class:`RunSpec` in a locked-down container. ``client`` defaults to ``from_env``."""

    name = "docker"

    def __init__(
        self, client: docker.DockerClient | None = None, *, evaluator_image: str | None = None
    ) -> None:
        self._client = client
        self.evaluator_image = evaluator_image or evaluator_image_tag()

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker.from_env(timeout=60)
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
        ensure_empty_dir(spec.output_dir)
        limits = spec.limits
        image = spec.image or self.evaluator_image
        run_id = uuid.uuid4().hex[:12]
        header = (
            f"[sandbox: docker, run {run_id}, image {image}, time {limits.time_limit_s:g} s, "
            f"memory {limits.memory_bytes // 2**20} MiB, cpus {limits.cpus:g}, "
            f"gpus {limits.gpus}]\n"
        )
        scratch = make_scratch_dir("scanbench-docker-")
        volume = holder = container = None
        logs = b""
        timed_out = oom = False
        exit_code: int | None = None
        output: OutputCheck | None = None
        run_started = run_ended = started

        def error(message: str, detail: str) -> RunResult:
            return sandbox_error(
                backend=self.name, header=header, started=started, message=message, detail=detail
            )

        try:
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                return error("The submission's image could not be found.", f"no image {image}")
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

            volume = self.client.volumes.create(
                name=f"scanbench-output-{run_id}",
                driver="local",
                driver_opts={
                    "type": "tmpfs",
                    "device": "tmpfs",
                    "o": f"size={limits.output_bytes},uid={SANDBOX_UID},gid={SANDBOX_GID},"
                    "mode=0755,nosuid,nodev,noexec",
                },
                labels={_LABEL: run_id, _OWNER: spec.label},
            )
            # no_copy: Docker must not copy the image's /output (owner root) into the volume.
            output_mount = Mount(target="/output", source=volume.name, type="volume", no_copy=True)
            holder = self.client.containers.run(
                self.evaluator_image,
                command=["sleep", str(int(limits.time_limit_s) + 600)],
                name=f"scanbench-holder-{run_id}",
                mounts=[
                    Mount(
                        target="/output",
                        source=volume.name,
                        type="volume",
                        read_only=True,
                        no_copy=True,
                    )
                ],
                labels={_LABEL: run_id, _OWNER: spec.label},
                nano_cpus=100_000_000,
                **_hardening(32 * 1024 * 1024, 8),
            )
            kwargs = _hardening(limits.memory_bytes, limits.pids)
            container = self.client.containers.create(
                image,
                command=list(spec.command) if spec.command is not None else None,
                entrypoint=list(spec.entrypoint) if spec.entrypoint is not None else None,
                name=f"scanbench-run-{run_id}",
                mounts=[*mounts, output_mount],
                tmpfs={SANDBOX_TMP: f"rw,nosuid,nodev,size={limits.tmp_bytes},mode=1777"},
                nano_cpus=int(limits.cpus * 1e9),
                environment={"HOME": SANDBOX_TMP, **spec.environment},
                working_dir=SANDBOX_TMP if spec.image is None else None,
                labels={_LABEL: run_id, _OWNER: spec.label},
                device_requests=device_requests,
                **kwargs,
            )
            run_started = time.monotonic()
            container.start()
            try:
                outcome = container.wait(timeout=limits.time_limit_s)
                exit_code = int(outcome.get("StatusCode", -1))
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                timed_out = True
                container.kill()
                container.wait(timeout=60)
            run_ended = time.monotonic()
            container.reload()
            state = container.attrs.get("State", {})
            oom = bool(state.get("OOMKilled")) and not timed_out
            if exit_code is None:
                exit_code = int(state.get("ExitCode", -1))
            logs = container.logs(stdout=True, stderr=True, tail=2000)
            container.remove(force=True)
            container = None

            if not timed_out and not oom:
                chunks, _stat = holder.get_archive("/output")
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
        except docker.errors.DockerException as exc:
            return error("The sandbox failed; this is not the submission's fault.", repr(exc))
        finally:
            cleanup_started = time.monotonic()
            for thing in (container, holder):
                if thing is not None:
                    with contextlib.suppress(docker.errors.DockerException):
                        thing.remove(force=True)
            if volume is not None:
                with contextlib.suppress(docker.errors.DockerException):
                    volume.remove(force=True)
            shutil.rmtree(scratch, ignore_errors=True)
            teardown = time.monotonic() - cleanup_started

        return finished_result(
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
