"""The production stack really runs: images built here without a registry
(platform/images/build.sh), ``docker-compose.yml`` + ``docker-compose.local.yml`` started with
Debian's docker-compose, everything reached through the nginx proxy over HTTPS.

One stack per module (starting it takes about half a minute once the images exist):
- a visitor signs up in the proxy's pages, confirms the e-mail from the link the web container
  printed, gets an API token and submits a predictions file that the cpu worker container scores;
- a TorchScript model that the gpu worker container runs in the sandbox through the host's engine;
- static files, the upload cap (413 from nginx) and X-Accel-Redirect data downloads;
- two gpu worker "hosts" (containers): the one running a sandbox run is removed mid-run and the
  evaluation ends exactly once on the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.pipeline.test_code_submissions import _torchscript
from tests.production.stack import (
    ROOT,
    Stack,
    build_images,
    stack_prepare,
    wait_https,
    why_not,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    why = why_not()
    if why:
        pytest.skip(why)
    build_images()
    # Under /var/tmp: every ancestor is searchable, as the sandbox user needs for its mounts.
    base = Path(f"/var/tmp/scanbench-stack-{os.getpid()}")
    stack = stack_prepare(
        base,
        f"sbtest{os.getpid()}",
        [
            # A 1 MiB cap at the proxy, so that the test can send a body over it.
            "SCANBENCH_PROXY_MAX_BODY=1m",
            # Short leases, so that a removed worker's run is taken back in seconds.
            "SCANBENCH_LEASE_S=4",
            "SCANBENCH_LEASE_RENEW_S=1",
            "SCANBENCH_REAPER_INTERVAL_S=2",
        ],
    )
    ca = stack.ca
    # requests takes REQUESTS_CA_BUNDLE over a session's own `verify` (and this machine sets
    # one), so the stack's certificate is trusted through it, for this module only.
    saved = {k: os.environ.get(k) for k in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")}
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
    os.environ.pop("CURL_CA_BUNDLE", None)
    try:
        stack.compose("up", "-d", timeout=600)
        wait_https(stack.url, ca)
        yield stack
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if os.environ.get("SCANBENCH_KEEP_STACK") != "1":
            stack.compose("down", "-v", "--remove-orphans", timeout=300, check=False)
            shutil.rmtree(base, ignore_errors=True)


def _sign_up(stack: Stack, username: str, password: str) -> None:
    """Sign up in the pages, through the proxy, and follow the e-mailed confirmation link."""
    s = stack.session()
    page = s.get(f"{stack.url}/accounts/signup/")
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    response = s.post(
        f"{stack.url}/accounts/signup/",
        data={
            "csrfmiddlewaretoken": token.group(1),
            "username": username,
            "email": f"{username}@example.org",
            "password1": password,
            "password2": password,
        },
        headers={"Referer": f"{stack.url}/accounts/signup/"},
    )
    assert response.status_code == 200, response.text[:500]
    # The console e-mail backend prints the mail on the web container's output.
    link = None
    deadline = time.monotonic() + 30
    while link is None and time.monotonic() < deadline:
        logs = stack.compose("logs", "--no-color", "web")
        found = re.findall(r"(/accounts/verify-email/[A-Za-z0-9:_\-]+/)", logs)
        link = found[-1] if found else None
        time.sleep(0.5)
    assert link, "no confirmation link in the web container's output"
    confirmed = s.get(f"{stack.url}{link}")
    assert confirmed.status_code == 200


def _model_bundle(folder: Path) -> Path:
    """A model phase over 16 small PNGs: bright cases are positive."""
    import numpy as np
    from PIL import Image

    bundle = folder / "bright-or-dark"
    (bundle / "inputs").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["case_id,split,label"]
    for i in range(16):
        label = i % 2
        split = "train" if i < 4 else "test"
        pixels = np.clip(rng.normal(200 if label else 40, 10, (24, 24)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(bundle / "inputs" / f"case{i:02d}.png")
        rows.append(f"case{i:02d},{split},{label}")
    (bundle / "cases.csv").write_text("\n".join(rows) + "\n")
    (bundle / "challenge.yaml").write_text(
        """slug: bright-or-dark
title: "Bright or dark: is this patch bright?"
summary: A test challenge of the production stack.
task: classification
classes: [dark, bright]
input: "A 24 x 24 grey PNG per case."
output: "The probability that the case is bright."
licence: CC0 1.0
attribution: Made by tests/production/test_compose_stack.py.
dataset:
  cases: cases.csv
  inputs: inputs
  public_fraction: 0.5
  seed: 3
phases:
  - slug: models
    title: Models
    submission_kind: model
    opens: 2026-01-01T00:00:00Z
    metrics: [auc_roc, sensitivity, specificity]
    primary_metric: auc_roc
    input_spec: {image_size: [16, 16], intensity: scale, scale: 0.00392156862745098}
    time_limit_s: 300
    memory_limit_mb: 2048
"""
    )
    for path in [bundle, *bundle.rglob("*")]:
        os.chown(path, 10001, 10001)
    return bundle


@pytest.fixture(scope="module")
def participant(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from scanbench_client import Client

    stack.manage("import_challenge", "/app/examples/bundles/synthetic-lesions")
    bundle = _model_bundle(stack.data / "bundles")
    stack.manage("import_challenge", str(bundle))
    # Imports are drafts until their organizers publish them (the console's Publish button).
    stack.shell(
        "from challenges.models import Challenge; "
        "print(Challenge.objects.filter(slug__in=['synthetic-lesions', 'bright-or-dark'])"
        ".update(is_published=True))"
    )
    password = "a-Long-pass-" + secrets.token_hex(4)
    _sign_up(stack, "stackuser", password)
    client = Client.login(stack.url, "stackuser", password, save=False)
    client.join("synthetic-lesions")
    client.join("bright-or-dark")
    return client


def _board_row(participant: Any, slug: str, phase: str) -> dict[str, Any]:
    """The participant's row of the public board, once the board has it."""
    deadline = time.monotonic() + 60
    while True:
        board = participant.leaderboard(slug, phase)
        for row in board["results"]:
            if row["entrant"] == "stackuser" and not row["is_baseline"]:
                return dict(row)
        assert time.monotonic() < deadline, board
        time.sleep(1)


def test_a_participant_signs_up_submits_and_reads_the_board_through_the_proxy(
    stack: Stack, participant: Any, tmp_path: Path
) -> None:
    cases = (ROOT / "examples/bundles/synthetic-lesions/cases.csv").read_text().splitlines()[1:]
    rows = ["case_id,score"] + [
        f"{line.split(',')[0]},{0.9 if line.split(',')[2] == '1' else 0.1}"
        for line in cases
        if line.split(",")[1] == "test"
    ]
    predictions = tmp_path / "predictions.csv"
    predictions.write_text("\n".join(rows) + "\n")
    submission = participant.submit("synthetic-lesions", "open", predictions)
    done = participant.wait(submission["id"], timeout=180)
    assert done["state"] == "succeeded", done
    mine = _board_row(participant, "synthetic-lesions", "open")
    assert mine["score"] == pytest.approx(1.0)
    # The page itself, through the proxy.
    page = stack.session().get(f"{stack.url}/challenges/synthetic-lesions/open/leaderboard/")
    assert page.status_code == 200 and "stackuser" in page.text


def test_a_torchscript_model_runs_in_the_sandbox_from_the_gpu_worker_container(
    stack: Stack, participant: Any, tmp_path: Path
) -> None:
    model = _torchscript(tmp_path / "model.pt")
    submission = participant.submit("bright-or-dark", "models", model)
    done = participant.wait(submission["id"], timeout=300)
    assert done["state"] == "succeeded", done
    logs = stack.shell(
        "import json; from challenges.models import Evaluation; "
        f"e = Evaluation.objects.get(submission_id={submission['id']}); "
        "print(json.dumps(e.logs))"
    )
    assert "[sandbox backend: docker]" in logs
    mine = _board_row(participant, "bright-or-dark", "models")
    assert mine["score"] == pytest.approx(1.0)  # bright cases score higher


def test_the_proxy_serves_static_files_caps_uploads_and_redirects_to_https(
    stack: Stack, participant: Any
) -> None:
    s = stack.session()
    css = re.search(r'href="(/static/[^"]+\.css)"', s.get(f"{stack.url}/").text)
    assert css
    static = s.get(f"{stack.url}{css.group(1)}")
    assert static.status_code == 200 and "Cache-Control" in static.headers
    # nginx refuses a body over SCANBENCH_PROXY_MAX_BODY (1 MiB here) before Django sees it.
    too_big = s.post(
        f"{stack.url}/api/token/",
        data=b"x" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert too_big.status_code == 413
    plain = requests.get(f"{stack.http_url}/challenges/", allow_redirects=False, timeout=10)
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"{stack.url}/challenges/"
    # Prometheus scrapes the web process on the stack's network, never through the proxy.
    assert s.get(f"{stack.url}/metrics").status_code == 404


def test_data_downloads_go_through_x_accel_redirect(stack: Stack, participant: Any, tmp_path: Path):
    files = participant.data_files("synthetic-lesions")
    assert files
    first = files[0]
    target = tmp_path / "download"
    participant.download("synthetic-lesions", first["name"], target)
    got = target / first["name"] if target.is_dir() else target
    assert hashlib.sha256(got.read_bytes()).hexdigest() == first["sha256"]
    # The body came from nginx: gunicorn answered with X-Accel-Redirect and no body (0 bytes in
    # its access log), nginx sent the file (its size in nginx's log).
    request = rf'"GET [^ "]*/synthetic-lesions/data/{re.escape(first["name"])} HTTP/[0-9.]+" 200 '
    proxy_sizes = re.findall(request + r"(\d+)", stack.compose("logs", "--no-color", "proxy"))
    web_sizes = re.findall(request + r"(\S+)", stack.compose("logs", "--no-color", "web"))
    assert proxy_sizes and int(proxy_sizes[-1]) == first["size"], proxy_sizes
    assert web_sizes and web_sizes[-1] in ("0", "-"), web_sizes
    # The internal location cannot be asked for from outside.
    direct = stack.session().get(f"{stack.url}/protected-data/")
    assert direct.status_code == 404


def test_backup_runs_in_the_web_container_against_the_stack_database(
    stack: Stack, participant: Any
) -> None:
    archive = stack.data / "backup.tar"
    stack.manage("backup", str(archive))
    import tarfile

    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = tar.getnames()
    assert "database.dump" in names
    assert manifest["row_counts"]["challenges_challenge"] >= 2, manifest["row_counts"]


def _evaluation(stack: Stack, submission_id: int) -> dict[str, Any]:
    return stack.shell(
        "import json; from challenges.models import Evaluation, Result; "
        f"es = list(Evaluation.objects.filter(submission_id={submission_id})); "
        "print(json.dumps([{'id': e.pk, 'state': e.state, 'deliveries': e.deliveries, "
        "'lease_owner': e.lease_owner, 'results': Result.objects.filter(evaluation=e).count()} "
        "for e in es]))"
    )


def test_two_gpu_worker_hosts_one_removed_mid_run_the_evaluation_ends_once(
    stack: Stack, participant: Any, tmp_path: Path
) -> None:
    stack.compose("up", "-d", "--no-recreate", "--scale", "worker-gpu=2", "worker-gpu")
    workers = stack.containers("worker-gpu")
    assert len(workers) == 2
    # Both workers are consuming before the work is sent.
    deadline = time.monotonic() + 120
    while True:
        pong = stack.compose(
            "exec", "-T", "worker-cpu", "celery", "-A", "config", "inspect", "ping",
            "--timeout", "5", check=False,
        )  # fmt: skip
        if pong.count("gpu@") >= 2:
            break
        assert time.monotonic() < deadline, pong
        time.sleep(2)
    model = _torchscript(tmp_path / "slow.pt", slow=True)
    submission = participant.submit("bright-or-dark", "models", model)
    # Which host runs it: its JSON log lines carry the evaluation's id.
    running = None
    deadline = time.monotonic() + 180
    while running is None:
        assert time.monotonic() < deadline, "the run never started"
        state = _evaluation(stack, submission["id"])
        if state and state[0]["state"] == "running":
            needle = f'"submission_id": {submission["id"]}'
            for container in workers:
                logs = subprocess.run(
                    ["docker", "logs", container], capture_output=True, text=True, check=False
                )
                if needle in logs.stdout + logs.stderr:
                    running = container
        time.sleep(0.5)
    evaluation_id = state[0]["id"]
    # The sandbox run of that host is under way in the engine.
    owner = f"label=org.scanbench.owner=evaluation-{evaluation_id}"
    ps = subprocess.run(
        ["docker", "ps", "-q", "--filter", owner], capture_output=True, text=True, check=True
    )
    assert ps.stdout.strip(), "no sandbox container is running for the evaluation"
    # The host goes away: its worker container is killed and removed.
    subprocess.run(["docker", "rm", "-f", running], check=True, capture_output=True)
    done = participant.wait(submission["id"], timeout=420)
    assert done["state"] == "succeeded", done
    final = _evaluation(stack, submission["id"])
    assert len(final) == 1, final  # one evaluation
    assert final[0]["deliveries"] >= 3, final  # the removed run, the run again, the scoring
    assert final[0]["results"] == 2, final  # public and private, once each
    # The other host did it, and nothing the removed host started is left in the engine.
    survivor = next(c for c in workers if c != running)
    logs = subprocess.run(["docker", "logs", survivor], capture_output=True, text=True)
    assert f'"evaluation_id": {evaluation_id}' in logs.stdout + logs.stderr
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", owner], capture_output=True, text=True, check=True
    )
    assert left.stdout.strip() == ""
