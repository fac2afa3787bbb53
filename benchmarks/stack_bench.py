"""Benchmark of the production stack (docker-compose.yml + docker-compose.local.yml, images built
here by platform/images/build.sh), measured from outside through the nginx proxy over HTTPS.

Prints:

* the image build with the cache warm (what a code change costs) and the stack's start to ready;
* upload start -> succeeded, and upload start -> row on the leaderboard, for sequential CSV
  submissions (200 cases) through the proxy, p50 and p95;
* a public data file (64 MiB) downloaded through the proxy two ways, side by side in the same
  run: sent by nginx after Django's X-Accel-Redirect (the stack's setting), and streamed by
  gunicorn (SCANBENCH_DATA_SERVING=django, the embedded default), with the web container's CPU
  seconds for each.

Usage (as root, with a Docker engine and docker-compose; about 3 minutes):

    .venv/bin/python benchmarks/stack_bench.py [--submissions 20]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.production.stack import (  # noqa: E402 -- after the path set-up
    build_images,
    stack_prepare,
    wait_https,
    why_not,
)

USER, PASSWORD = "bench", "a-Long-bench-pass-1"
BIG = 64 * 1024**2


# Run in the web container: a random file in the challenge's public data folder, registered as
# one of its downloads (the DataFile rows are what the download view serves).
BIG_FILE_CODE = """
import hashlib, os
from pathlib import Path
from django.conf import settings
from challenges.models import Challenge, DataFile
from challenges.services.data import data_files_current
c = Challenge.objects.get(slug="synthetic-lesions")
first = data_files_current(challenge=c)[0]
root = Path(settings.VAR_DIR) / "data"
p = root / Path(first.path).parent / "{name}"
p.write_bytes(os.urandom({size}))
DataFile.objects.create(
    challenge=c, name=p.name, path=str(p.relative_to(root)), size=p.stat().st_size,
    sha256=hashlib.sha256(p.read_bytes()).hexdigest(), description="benchmark",
    stamp=first.stamp,
)
print(1)
"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _web_cpu_s(stack) -> float:  # type: ignore[no-untyped-def]
    """CPU seconds used so far by every process of the web container (gunicorn)."""
    out = stack.compose("exec", "-T", "web", "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null")
    ticks = 0
    for line in out.splitlines():
        fields = line.rsplit(")", 1)[-1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _download(stack, session, slug: str, name: str) -> tuple[float, float, str]:  # type: ignore[no-untyped-def]
    cpu = _web_cpu_s(stack)
    digest = hashlib.sha256()
    started = time.perf_counter()
    with session.get(f"{stack.url}/api/challenges/{slug}/data/{name}", stream=True) as r:
        r.raise_for_status()
        for chunk in r.iter_content(1024 * 1024):
            digest.update(chunk)
    return time.perf_counter() - started, _web_cpu_s(stack) - cpu, digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--submissions", type=int, default=20)
    args = parser.parse_args()
    why = why_not()
    if why:
        print(f"stack_bench: {why}")
        return 1
    started = time.perf_counter()
    build_images()
    build_s = time.perf_counter() - started
    base = Path(f"/var/tmp/scanbench-stackbench-{os.getpid()}")
    stack = stack_prepare(base, f"sbbench{os.getpid()}", ["GUNICORN_WORKERS=3"])
    os.environ["REQUESTS_CA_BUNDLE"] = str(stack.ca)
    os.environ.pop("CURL_CA_BUNDLE", None)
    try:
        started = time.perf_counter()
        stack.compose("up", "-d")
        wait_https(stack.url, stack.ca)
        start_s = time.perf_counter() - started
        stack.manage("import_challenge", "/app/examples/bundles/synthetic-lesions")
        stack.shell(
            "from django.contrib.auth.models import Group, User; "
            "from challenges.models import Challenge; "
            "from challenges.services.accounts import VERIFIED_EMAIL_GROUP; "
            "from challenges.models import Phase; "
            "Challenge.objects.update(is_published=True); "
            "Phase.objects.update(daily_limit=10000, total_limit=10000); "
            f"u = User.objects.create_user('{USER}', '{USER}@example.org', '{PASSWORD}'); "
            "u.groups.add(Group.objects.get_or_create(name=VERIFIED_EMAIL_GROUP)[0]); print(1)"
        )
        from scanbench_client import Client

        client = Client.login(stack.url, USER, PASSWORD, save=False)
        client.join("synthetic-lesions")
        cases = (ROOT / "examples/bundles/synthetic-lesions/cases.csv").read_text().splitlines()
        test = [line.split(",") for line in cases[1:] if line.split(",")[1] == "test"]
        predictions = base / "predictions.csv"
        scored, on_board = [], []
        for i in range(args.submissions):
            rows = [f"{c[0]},{(i % 7 + 1) / 9 if c[2] == '1' else 0.3}" for c in test]
            predictions.write_text("case_id,score\n" + "\n".join(rows) + "\n")
            t0 = time.perf_counter()
            sub = client.submit("synthetic-lesions", "open", predictions)
            done = client.wait(sub["id"], timeout=120, poll=0.05)
            scored.append(time.perf_counter() - t0)
            assert done["state"] == "succeeded", done
            while True:
                rows_ = client.leaderboard("synthetic-lesions", "open")["results"]
                if any(r["entrant"] == USER and r["n_submissions"] == i + 1 for r in rows_):
                    break
                time.sleep(0.02)
            on_board.append(time.perf_counter() - t0)

        # A 64 MiB public file: the public data folder of the challenge, as generated downloads
        # are, registered like the others (DataFile rows are what the view serves).
        big = "big-inputs.bin"
        stack.shell(BIG_FILE_CODE.format(name=big, size=BIG))
        session = requests.Session()
        session.headers["Authorization"] = f"Token {client.token}"
        accel = [_download(stack, session, "synthetic-lesions", big) for _ in range(3)]
        # The same file streamed by gunicorn: the web service restarted with the embedded
        # default's setting.
        env_file = stack.env_file
        env_file.write_text(env_file.read_text() + "SCANBENCH_DATA_SERVING=django\n")
        stack.compose("up", "-d", "--no-deps", "web")
        wait_https(stack.url, stack.ca)
        streamed = [_download(stack, session, "synthetic-lesions", big) for _ in range(3)]
        assert len({d for _, _, d in accel + streamed}) == 1
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)
        import shutil

        shutil.rmtree(base, ignore_errors=True)

    print("Production stack (docker-compose, images built here), 2-core machine, via nginx + TLS")
    print(f"  image build, cache warm (code change only): {build_s:.1f} s")
    print(f"  stack start (up -d) to /readyz 200 through the proxy: {start_s:.1f} s")
    print(f"  {args.submissions} sequential CSV submissions of {len(test)} test cases:")
    print(
        f"    upload start -> succeeded: p50 {1000 * statistics.median(scored):.0f} ms, "
        f"p95 {1000 * _pct(scored, 0.95):.0f} ms"
    )
    print(
        f"    upload start -> row on the leaderboard: p50 {1000 * statistics.median(on_board):.0f} "
        f"ms, p95 {1000 * _pct(on_board, 0.95):.0f} ms"
    )
    print(f"  download of a {BIG // 1024**2} MiB public file through the proxy (median of 3):")
    for label, runs in (("nginx (X-Accel-Redirect)", accel), ("gunicorn streaming", streamed)):
        secs = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(
            f"    {label:26s} {secs:6.2f} s  {BIG / secs / 1024**2:7.0f} MiB/s  "
            f"web CPU {cpu:5.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
