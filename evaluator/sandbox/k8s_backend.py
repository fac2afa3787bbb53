"""The Kubernetes backend: one Job per run in a namespace of its own (``scanbench-sandbox``).

NOT RUN HERE. This module was written and its manifests validated offline (Kubernetes OpenAPI
schemas, ``tests/foundation/test_kubernetes_manifests.py``); no cluster was available, so
:class:`KubernetesBackend` has never created a Job, read a log or copied an output. The pure part,
:func:`job_manifest`, is what the tests check. Needs the ``kubernetes`` client, which is not a
dependency of the platform: ``pip install kubernetes`` in the gpu worker's image.

How a run goes (docs/kubernetes.md):

* The gpu worker and the runs share an *exchange* volume (ReadWriteMany; the worker mounts it at
  ``SCANBENCH_K8S_EXCHANGE_ROOT``, the runs' namespace has a claim on the same storage). The worker
  stages ``runs/<run id>/`` there: a world-readable copy of the inputs (or, when ``input_dir``
  already lies on the exchange volume, that folder itself) and of each trusted mount.
* The Job's pod has two containers in order. The submission is the *init* container: inputs
  read-only at ``/input`` (``subPath``), ``/output`` an ``emptyDir`` in memory whose ``sizeLimit``
  sizes the tmpfs, so the kernel refuses the byte past the cap as with Docker's tmpfs volume
  (memory-backed emptyDirs are sized by ``sizeLimit`` since Kubernetes 1.22's
  SizeMemoryBackedVolumes, on by default); its memory limit is the run's memory plus that cap,
  because tmpfs pages are charged to it. The *collector* (the trusted evaluator image, runs only
  when the submission exited 0) writes ``tar -cf collect/output.tar output`` onto the exchange
  volume; that tar is at most the cap plus headers. The worker then validates it exactly like
  Docker's ``get_archive`` stream (:func:`.outputs.collect_tar_stream`).
* Trade-off, stated: the emptyDir dies with the pod, so the output crosses the exchange volume
  once, as one bounded tar written by trusted code; the participant never writes to shared
  storage. The inputs are copied per run unless they already live on the exchange volume.
* Limits: CPU, memory (request == limit) and ephemeral storage per container; GPUs through
  ``nvidia.com/gpu``; the Job's ``activeDeadlineSeconds`` is the time limit plus
  ``deadline_margin_s`` (image pull, collector) as a backstop if the worker dies, while the worker
  itself ends the run ``time_limit_s`` after the submission container started. There is no
  per-pod pids limit in the Pod API: set the kubelet's ``podPidsLimit`` on the sandbox nodes.
* No network: the NetworkPolicy ``sandbox-runs-no-network`` selects :data:`RUN_KIND_LABEL`. No
  API access: ``automountServiceAccountToken: false``, ``enableServiceLinks: false``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import (
    SANDBOX_GID,
    SANDBOX_UID,
    SandboxBackend,
    copy_readable,
    finished_result,
    near_full,
    sandbox_error,
    tail_bytes,
)
from .image import evaluator_image_tag
from .outputs import OutputCheck, clear_dir, collect_tar_stream, ensure_empty_dir, stream_limit
from .spec import RunResult, RunSpec

__all__ = [
    "OWNER_LABEL",
    "RUN_KIND",
    "RUN_KIND_LABEL",
    "KubernetesBackend",
    "KubernetesSettings",
    "job_manifest",
    "label_value",
]

# Every run's pod carries RUN_KIND_LABEL=RUN_KIND: the NetworkPolicy in
# deploy/kubernetes/sandbox-policy.yaml selects it to deny all traffic.
RUN_KIND_LABEL = "sandbox.scanbench.org/run-kind"
RUN_KIND = "sandbox-run"
# Who a run belongs to (RunSpec.label, e.g. "evaluation-42"), for remove_leftovers(owner).
OWNER_LABEL = "sandbox.scanbench.org/owner"
RUN_ID_LABEL = "sandbox.scanbench.org/run"
SUBMISSION = "submission"
COLLECTOR = "collector"
_EXCHANGE_VOLUME = "exchange"
_SANDBOX_TMP = "/tmp"  # noqa: S108 -- the path inside the pod, a size-capped emptyDir
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]+")
_LOG_SLACK = 64 * 1024 * 1024  # ephemeral storage for the container's own log files


def label_value(text: str) -> str:
    """``text`` as a valid label value: at most 63 characters of ``[A-Za-z0-9._-]``, starting and
    ending with a letter or digit (``"unlabelled"`` when nothing is left)."""
    value = _LABEL_VALUE.sub("-", text)[:63].strip("._-")
    return value or "unlabelled"


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    """Where and how runs are created. :meth:`from_env` reads the ``SCANBENCH_K8S_*`` variables."""

    evaluator_image: str
    namespace: str = "scanbench-sandbox"
    exchange_claim: str = "scanbench-exchange"
    exchange_root: Path = Path("/exchange")
    deadline_margin_s: int = 300
    ttl_after_finished_s: int = 600
    schedule_timeout_s: float = 900.0
    gpu_resource: str = "nvidia.com/gpu"
    gpu_node_selector: Mapping[str, str] | None = None
    allowed_image_prefixes: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KubernetesSettings:
        env = os.environ if environ is None else environ
        selector: dict[str, str] = {}
        for pair in env.get("SCANBENCH_K8S_GPU_NODE_SELECTOR", "").split(","):
            key, sep, value = pair.strip().partition("=")
            if sep and key:
                selector[key] = value
        prefixes = env.get("SCANBENCH_K8S_ALLOWED_IMAGE_PREFIXES", "")
        return cls(
            evaluator_image=env.get("SCANBENCH_EVALUATOR_IMAGE") or evaluator_image_tag(),
            namespace=env.get("SCANBENCH_K8S_NAMESPACE", "scanbench-sandbox"),
            exchange_claim=env.get("SCANBENCH_K8S_EXCHANGE_CLAIM", "scanbench-exchange"),
            exchange_root=Path(env.get("SCANBENCH_K8S_EXCHANGE_ROOT", "/exchange")),
            gpu_node_selector=selector or None,
            allowed_image_prefixes=tuple(p.strip() for p in prefixes.split(",") if p.strip()),
        )


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": SANDBOX_UID,
        "runAsGroup": SANDBOX_GID,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def job_manifest(
    spec: RunSpec,
    *,
    run_id: str,
    settings: KubernetesSettings,
    input_subpath: str,
    mount_subpaths: tuple[str, ...] = (),
    collect_subpath: str,
) -> dict[str, Any]:
    """The ``batch/v1`` Job that runs ``spec``; pure (no I/O), so it is tested offline.

    ``input_subpath``, ``mount_subpaths`` (one per ``spec.mounts``, same order) and
    ``collect_subpath`` are paths inside the exchange claim. Raises ``ValueError`` for a spec this
    backend must not run (an image outside the evaluator image and the allowed prefixes).
    """
    if len(mount_subpaths) != len(spec.mounts):
        raise ValueError("one exchange subPath per mount is needed")
    for path in (input_subpath, collect_subpath, *mount_subpaths):
        if path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"subPath must be relative and stay inside the claim: {path}")
    image = spec.image or settings.evaluator_image
    if spec.image is not None and not any(
        spec.image.startswith(prefix) for prefix in settings.allowed_image_prefixes
    ):
        raise ValueError(f"image {spec.image} is not the evaluator image or an allowed image")
    limits = spec.limits
    labels = {
        "app.kubernetes.io/part-of": "scanbench",
        RUN_KIND_LABEL: RUN_KIND,
        RUN_ID_LABEL: label_value(run_id),
        OWNER_LABEL: label_value(spec.label),
    }
    cpu = f"{max(1, math.ceil(limits.cpus * 1000))}m"
    # tmpfs pages of /output are charged to the container that writes them.
    memory = str(limits.memory_bytes + limits.output_bytes)
    storage = str(limits.tmp_bytes + _LOG_SLACK)
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": cpu, "memory": memory, "ephemeral-storage": storage},
        "limits": {"cpu": cpu, "memory": memory, "ephemeral-storage": storage},
    }
    if limits.gpus:
        resources["requests"][settings.gpu_resource] = str(limits.gpus)
        resources["limits"][settings.gpu_resource] = str(limits.gpus)

    mounts: list[dict[str, Any]] = [
        {
            "name": _EXCHANGE_VOLUME,
            "mountPath": "/input",
            "subPath": input_subpath,
            "readOnly": True,
        },
        {"name": "output", "mountPath": "/output"},
        {"name": "tmp", "mountPath": _SANDBOX_TMP},
    ]
    for extra, subpath in zip(spec.mounts, mount_subpaths, strict=True):
        mounts.append(
            {
                "name": _EXCHANGE_VOLUME,
                "mountPath": extra.target,
                "subPath": subpath,
                "readOnly": True,
            }
        )
    submission: dict[str, Any] = {
        "name": SUBMISSION,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": key, "value": value}
            for key, value in {"HOME": _SANDBOX_TMP, **spec.environment}.items()
        ],
        "resources": resources,
        "securityContext": _security_context(),
        "volumeMounts": mounts,
    }
    if spec.entrypoint is not None:
        submission["command"] = list(spec.entrypoint)
    if spec.command is not None:
        submission["args"] = list(spec.command)
    if spec.image is None:
        submission["workingDir"] = _SANDBOX_TMP
    collector_size = "64Mi"
    collector: dict[str, Any] = {
        "name": COLLECTOR,
        "image": settings.evaluator_image,
        "imagePullPolicy": "IfNotPresent",
        # Members are named output/...; tar does not follow links, the host refuses them anyway.
        "command": ["tar", "--create", "--file", "/collect/output.tar", "--directory", "/"],
        "args": ["output"],
        "resources": {
            "requests": {"cpu": "100m", "memory": collector_size, "ephemeral-storage": "16Mi"},
            "limits": {"cpu": "100m", "memory": collector_size, "ephemeral-storage": "16Mi"},
        },
        "securityContext": _security_context(),
        "volumeMounts": [
            {"name": "output", "mountPath": "/output", "readOnly": True},
            {"name": _EXCHANGE_VOLUME, "mountPath": "/collect", "subPath": collect_subpath},
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": SANDBOX_UID,
            "runAsGroup": SANDBOX_GID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [submission],
        "containers": [collector],
        "volumes": [
            {
                "name": _EXCHANGE_VOLUME,
                "persistentVolumeClaim": {"claimName": settings.exchange_claim},
            },
            {
                "name": "output",
                "emptyDir": {"medium": "Memory", "sizeLimit": str(limits.output_bytes)},
            },
            {"name": "tmp", "emptyDir": {"sizeLimit": str(limits.tmp_bytes)}},
        ],
    }
    if limits.gpus:
        pod_spec["tolerations"] = [
            {"key": settings.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
        ]
        if settings.gpu_node_selector:
            pod_spec["nodeSelector"] = dict(settings.gpu_node_selector)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": f"scanbench-run-{label_value(run_id).lower()}"[:63].rstrip("-."),
            "namespace": settings.namespace,
            "labels": labels,
        },
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "activeDeadlineSeconds": math.ceil(limits.time_limit_s) + settings.deadline_margin_s,
            "ttlSecondsAfterFinished": settings.ttl_after_finished_s,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


class KubernetesBackend(SandboxBackend):
    """Runs a :class:`RunSpec` as a Kubernetes Job. Untested against a cluster: see the module.

    ``batch_api`` and ``core_api`` (``kubernetes.client.BatchV1Api``/``CoreV1Api``) default to the
    in-cluster configuration, else ``~/.kube/config``.
    """

    name = "kubernetes"

    def __init__(
        self,
        settings: KubernetesSettings | None = None,
        *,
        batch_api: Any = None,
        core_api: Any = None,
        poll_s: float = 1.0,
    ) -> None:
        self.settings = settings or KubernetesSettings.from_env()
        self._batch = batch_api
        self._core = core_api
        self.poll_s = poll_s

    def _apis(self) -> tuple[Any, Any]:
        if self._batch is None or self._core is None:
            import kubernetes  # optional: pip install kubernetes

            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            self._batch = kubernetes.client.BatchV1Api()
            self._core = kubernetes.client.CoreV1Api()
        return self._batch, self._core

    def check(self) -> list[str]:
        try:
            import kubernetes  # noqa: F401
        except ImportError:
            return ["the kubernetes client is not installed (pip install kubernetes)"]
        problems: list[str] = []
        root = self.settings.exchange_root
        if not root.is_dir() or not os.access(root, os.W_OK | os.X_OK):
            problems.append(f"the exchange volume {root} is not a writable folder here")
        try:
            batch, _core = self._apis()
            batch.list_namespaced_job(self.settings.namespace, limit=1)
        except Exception as exc:  # any failure means: cannot run
            problems.append(f"cannot list Jobs in {self.settings.namespace}: {exc}")
        return problems

    def can_run_images(self) -> bool:
        # Participants' docker-save tarballs would have to be pushed to a registry first.
        return False

    def remove_leftovers(self, owner: str | None = None) -> int:
        """Delete the Jobs (and their pods) of ``owner``, or every run's when ``owner`` is None."""
        batch, _core = self._apis()
        selector = f"{RUN_KIND_LABEL}={RUN_KIND}"
        if owner is not None:
            selector += f",{OWNER_LABEL}={label_value(owner)}"
        jobs = batch.list_namespaced_job(self.settings.namespace, label_selector=selector)
        for job in jobs.items:
            with contextlib.suppress(Exception):
                batch.delete_namespaced_job(
                    job.metadata.name, self.settings.namespace, propagation_policy="Background"
                )
        return len(jobs.items)

    def _stage(self, spec: RunSpec, staging: Path) -> tuple[str, tuple[str, ...], str]:
        root = self.settings.exchange_root.resolve()
        source = spec.input_dir.resolve()
        if source.is_relative_to(root) and source.is_dir():
            input_subpath = str(source.relative_to(root))
        else:
            copy_readable(spec.input_dir, staging / "input")
            input_subpath = str((staging / "input").relative_to(root))
        mount_subpaths: list[str] = []
        for index, extra in enumerate(spec.mounts):
            target = staging / "mounts" / str(index)
            copy_readable(extra.source, target)
            if extra.source.is_file():
                target = target / extra.source.name
            mount_subpaths.append(str(target.relative_to(root)))
        collect = staging / "collect"
        collect.mkdir()
        os.chmod(collect, 0o777)  # noqa: S103 -- the collector (uid 65534) writes its tar here
        return input_subpath, tuple(mount_subpaths), str(collect.relative_to(root))

    def run(self, spec: RunSpec) -> RunResult:
        started = time.monotonic()
        ensure_empty_dir(spec.output_dir)
        limits = spec.limits
        run_id = uuid.uuid4().hex[:12]
        namespace = self.settings.namespace
        header = (
            f"[sandbox: kubernetes, run {run_id}, namespace {namespace}, "
            f"image {spec.image or self.settings.evaluator_image}, time {limits.time_limit_s:g} s, "
            f"memory {limits.memory_bytes // 2**20} MiB, cpus {limits.cpus:g}, "
            f"gpus {limits.gpus}]\n"
        )

        def error(message: str, detail: str) -> RunResult:
            return sandbox_error(
                backend=self.name, header=header, started=started, message=message, detail=detail
            )

        staging = self.settings.exchange_root.resolve() / "runs" / run_id
        job_name: str | None = None
        logs = b""
        timed_out = oom = False
        exit_code: int | None = None
        output: OutputCheck | None = None
        run_started = run_ended = started
        teardown = 0.0
        try:
            batch, core = self._apis()
            staging.mkdir(parents=True, mode=0o711)
            input_subpath, mount_subpaths, collect_subpath = self._stage(spec, staging)
            manifest = job_manifest(
                spec,
                run_id=run_id,
                settings=self.settings,
                input_subpath=input_subpath,
                mount_subpaths=mount_subpaths,
                collect_subpath=collect_subpath,
            )
            job_name = manifest["metadata"]["name"]
            batch.create_namespaced_job(namespace, manifest)
            selector = f"{RUN_ID_LABEL}={label_value(run_id)}"
            submission_seen: float | None = None
            collector_done = False
            while True:
                now = time.monotonic()
                pods = core.list_namespaced_pod(namespace, label_selector=selector).items
                pod = pods[0] if pods else None
                status = pod.status if pod is not None else None
                init = {s.name: s for s in (status.init_container_statuses or [])} if status else {}
                main = {s.name: s for s in (status.container_statuses or [])} if status else {}
                sub = init.get(SUBMISSION)
                if sub is not None and sub.state.running is not None and submission_seen is None:
                    submission_seen = now
                    run_started = now
                if sub is not None and sub.state.terminated is not None and exit_code is None:
                    exit_code = int(sub.state.terminated.exit_code)
                    oom = sub.state.terminated.reason == "OOMKilled"
                    run_ended = now
                if status is not None and status.reason == "DeadlineExceeded" and exit_code is None:
                    timed_out = True
                running_s = now - submission_seen if submission_seen is not None else 0.0
                if exit_code is None and running_s > limits.time_limit_s:
                    timed_out = True
                if submission_seen is None and now - started > self.settings.schedule_timeout_s:
                    return error(
                        "The sandbox failed; this is not the submission's fault.",
                        "the run's pod did not start within "
                        f"{self.settings.schedule_timeout_s:g} s",
                    )
                col = main.get(COLLECTOR)
                if col is not None and col.state.terminated is not None:
                    collector_done = col.state.terminated.exit_code == 0
                phase = status.phase if status is not None else None
                if timed_out or phase in ("Succeeded", "Failed"):
                    run_ended = run_ended if exit_code is not None else now
                    break
                time.sleep(self.poll_s)
            if pod is not None:
                with contextlib.suppress(Exception):
                    text = core.read_namespaced_pod_log(
                        pod.metadata.name, namespace, container=SUBMISSION, tail_lines=2000
                    )
                    logs = str(text).encode("utf-8", errors="replace")
            if timed_out:
                oom = False
            elif exit_code == 0 and not oom:
                tar_path = staging / "collect" / "output.tar"
                if not collector_done or not tar_path.is_file():
                    return error(
                        "The sandbox failed; this is not the submission's fault.",
                        "the collector did not write the output tar",
                    )
                if tar_path.stat().st_size > stream_limit(limits):
                    output = OutputCheck(
                        ok=False, full=True, participant_reason="it filled the output limit"
                    )
                else:
                    with tar_path.open("rb") as stream:
                        output = collect_tar_stream(
                            stream, spec.output_dir, policy=spec.output_policy, limits=limits
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
        except ImportError:
            return error(
                "This installation cannot run code submissions.",
                "the kubernetes client is not installed (pip install kubernetes)",
            )
        except Exception as exc:  # API errors: the sandbox's fault, not the code's
            return error("The sandbox failed; this is not the submission's fault.", repr(exc))
        finally:
            cleanup_started = time.monotonic()
            if job_name is not None and self._batch is not None:
                with contextlib.suppress(Exception):
                    self._batch.delete_namespaced_job(
                        job_name, namespace, propagation_policy="Background"
                    )
            shutil.rmtree(staging, ignore_errors=True)
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
