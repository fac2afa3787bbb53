"""SCANBENCH_STORAGE=s3 against a real S3-compatible server: moto's stand-alone server, started
here as a subprocess (docs/storage.md). An import puts public files in the public bucket and
hidden labels only in the private one, a real worker with no local copy of anything scores a
submission from its S3 cache, and a download is a redirect to a presigned URL."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from challenges.models import DataFile, Result
from challenges.services.bundles import challenge_import_bundle
from challenges.services.submissions import submission_create
from evaluator.synthetic import write_nifti
from tests.factories import UserFactory
from tests.helpers import final_evaluation

PUBLIC, PRIVATE = "sb-public", "sb-private"
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "scanbench-test", "AWS_SECRET_ACCESS_KEY": "scanbench-test"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real HTTP S3 endpoint: ``python -m moto.server`` on a free local port."""
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"moto[server] is not installed ({exc}): pip install -r requirements-dev.txt")
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{endpoint}/moto-api/", timeout=2).ok:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"moto server did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    yield endpoint
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture
def s3(moto_endpoint: str, settings, monkeypatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Fresh buckets, and this process's settings switched to SCANBENCH_STORAGE=s3 (what
    config/settings.py derives from the same environment the worker gets)."""
    import boto3

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    for bucket in (PUBLIC, PRIVATE):
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=bucket)
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
    options = {
        **settings.SCANBENCH_S3_OPTIONS,
        "endpoint_url": moto_endpoint,
        "region_name": REGION,
        "addressing_style": "path",
    }
    settings.VAR_DIR = tmp_path / "web-var"
    settings.MEDIA_ROOT = tmp_path / "web-var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "web-var" / "private"
    settings.SCANBENCH_STORAGE = "s3"
    settings.SCANBENCH_S3_OPTIONS = options
    settings.SCANBENCH_S3_PUBLIC_BUCKET = PUBLIC
    settings.SCANBENCH_S3_PRIVATE_BUCKET = PRIVATE
    settings.SCANBENCH_S3_CACHE_DIR = tmp_path / "web-var" / "s3-cache"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**options, "bucket_name": PRIVATE},
        },
    }
    worker_var = tmp_path / "worker-var"  # nothing of the web side's files is in there
    worker_env = {
        **CREDENTIALS,
        "SCANBENCH_STORAGE": "s3",
        "SCANBENCH_S3_ENDPOINT_URL": moto_endpoint,
        "SCANBENCH_S3_REGION": REGION,
        "SCANBENCH_S3_PUBLIC_BUCKET": PUBLIC,
        "SCANBENCH_S3_PRIVATE_BUCKET": PRIVATE,
        "SCANBENCH_VAR_DIR": str(worker_var),
        "MEDIA_ROOT": str(worker_var / "media"),
        "SCANBENCH_PRIVATE_ROOT": str(worker_var / "private"),
        "SCANBENCH_S3_CACHE_DIR": str(worker_var / "s3-cache"),
    }
    return client, moto_endpoint, worker_env, worker_var


def _keys(client, bucket: str) -> set[str]:  # type: ignore[no-untyped-def]
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def _segmentation_bundle(folder: Path) -> Path:
    """Eight NIfTI cases (four train, four test), a box mask for each."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    rng = np.random.default_rng(5)
    rows = ["case_id,split"]
    for i in range(8):
        case_id, split = f"seg{i:02d}", "train" if i < 4 else "test"
        rows.append(f"{case_id},{split}")
        mask = np.zeros((16, 12, 6), dtype=np.uint8)
        mask[4:9, 3:8, 1:4] = 1
        image = rng.normal(size=(16, 12, 6)).astype(np.float32) + 3 * mask
        write_nifti(folder / "images" / f"{case_id}.nii.gz", image, (0.8, 0.8, 2.5))
        write_nifti(folder / "labels" / f"{case_id}.nii.gz", mask, (0.8, 0.8, 2.5))
    (folder / "cases.csv").write_text("\n".join(rows) + "\n")
    manifest = {
        "slug": "s3-demo",
        "title": "Object storage demo",
        "summary": "Find the box.",
        "task": "segmentation",
        "classes": ["box"],
        "licence": "CC0 1.0",
        "attribution": "Generated.",
        "dataset": {"cases": "cases.csv", "inputs": "images", "labels": "labels"},
        "phases": [{"slug": "open", "title": "Open", "metrics": ["dice"], "daily_limit": 5}],
    }
    (folder / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    return folder


def test_s3_import_scoring_and_presigned_downloads_keep_hidden_labels_private(
    s3: Any, start_worker: Any, tmp_path: Path
) -> None:
    client, endpoint, worker_env, worker_var = s3
    report = challenge_import_bundle(path=_segmentation_bundle(tmp_path / "bundle"))
    challenge = report.challenge
    challenge.is_published = True
    challenge.save(update_fields=["is_published"])

    # Public files in the public bucket; hidden test masks only in the private one.
    public, private = _keys(client, PUBLIC), _keys(client, PRIVATE)
    inputs = {k for k in public if "/train/" in k or "/test/" in k}
    assert len(inputs) == 8, public
    assert {Path(k).name for k in public if "/train-labels/" in k} == {
        f"seg{i:02d}.nii.gz" for i in range(4)
    }
    hidden = {k for k in private if "/labels/" in k}
    assert {Path(k).name for k in hidden} == {f"seg{i:02d}.nii.gz" for i in range(4, 8)}
    assert not public & hidden
    test_masks = {f"seg{i:02d}.nii.gz" for i in range(4, 8)}
    assert not [k for k in public if "label" in k and Path(k).name in test_masks]
    # ... and not reachable through the public bucket, signed or anonymous.
    for key in hidden:
        assert requests.get(f"{endpoint}/{PUBLIC}/{key}", timeout=10).status_code in (403, 404)
        with pytest.raises(client.exceptions.ClientError):
            client.head_object(Bucket=PUBLIC, Key=key)

    # A member downloads the sample submission: a redirect to a presigned URL of the public
    # bucket that gives the generated bytes.
    user: Any = UserFactory()  # type: ignore[no-untyped-call]
    browser = Client()
    browser.force_login(user)
    assert browser.post(f"/challenges/{challenge.slug}/join/", {"accept_terms": "on"}).status_code
    response = browser.get(f"/challenges/{challenge.slug}/data/sample-submission.zip")
    assert response.status_code == 302, response.content[:500]
    url = response["Location"]
    assert url.startswith(f"{endpoint}/{PUBLIC}/data/") and "X-Amz-Signature=" in url
    assert "X-Amz-Expires=300" in url
    sample = DataFile.objects.get(challenge=challenge, name="sample-submission.zip")
    got = requests.get(url, timeout=10)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == sample.sha256
    assert "attachment" in got.headers.get("Content-Disposition", "")
    assert {f"data/{f.path}" for f in DataFile.objects.filter(challenge=challenge)} <= _keys(
        client, PUBLIC
    )
    # moto's server does not check signatures or anonymous access (its IAM checks are off by
    # default), so refusing an unsigned request is the bucket policy's job, untested here
    # (docs/storage.md).

    # The submission's file goes to the private bucket; a worker whose local folders hold
    # nothing scores it from its S3 cache (the submission and the hidden masks).
    phase = challenge.phases.get(slug="open")
    submission = submission_create(
        user=user,
        phase=phase,
        file=SimpleUploadedFile("masks.zip", got.content),
    )
    assert submission.file.name in _keys(client, PRIVATE)
    assert submission.file.name not in _keys(client, PUBLIC)
    start_worker(queues="cpu", extra_env=worker_env)
    evaluation = final_evaluation(submission.pk)
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    public_result = Result.objects.get(evaluation=evaluation, part="public")
    assert public_result.aggregates["dice"] == 0.0  # empty masks against boxes
    cached = worker_var / "s3-cache" / "files"
    assert (cached / PRIVATE / submission.file.name).is_file()
    assert {p.name for p in (cached / PRIVATE).rglob("labels/*.nii.gz")} == {
        Path(k).name for k in hidden
    }
    assert not (worker_var / "media").exists() and not (worker_var / "private").exists()


def test_the_worker_cache_reuses_a_copy_until_the_object_changes(s3: Any) -> None:
    from challenges.services.storage import private_storage, storage_local_dir, storage_local_path

    client = s3[0]
    client.put_object(Bucket=PRIVATE, Key="set/labels/a.nii.gz", Body=b"first")
    client.put_object(Bucket=PRIVATE, Key="set/labels/b.nii.gz", Body=b"other")
    storage = private_storage()
    first = storage_local_path(storage=storage, name="set/labels/a.nii.gz")
    assert first.read_bytes() == b"first"
    inode = first.stat().st_ino
    again = storage_local_path(storage=storage, name="set/labels/a.nii.gz")
    assert again == first and again.stat().st_ino == inode  # re-used, not downloaded again
    client.put_object(Bucket=PRIVATE, Key="set/labels/a.nii.gz", Body=b"second!")
    changed = storage_local_path(storage=storage, name="set/labels/a.nii.gz")
    assert changed.read_bytes() == b"second!" and changed.stat().st_ino != inode
    folder = storage_local_dir(storage=storage, prefix="set")
    # only the objects' copies: no ETag or temporary files beside them
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["a.nii.gz", "b.nii.gz"]


def test_on_the_file_system_the_helpers_are_the_files_themselves(
    settings: Any, tmp_path: Path
) -> None:
    from challenges.services.storage import (
        public_storage,
        storage_local_dir,
        storage_local_path,
        storage_publish,
    )

    settings.MEDIA_ROOT = tmp_path / "media"
    (tmp_path / "media" / "a").mkdir(parents=True)
    (tmp_path / "media" / "a" / "b.txt").write_text("x")
    storage = public_storage()
    assert storage_local_path(storage=storage, name="a/b.txt") == tmp_path / "media" / "a" / "b.txt"
    assert storage_local_dir(storage=storage, prefix="a") == tmp_path / "media" / "a"
    assert storage_publish(storage=storage, root=tmp_path / "media", rel="a") == 0


@pytest.mark.parametrize(
    ("value", "mode", "backend"),
    [
        ("", "filesystem", "django.core.files.storage.FileSystemStorage"),
        ("filesystem", "filesystem", "django.core.files.storage.FileSystemStorage"),
        ("s3", "s3", "storages.backends.s3.S3Storage"),
        # the variable's earlier meaning: a class path for the default storage
        ("django.core.files.storage.InMemoryStorage", "filesystem",
         "django.core.files.storage.InMemoryStorage"),
    ],
)  # fmt: skip
def test_scanbench_storage_takes_a_mode_or_the_old_class_path(
    value: str, mode: str, backend: str
) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.pop("SCANBENCH_STORAGE", None)
    if value:
        env["SCANBENCH_STORAGE"] = value
    code = (
        "from django.conf import settings as s; "
        "print(s.SCANBENCH_STORAGE, s.STORAGES['default']['BACKEND'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == [mode, backend]


def test_an_unknown_scanbench_storage_stops_start_up() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SCANBENCH_STORAGE": "ftp"}
    code = "from django.conf import settings as s; s.STORAGES"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "SCANBENCH_STORAGE must be" in out.stderr


def test_readiness_checks_both_buckets_on_s3(s3: Any, settings) -> None:  # type: ignore[no-untyped-def]
    from challenges.services import storage
    from challenges.services.operations import readiness

    check = next(c for c in readiness() if c.name == "storage")
    assert check.ok and check.detail.startswith("s3"), check
    # A bucket that does not exist (a typo in the settings, or deleted): not ready.
    settings.SCANBENCH_S3_PRIVATE_BUCKET = "sb-no-such-bucket"
    storage._s3_storages.clear()
    check = next(c for c in readiness() if c.name == "storage")
    assert not check.ok and check.required, check
