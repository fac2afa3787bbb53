"""Fixtures of the sandbox suite: a real Docker engine, the evaluator image (built if missing),
small images built FROM it (never pulled), inputs with hidden labels beside them."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import socket
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from evaluator.sandbox import (
    BubblewrapBackend,
    DockerBackend,
    build_evaluator_image,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "LABEL-SECRET-7f3a9c"  # written into the hidden labels; must never be seen inside


@pytest.fixture(scope="session")
def docker_backend(docker_client, evaluator_image) -> DockerBackend:  # type: ignore[no-untyped-def]
    backend = DockerBackend(docker_client, evaluator_image=evaluator_image)
    assert backend.check() == []
    return backend


@pytest.fixture(scope="session")
def bwrap_backend() -> BubblewrapBackend:
    backend = BubblewrapBackend()
    if not (backend.rootfs / ".scanbench-recipe").is_file():
        if os.geteuid() != 0:
            pytest.skip("the evaluator root file system is missing and building it needs root")
        os.environ.setdefault("SCANBENCH_SKIP_DOCKER", "0")
        build_evaluator_image(python=sys.executable)
    problems = backend.check()
    if problems:
        pytest.skip(f"bubblewrap cannot run here: {problems}")
    return backend


@pytest.fixture(scope="session")
def build_image(docker_client, evaluator_image) -> Callable[..., str]:  # type: ignore[no-untyped-def]
    """Build a small image ``FROM`` the evaluator image: a script as /app/main.py, extra lines.

    Tagged by the hash of its Dockerfile and script, so a session builds each once.
    """
    made: list[str] = []

    def build(script: str, *, extra: str = "", user_root: bool = False) -> str:
        dockerfile = f"FROM {evaluator_image}\n"
        if user_root:
            dockerfile += "USER 0:0\n"
        dockerfile += extra + 'COPY main.py /app/main.py\nCMD ["python3", "/app/main.py"]\n'
        digest = hashlib.sha256((dockerfile + script).encode()).hexdigest()[:12]
        tag = f"scanbench-test/sandbox:{digest}"
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as archive:
            for name, text in (("Dockerfile", dockerfile), ("main.py", script)):
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(data))
        context.seek(0)
        docker_client.images.build(
            fileobj=context,
            custom_context=True,
            tag=tag,
            network_mode="none",
            rm=True,
            forcerm=True,
            pull=False,
        )
        made.append(tag)
        return tag

    yield build
    for tag in made:
        with contextlib.suppress(Exception):
            docker_client.images.remove(tag, force=True)


@pytest.fixture
def case_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """``inputs`` (4 PNG cases, 0600 like a worker's storage) and ``labels`` beside them."""
    from PIL import Image

    inputs = tmp_path / "inputs"
    labels = tmp_path / "labels"
    inputs.mkdir()
    labels.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        level = 200 if i % 2 else 40
        pixels = np.clip(rng.normal(level, 10, (24, 24)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(inputs / f"case{i}.png")
        (inputs / f"case{i}.png").chmod(0o600)
    (labels / "labels.csv").write_text(
        "case_id,label,note\n" + "".join(f"case{i},{i % 2},{SECRET}\n" for i in range(4))
    )
    return inputs, labels


def host_targets() -> list[str]:
    """Every address of this machine a container could try: loopback, own interfaces, a bridge
    gateway if Docker made one; on the PostgreSQL and Redis ports. Nothing off this machine."""
    addresses = {"127.0.0.1", "[::1]"}
    try:
        out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=False)
        for line in out.stdout.splitlines():
            parts = line.split()
            if len(parts) > 3 and parts[2] in ("inet", "inet6"):
                address = parts[3].split("/")[0]
                if not address.startswith("fe80"):
                    addresses.add(f"[{address}]" if ":" in address else address)
    except OSError:
        pass
    return sorted(f"{a}:{p}" for a in addresses for p in (5432, 6379))


def listening(target: str) -> bool:
    host, port = target.rsplit(":", 1)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        return s.connect_ex((host.strip("[]"), int(port))) == 0


def host_snapshot(paths: list[Path]) -> dict[str, object]:
    """What the host looks like: files under ``paths`` and their hashes, for before/after."""
    state: dict[str, object] = {}
    for root in paths:
        if not root.exists():
            continue
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                full = os.path.join(dirpath, name)
                try:
                    with open(full, "rb") as handle:
                        state[full] = hashlib.sha256(handle.read()).hexdigest()
                except OSError:
                    state[full] = "unreadable"
    return state


@pytest.fixture
def host_unchanged(case_dirs: tuple[Path, Path]) -> Iterator[None]:
    """Asserts after the test that inputs and labels are byte for byte the same and that no
    sandbox container or volume is left on the engine."""
    inputs, labels = case_dirs
    before = host_snapshot([inputs, labels])
    yield
    assert host_snapshot([inputs, labels]) == before
    try:
        import docker

        client = docker.from_env()
        left = client.containers.list(all=True, filters={"label": "org.scanbench.sandbox"})
        volumes = client.volumes.list(filters={"label": "org.scanbench.sandbox"})
        assert not left, f"containers left behind: {left}"
        assert not volumes, f"volumes left behind: {volumes}"
    except ImportError:
        pass
