"""deploy/kubernetes/ and the Job sandbox's manifests, checked offline.

Every YAML document and every Job rendered by ``evaluator.sandbox.k8s_backend.job_manifest`` is
validated against the Kubernetes OpenAPI schemas shipped by the PyPI package
``kubernetes-validate`` (strict: an unknown field is an error), then the security properties are
asserted. No cluster is involved: nothing here proves the objects are *accepted* by an API server
(admission, quota, CNI), only that they are well-formed and say what docs/kubernetes.md claims.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
import yaml

from evaluator.sandbox import Limits, Mount, RunSpec, RunStatus, get_backend
from evaluator.sandbox.k8s_backend import (
    OWNER_LABEL,
    RUN_KIND,
    RUN_KIND_LABEL,
    KubernetesBackend,
    KubernetesSettings,
    job_manifest,
    label_value,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes minor still in common support and the newest the package ships.
VERSIONS = ("1.33", kubernetes_validate.utils.latest_version())
WORKLOADS = {"Deployment", "Job"}
PLATFORM_NS = "scanbench"
SANDBOX_NS = "scanbench-sandbox"
GiB = 1024**3
MiB = 1024**2


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(DEPLOY.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


DOCS = _documents()


def _ids() -> list[str]:
    return [f"{name}:{doc['kind']}/{doc['metadata']['name']}" for name, doc in DOCS]


def _of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _name, doc in DOCS if doc["kind"] == kind]


def _named(kind: str, name: str, namespace: str = PLATFORM_NS) -> dict[str, Any]:
    (doc,) = [
        d
        for d in _of_kind(kind)
        if d["metadata"]["name"] == name and d["metadata"].get("namespace") == namespace
    ]
    return doc


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    return spec


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _validate(doc: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        # The package's message quotes the whole schema; the path and the reason are enough.
        cause = exc.caused_by
        where = "/".join(str(p) for p in cause.absolute_path)
        pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {where}: {cause.message}")


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What keeps ``pod`` from the "restricted" Pod Security Standard (and our own rules:
    read-only root, resources on every container). Empty when it complies."""
    problems = []
    pod_sc = pod.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(key)
    for volume in pod.get("volumes", []):
        if "hostPath" in volume:
            problems.append(f"hostPath volume {volume['name']}")
    for container in _containers(pod):
        name = container["name"]
        sc = container.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get(
            "add"
        ):
            problems.append(f"{name}: capabilities")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) in (None, 0):
            problems.append(f"{name}: runAsUser")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{name}: readOnlyRootFilesystem")
        resources = container.get("resources", {})
        if "memory" not in resources.get("limits", {}):
            problems.append(f"{name}: no memory limit")
        if "ephemeral-storage" not in resources.get("limits", {}):
            problems.append(f"{name}: no ephemeral-storage limit")
        if "cpu" not in resources.get("requests", {}):
            problems.append(f"{name}: no cpu request")
    return problems


# --- every document --------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("name", "doc"), DOCS, ids=_ids())
def test_every_manifest_validates_strictly_against_the_kubernetes_schema(
    name: str, doc: dict[str, Any], version: str
) -> None:
    _validate(doc, version)


def test_the_validator_is_strict_and_can_fail() -> None:
    broken = yaml.safe_load((DEPLOY / "beat.yaml").read_text())
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    wrong_type = yaml.safe_load((DEPLOY / "beat.yaml").read_text())
    wrong_type["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}
    assert len(kustomization["resources"]) == len(set(kustomization["resources"]))
    # A kustomize "namespace:" would move the sandbox's objects into the platform namespace.
    assert "namespace" not in kustomization
    images = {i["name"]: i for i in kustomization["images"]}
    assert images["scanbench/app"]["newTag"] not in ("", "latest")


def test_every_object_says_which_namespace_it_lives_in() -> None:
    for _name, doc in DOCS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") in (PLATFORM_NS, SANDBOX_NS), doc["kind"]
    namespaces = {d["metadata"]["name"]: d for d in _of_kind("Namespace")}
    assert set(namespaces) == {PLATFORM_NS, SANDBOX_NS}
    for ns in namespaces.values():
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_every_workload_is_non_root_read_only_and_has_resources() -> None:
    workloads = [d for _n, d in DOCS if d["kind"] in WORKLOADS]
    assert {d["metadata"]["name"] for d in workloads} == {
        "web",
        "worker-cpu",
        "worker-gpu",
        "beat",
        "migrate",
    }
    for doc in workloads:
        assert restricted_violations(_pod_spec(doc)) == [], doc["metadata"]["name"]


def test_images_are_pinned_through_the_kustomization_never_latest() -> None:
    for doc in (d for _n, d in DOCS if d["kind"] in WORKLOADS):
        for container in _containers(_pod_spec(doc)):
            name, _, tag = container["image"].rpartition(":")
            assert name == "scanbench/app", container["image"]
            assert tag and tag != "latest"


def test_only_the_gpu_worker_holds_an_api_token() -> None:
    for doc in (d for _n, d in DOCS if d["kind"] in WORKLOADS):
        pod = _pod_spec(doc)
        if doc["metadata"]["name"] == "worker-gpu":
            assert pod["serviceAccountName"] == "scanbench-gpu-worker"
            assert pod["automountServiceAccountToken"] is True
        else:
            assert pod["automountServiceAccountToken"] is False
            assert "serviceAccountName" not in pod


def test_the_secret_template_holds_placeholders_only_and_is_not_applied() -> None:
    (secret,) = _of_kind("Secret")
    assert secret["stringData"]
    for key, value in secret["stringData"].items():
        assert "REPLACE_ME" in value, key
    assert "data" not in secret
    text = "\n".join((DEPLOY / n).read_text() for n in ("configmap.yaml", "kustomization.yaml"))
    for secret_name in ("SECRET_KEY", "DATABASE_URL", "PASSWORD"):
        assert secret_name not in yaml.safe_load((DEPLOY / "configmap.yaml").read_text())["data"]
    assert "secretGenerator" not in text


# --- the platform ----------------------------------------------------------------------------


def test_web_probes_readyz_and_healthz_on_port_8000() -> None:
    web = _named("Deployment", "web")
    (container,) = _pod_spec(web)["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and ports[ready["port"]] == 8000
    assert live["path"] == "/healthz" and ports[live["port"]] == 8000
    assert container["command"][0] == "gunicorn"
    service = _named("Service", "web")
    assert service["spec"]["selector"] == web["spec"]["selector"]["matchLabels"]


def test_ingress_lets_the_largest_upload_through() -> None:
    (ingress,) = _of_kind("Ingress")
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", size.lower()).groups()  # type: ignore[union-attr]
    proxy_bytes = int(number) * {"": 1, "k": 1024, "m": MiB, "g": GiB}[unit]
    config = _named("ConfigMap", "scanbench-config")["data"]
    assert proxy_bytes > int(config["SCANBENCH_MAX_UPLOAD_BYTES"])


@pytest.mark.parametrize(("name", "queue"), [("worker-cpu", "cpu"), ("worker-gpu", "gpu")])
def test_workers_consume_their_queue_one_task_at_a_time(name: str, queue: str) -> None:
    (container,) = _pod_spec(_named("Deployment", name))["containers"]
    cmd = container["command"]
    assert cmd[:4] == ["celery", "-A", "config", "worker"]
    assert cmd[cmd.index("-Q") + 1] == queue
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    assert cmd[cmd.index("--prefetch-multiplier") + 1] == "1"


def test_gpu_worker_runs_its_sandbox_as_jobs_and_mounts_the_exchange_volume() -> None:
    config = _named("ConfigMap", "scanbench-config")["data"]
    assert config["SCANBENCH_SANDBOX_BACKEND"] == "kubernetes"
    assert config["SCANBENCH_K8S_NAMESPACE"] == SANDBOX_NS
    pod = _pod_spec(_named("Deployment", "worker-gpu"))
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    (container,) = pod["containers"]
    mounts = {m["mountPath"]: claims.get(m["name"]) for m in container["volumeMounts"]}
    assert mounts[config["SCANBENCH_K8S_EXCHANGE_ROOT"]] == config["SCANBENCH_K8S_EXCHANGE_CLAIM"]
    assert mounts["/data"] == "scanbench-data"
    # The claim the runs mount exists in their namespace, ReadWriteMany.
    exchange = _named("PersistentVolumeClaim", config["SCANBENCH_K8S_EXCHANGE_CLAIM"], SANDBOX_NS)
    assert exchange["spec"]["accessModes"] == ["ReadWriteMany"]
    assert _named("PersistentVolumeClaim", "scanbench-data")["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]


def test_beat_is_a_single_replica_that_is_recreated() -> None:
    beat = _named("Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_migrate_job_migrates_and_collects_static_files() -> None:
    job = _named("Job", "migrate")
    (container,) = _pod_spec(job)["containers"]
    command = " ".join(container["command"])
    assert "manage.py migrate --noinput" in command and "collectstatic --noinput" in command
    assert _pod_spec(job)["restartPolicy"] == "Never"


# --- the sandbox namespace -------------------------------------------------------------------


def test_gpu_worker_may_manage_jobs_and_read_logs_in_the_sandbox_namespace_only() -> None:
    assert not _of_kind("ClusterRole") and not _of_kind("ClusterRoleBinding")
    (role,) = _of_kind("Role")
    (binding,) = _of_kind("RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == SANDBOX_NS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "scanbench-gpu-worker", "namespace": PLATFORM_NS}
    ]
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert {"create", "get", "list", "delete"} <= granted[("batch", "jobs")]
    assert granted[("", "pods/log")] == {"get"}
    assert set(granted) == {("batch", "jobs"), ("", "pods"), ("", "pods/log")}
    for verbs in granted.values():
        assert "*" not in verbs and not verbs & {"escalate", "bind", "impersonate"}


def _sandbox_policy() -> dict[str, Any]:
    (policy,) = [
        p
        for p in _of_kind("NetworkPolicy")
        if p["metadata"]["namespace"] == SANDBOX_NS and p["spec"]["podSelector"].get("matchLabels")
    ]
    return policy


def test_network_policy_denies_all_traffic_of_sandbox_runs() -> None:
    policy = _sandbox_policy()
    assert policy["spec"]["podSelector"] == {"matchLabels": {RUN_KIND_LABEL: RUN_KIND}}
    assert sorted(policy["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    # No rule at all: nothing is allowed in either direction.
    assert "ingress" not in policy["spec"] and "egress" not in policy["spec"]


def test_sandbox_namespace_has_a_quota_and_container_limits() -> None:
    (quota,) = _of_kind("ResourceQuota")
    (limit_range,) = _of_kind("LimitRange")
    assert quota["metadata"]["namespace"] == limit_range["metadata"]["namespace"] == SANDBOX_NS
    hard = quota["spec"]["hard"]
    for key in ("pods", "limits.memory", "limits.cpu", "requests.nvidia.com/gpu"):
        assert key in hard
    (container_limits,) = limit_range["spec"]["limits"]
    assert container_limits["type"] == "Container"
    assert {"cpu", "memory", "ephemeral-storage"} <= set(container_limits["max"])


# --- the rendered Job ------------------------------------------------------------------------

SETTINGS = KubernetesSettings(
    evaluator_image="registry.example.org/scanbench/evaluator-base:0123456789abcdef",
    allowed_image_prefixes=("registry.example.org/organizers/",),
    gpu_node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
)


def _specs(tmp: Path) -> dict[str, RunSpec]:
    model = tmp / "model.onnx"
    model.write_bytes(b"onnx")
    return {
        "model": RunSpec(
            input_dir=tmp / "in",
            output_dir=tmp / "out",
            command=("python3", "/opt/scanbench_runner/main.py"),
            mounts=(Mount(source=tmp, target="/opt/scanbench_runner"), Mount(model, "/opt/model")),
            limits=Limits(time_limit_s=900.5, memory_bytes=8 * GiB, cpus=2.5),
            label="evaluation-42",
        ),
        "gpu": RunSpec(
            input_dir=tmp / "in",
            output_dir=tmp / "out",
            limits=Limits(gpus=2),
            label="evaluation-43",
        ),
        "organizer image": RunSpec(
            input_dir=tmp / "in",
            output_dir=tmp / "out",
            image="registry.example.org/organizers/scorer:1.2",
            entrypoint=("/score",),
            command=("--fast",),
            environment={"THREADS": "1"},
            label="Évaluation 44 / scoring program with a very long name that goes on and on",
        ),
    }


def _render(spec: RunSpec, run_id: str = "0123456789ab") -> dict[str, Any]:
    return job_manifest(
        spec,
        run_id=run_id,
        settings=SETTINGS,
        input_subpath=f"runs/{run_id}/input",
        mount_subpaths=tuple(f"runs/{run_id}/mounts/{i}" for i in range(len(spec.mounts))),
        collect_subpath=f"runs/{run_id}/collect",
    )


@pytest.mark.parametrize("kind", ["model", "gpu", "organizer image"])
@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_job_validates_strictly(tmp_path: Path, kind: str, version: str) -> None:
    _validate(_render(_specs(tmp_path)[kind]), version)


@pytest.mark.parametrize("kind", ["model", "gpu", "organizer image"])
def test_rendered_job_is_locked_down(tmp_path: Path, kind: str) -> None:
    spec = _specs(tmp_path)[kind]
    job = _render(spec)
    pod = job["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert "serviceAccountName" not in pod
    assert pod["restartPolicy"] == "Never"
    for container in _containers(pod):
        sc = container["securityContext"]
        assert sc["runAsUser"] == 65534 and sc["runAsNonRoot"] is True
        resources = container["resources"]
        assert resources["requests"]["memory"] == resources["limits"]["memory"]
        assert resources["requests"]["cpu"] == resources["limits"]["cpu"]
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    deadline = job["spec"]["activeDeadlineSeconds"]
    assert spec.limits.time_limit_s <= deadline <= spec.limits.time_limit_s + 3600


def test_the_network_policy_selects_every_rendered_run(tmp_path: Path) -> None:
    selector = _sandbox_policy()["spec"]["podSelector"]["matchLabels"]
    for spec in _specs(tmp_path).values():
        job = _render(spec)
        assert job["metadata"]["namespace"] == _sandbox_policy()["metadata"]["namespace"]
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


def test_rendered_job_mounts_inputs_read_only_and_caps_output_and_tmp(tmp_path: Path) -> None:
    spec = _specs(tmp_path)["model"]
    pod = _render(spec)["spec"]["template"]["spec"]
    (submission,) = pod["initContainers"]
    (collector,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in submission["volumeMounts"]}
    for path in ("/input", "/opt/scanbench_runner", "/opt/model"):
        assert mounts[path]["readOnly"] is True
        assert mounts[path]["subPath"].startswith("runs/0123456789ab/")
        assert volumes[mounts[path]["name"]]["persistentVolumeClaim"] == {
            "claimName": SETTINGS.exchange_claim
        }
    output = volumes[mounts["/output"]["name"]]["emptyDir"]
    assert output == {"medium": "Memory", "sizeLimit": str(spec.limits.output_bytes)}
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["sizeLimit"] == str(spec.limits.tmp_bytes)
    # tmpfs pages of /output count against the submission's memory: the cap is added to it.
    limits = submission["resources"]["limits"]
    assert int(limits["memory"]) == spec.limits.memory_bytes + spec.limits.output_bytes
    assert int(limits["ephemeral-storage"]) >= spec.limits.tmp_bytes
    assert limits["cpu"] == "2500m"
    assert submission["args"] == list(spec.command or ())
    assert submission["image"] == SETTINGS.evaluator_image
    # The trusted collector reads /output read-only and only it writes to the exchange volume.
    assert collector["image"] == SETTINGS.evaluator_image
    collector_mounts = {m["mountPath"]: m for m in collector["volumeMounts"]}
    assert collector_mounts["/output"]["readOnly"] is True
    assert collector_mounts["/collect"]["subPath"] == "runs/0123456789ab/collect"
    assert all(m.get("readOnly") for m in submission["volumeMounts"] if m["name"] == "exchange")


def test_gpu_is_requested_only_when_the_run_asks_for_one(tmp_path: Path) -> None:
    for kind, spec in _specs(tmp_path).items():
        pod = _render(spec)["spec"]["template"]["spec"]
        (submission,) = pod["initContainers"]
        resources = submission["resources"]
        if kind == "gpu":
            assert resources["limits"]["nvidia.com/gpu"] == "2"
            assert resources["requests"]["nvidia.com/gpu"] == "2"
            assert pod["nodeSelector"] == dict(SETTINGS.gpu_node_selector or {})
            assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        else:
            assert "nvidia.com/gpu" not in str(pod)
            assert "nodeSelector" not in pod and "tolerations" not in pod


def test_rendered_job_is_labelled_with_its_owner_for_cleanup(tmp_path: Path) -> None:
    valid = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
    for spec in _specs(tmp_path).values():
        job = _render(spec)
        labels = job["metadata"]["labels"]
        assert labels[OWNER_LABEL] == label_value(spec.label)
        assert all(valid.match(v) for v in labels.values()), labels
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])
    assert _render(_specs(tmp_path)["model"])["metadata"]["labels"][OWNER_LABEL] == "evaluation-42"


def test_rendered_job_refuses_unknown_images_and_escaping_subpaths(tmp_path: Path) -> None:
    spec = RunSpec(input_dir=tmp_path, output_dir=tmp_path / "o", image="docker.io/evil:1")
    with pytest.raises(ValueError, match="not the evaluator image"):
        _render(spec)
    plain = RunSpec(input_dir=tmp_path, output_dir=tmp_path / "o")
    with pytest.raises(ValueError, match="subPath"):
        job_manifest(
            plain,
            run_id="x",
            settings=SETTINGS,
            input_subpath="../private/labels",
            collect_subpath="runs/x/collect",
        )


def test_kubernetes_is_a_backend_choice_never_picked_automatically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCANBENCH_EVALUATOR_IMAGE", SETTINGS.evaluator_image)
    backend = get_backend("kubernetes")
    assert isinstance(backend, KubernetesBackend)
    assert backend.settings.evaluator_image == SETTINGS.evaluator_image
    assert not backend.can_run_images()


# --- the backend's bookkeeping, against a fake API (not a cluster) ---------------------------


class _FakeCluster:
    """Plays the API server and kubelet: on create, "runs" the pod by writing the collector's tar
    into the exchange folder the Job names, with the submission's exit code."""

    def __init__(self, exchange: Path, files: dict[str, bytes], exit_code: int = 0) -> None:
        self.exchange = exchange
        self.files = files
        self.exit_code = exit_code
        self.created: list[dict[str, Any]] = []
        self.deleted: list[str] = []

    # BatchV1Api
    def create_namespaced_job(self, namespace: str, body: dict[str, Any]) -> None:
        self.created.append(body)
        pod = body["spec"]["template"]["spec"]
        if self.exit_code == 0:
            (collector,) = pod["containers"]
            (collect,) = [m for m in collector["volumeMounts"] if m["mountPath"] == "/collect"]
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                for name, data in self.files.items():
                    info = tarfile.TarInfo(f"output/{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            (self.exchange / collect["subPath"] / "output.tar").write_bytes(buffer.getvalue())

    def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> None:
        self.deleted.append(name)

    # CoreV1Api
    def list_namespaced_pod(self, namespace: str, label_selector: str) -> Any:
        def state(code: int) -> Any:
            terminated = SimpleNamespace(
                exit_code=code, reason="Completed" if code == 0 else "Error"
            )
            return SimpleNamespace(state=SimpleNamespace(running=None, terminated=terminated))

        sub = state(self.exit_code)
        sub.name = "submission"
        statuses = []
        if self.exit_code == 0:
            col = state(0)
            col.name = "collector"
            statuses.append(col)
        status = SimpleNamespace(
            phase="Succeeded" if self.exit_code == 0 else "Failed",
            reason=None,
            init_container_statuses=[sub],
            container_statuses=statuses,
        )
        return SimpleNamespace(
            items=[SimpleNamespace(status=status, metadata=SimpleNamespace(name="p"))]
        )

    def read_namespaced_pod_log(self, name: str, namespace: str, **_: Any) -> str:
        return "hello from the pod\n"


def _backend(tmp_path: Path, cluster: _FakeCluster) -> KubernetesBackend:
    settings = KubernetesSettings(
        evaluator_image=SETTINGS.evaluator_image, exchange_root=cluster.exchange
    )
    return KubernetesBackend(settings, batch_api=cluster, core_api=cluster, poll_s=0.01)


def test_backend_stages_inputs_validates_the_output_tar_and_cleans_up(tmp_path: Path) -> None:
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "case1.nii.gz").write_bytes(b"x")
    cluster = _FakeCluster(exchange, {"predictions.csv": b"case_id,score\ncase1,0.5\n"})
    spec = RunSpec(input_dir=inputs, output_dir=tmp_path / "out", label="evaluation-7")
    result = _backend(tmp_path, cluster).run(spec)
    assert result.status is RunStatus.SUCCEEDED, result.logs_tail
    assert (tmp_path / "out" / "predictions.csv").read_bytes().startswith(b"case_id,score")
    assert "hello from the pod" in result.logs_tail
    (job,) = cluster.created
    assert cluster.deleted == [job["metadata"]["name"]]
    assert list((exchange / "runs").iterdir()) == []  # the staging folder is gone


def test_backend_refuses_a_self_reported_score_in_the_output_tar(tmp_path: Path) -> None:
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    (tmp_path / "inputs").mkdir()
    cluster = _FakeCluster(exchange, {"metrics.json": b'{"dice": 1.0}'})
    spec = RunSpec(input_dir=tmp_path / "inputs", output_dir=tmp_path / "out")
    result = _backend(tmp_path, cluster).run(spec)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert list((tmp_path / "out").iterdir()) == []


def test_backend_reports_the_submissions_exit_code(tmp_path: Path) -> None:
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    (tmp_path / "inputs").mkdir()
    cluster = _FakeCluster(exchange, {}, exit_code=3)
    spec = RunSpec(input_dir=tmp_path / "inputs", output_dir=tmp_path / "out")
    result = _backend(tmp_path, cluster).run(spec)
    assert result.status is RunStatus.EXIT_CODE and result.exit_code == 3
    assert result.participant_message == "The submission stopped with exit code 3."
