"""Shared fixtures: real PostgreSQL (pytest-django's test database), real Redis, real Celery
worker processes started against that same test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from evaluator.sandbox import build_evaluator_image, evaluator_image_tag, evaluator_rootfs
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the worker's whole process group (the main process and its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def worker_env(transactional_db: None, settings: object) -> dict[str, str]:
    """Environment for worker processes: the test database pytest-django created."""
    from django.db import connection

    env = dict(os.environ)
    db = connection.settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("worker tests need PostgreSQL: run them through scripts/test")
    env["DATABASE_URL"] = (
        f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        f"/{db['NAME']}"
    )
    env["CONN_MAX_AGE"] = "0"
    return env


@pytest.fixture
def start_worker(
    worker_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``celery worker`` processes against Redis and the test database."""
    from django.conf import settings

    if not settings.CELERY_BROKER_URL.startswith("redis"):
        pytest.skip("worker tests need Redis as the broker: run them through scripts/test")
    import redis

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()  # the test broker database holds only this test's messages
    workers: list[WorkerProcess] = []

    def start(
        *, queues: str = "cpu", name: str | None = None, extra_env: dict[str, str] | None = None
    ) -> WorkerProcess:
        n = len(workers)
        log = tmp_path / f"worker{n}.log"
        env = {**worker_env, **(extra_env or {})}
        fh = log.open("wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                "1",
                "--prefetch-multiplier",
                "1",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--hostname",
                name or f"test{n}-{os.getpid()}@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        worker = WorkerProcess(proc, log)
        workers.append(worker)
        wait_for(lambda: "ready" in worker.output() or proc.poll() is not None, timeout=60)
        if proc.poll() is not None:
            pytest.fail(f"worker exited at start:\n{worker.output()}")
        return worker

    yield start
    for w in workers:
        if w.proc.poll() is None:
            w.kill(signal.SIGTERM)
    broker.flushdb()


# --- Docker and the evaluator image (shared by the sandbox and pipeline suites) -------------


def _docker_client():  # type: ignore[no-untyped-def]
    import docker

    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine answers ({exc}); CI starts one, see docs/sandbox.md")
    return client


@pytest.fixture(scope="session")
def docker_client():  # type: ignore[no-untyped-def]
    return _docker_client()


@pytest.fixture(scope="session")
def evaluator_image(docker_client) -> str:  # type: ignore[no-untyped-def]
    """The evaluator base image, built by platform/evaluator-image/build.sh if it is missing."""
    import docker.errors

    tag = evaluator_image_tag()
    try:
        docker_client.images.get(tag)
        if (evaluator_rootfs() / ".scanbench-recipe").is_file():
            return tag
    except docker.errors.ImageNotFound:
        pass
    if os.geteuid() != 0:
        pytest.skip(f"{tag} is missing and building it needs root (debootstrap)")
    return build_evaluator_image(python=sys.executable)
