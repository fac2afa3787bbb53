"""Benchmark of a large upload through the API: memory of the web worker and upload rate.

Starts gunicorn (one worker, as platform/gunicorn.conf.py configures it otherwise) on its own
database and streams a container-image-like tar of ``--gib`` GiB (default 2), generated on the
fly, to ``POST /api/challenges/<slug>/phases/<phase>/submissions/`` with ``requests`` and a
generator, so neither side holds the file in memory. While the upload runs it samples the
gunicorn worker's resident memory from /proc; it prints the peak (VmRSS sampled, and the
kernel's VmHWM high-water mark) and the upload rate in MB/s, and checks the stored sha256.

Usage (PostgreSQL on 127.0.0.1:5432, as scripts/services-up starts it):

    .venv/bin/python benchmarks/upload_bench.py [--gib 2]

It uses its own database (scanbench_upload_bench, dropped and created), the embedded file-system
broker (no worker runs: the evaluation stays queued) and a temporary var folder it removes.
The phase's size cap comes from the environment (SCANBENCH_MAX_UPLOAD_BYTES, set above the
upload here).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = "scanbench_upload_bench"
PORT = 8766
VAR = Path(tempfile.mkdtemp(prefix="scanbench-upload-bench-"))
ENV = {
    **os.environ,
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "CELERY_BROKER_URL": "filesystem://",
    "SCANBENCH_VAR_DIR": str(VAR),
    "DEBUG": "true",
    "LOG_LEVEL": "WARNING",
    "SCANBENCH_NOTIFY_BY_EMAIL": "false",
    "SCANBENCH_MAX_UPLOAD_BYTES": str(64 * 1024**3),
    "SCANBENCH_API_UPLOAD_RATE": "1000/min",
}
os.environ.update(ENV)
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
BOUNDARY = "scanbench-upload-bench-boundary"
BLOCK = os.urandom(1024 * 1024)  # repeated: the content does not matter, only its size


def setup_database() -> tuple[str, str, str]:
    """A container phase open for submissions and a participant's token."""
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=ENV, check=True)
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from challenges.models import Challenge, Dataset, Phase

    challenge = Challenge.objects.create(
        slug="upload-bench", title="Upload bench", summary="b", task_type="classification",
        classes=["neg", "pos"], data_licence="CC0", data_attribution="generated",
        is_published=True,
    )  # fmt: skip
    dataset = Dataset.objects.create(challenge=challenge, slug="main", split_seed=3)
    Phase.objects.create(
        challenge=challenge, dataset=dataset, slug="containers", title="Containers",
        submission_kind="container", opens_at=timezone.now() - timedelta(days=1),
        metrics=["auc_roc"], primary_metric="auc_roc",
    )  # fmt: skip
    user = User.objects.create_user("bench", password="a-long-passphrase-42")
    return challenge.slug, "containers", Token.objects.create(user=user).key


def start_gunicorn() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py",
         "--bind", f"127.0.0.1:{PORT}", "--workers", "1", "--threads", "2",
         "--timeout", "600", "config.wsgi:application"],
        cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    import requests

    for _ in range(150):
        try:
            requests.get(f"http://127.0.0.1:{PORT}/healthz", timeout=1)
            return proc
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def worker_pid(master: int) -> int:
    for _ in range(50):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise SystemExit("no gunicorn worker")


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """Samples a process's VmRSS every 20 ms until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
            time.sleep(0.02)


def tar_members(total: int) -> list[tuple[str, int]]:
    """Layers of an image-like tar adding up to about ``total`` bytes."""
    n = 8
    size = total // n
    return [("manifest.json", 200)] + [(f"layers/{i:02d}/layer.tar", size - 1024) for i in range(n)]


def tar_length(members: list[tuple[str, int]]) -> int:
    return sum(512 + -(-size // 512) * 512 for _, size in members) + 1024


def tar_stream(members: list[tuple[str, int]], digest: hashlib._Hash) -> Iterator[bytes]:
    """A valid ustar archive, written as it is read, with ``digest`` updated on the way."""
    for name, size in members:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 1_700_000_000
        header = info.tobuf(format=tarfile.USTAR_FORMAT)
        digest.update(header)
        yield header
        left = size
        while left:
            chunk = BLOCK[: min(left, len(BLOCK))]
            left -= len(chunk)
            digest.update(chunk)
            yield chunk
        pad = b"\0" * (-size % 512)
        if pad:
            digest.update(pad)
            yield pad
    end = b"\0" * 1024
    digest.update(end)
    yield end


class Body:
    """An iterable request body of known length: ``requests`` sends it with that
    Content-Length (not chunked, which Django does not read) as the iterator yields it."""

    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self.chunks = chunks
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=2.0, help="upload size in GiB")
    args = parser.parse_args()
    import requests

    slug, phase, token = setup_database()
    gunicorn = start_gunicorn()
    try:
        worker = worker_pid(gunicorn.pid)
        members = tar_members(int(args.gib * 1024**3))
        size = tar_length(members)
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="comment"\r\n\r\nbench\r\n'
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="image.tar"\r\nContent-Type: application/x-tar\r\n\r\n'
        ).encode()
        tail = f"\r\n--{BOUNDARY}--\r\n".encode()
        digest = hashlib.sha256()

        def body() -> Iterator[bytes]:
            yield head
            yield from tar_stream(members, digest)
            yield tail

        rss_before = status_kib(worker, "VmRSS")
        sampler = Sampler(worker)
        sampler.start()
        started = time.perf_counter()
        response = requests.post(
            f"http://127.0.0.1:{PORT}/api/challenges/{slug}/phases/{phase}/submissions/",
            data=Body(body(), len(head) + size + len(tail)),
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
            timeout=900,
        )
        elapsed = time.perf_counter() - started
        sampler.stop.set()
        sampler.join()
        hwm = status_kib(worker, "VmHWM")
        print(f"upload: {size / 1e6:,.0f} MB tar ({size / 1024**3:.2f} GiB) -> HTTP "
              f"{response.status_code} in {elapsed:.1f} s")  # fmt: skip
        if response.status_code != 201:
            print(response.text[:2000])
            raise SystemExit(1)
        stored = response.json()["sha256"]
        print(f"sha256 stored == sent: {stored == digest.hexdigest()}")
        print(f"upload rate: {size / 1e6 / elapsed:,.0f} MB/s (generation, HTTP, parsing to a "
              "temporary file, sha256 and the move into storage included)")  # fmt: skip
        print(f"gunicorn worker RSS: before {rss_before / 1024:.0f} MiB, peak sampled "
              f"{sampler.peak_kib / 1024:.0f} MiB, VmHWM {hwm / 1024:.0f} MiB "
              "(goal < 300 MB)")  # fmt: skip
    finally:
        gunicorn.terminate()
        gunicorn.wait(timeout=30)
        shutil.rmtree(VAR, ignore_errors=True)
        from django.db import connections

        connections.close_all()
        subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB])


if __name__ == "__main__":
    main()
