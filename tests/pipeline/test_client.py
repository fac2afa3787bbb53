"""The ``scanbench`` client against a live server with a real Celery worker, on the demo
challenges: the command line run as a separate process (log in, list, show, join, download with
the sha256 checked and a bad partial file recovered, submit and wait for the score, read the
leaderboard as CSV), local scoring that gives the server's aggregates, and the Python API's
errors built from the server's ``{"detail", "code", "field"}``."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from scanbench_client import Client, ScanbenchError
from tests.foundation.test_pages import demo  # noqa: F401 -- shared fixture
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
SLUG = "breast-cancer-wdbc"
PHASE = "open"
USERNAME = "cli-user"
PASSWORD = "a-Long-pass-123!"


@pytest.fixture
def participant(demo) -> str:  # noqa: F811
    """A participant with a verified e-mail address, not yet in any challenge."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from challenges.services.accounts import VERIFIED_EMAIL_GROUP

    user = get_user_model().objects.create_user(USERNAME, f"{USERNAME}@example.org", PASSWORD)
    group, _ = Group.objects.get_or_create(name=VERIFIED_EMAIL_GROUP)
    user.groups.add(group)
    return USERNAME


@pytest.fixture
def scanbench(live_server, tmp_path: Path):
    """Run ``python -m scanbench_client ARGS`` against the live server, with its own config."""
    env = {
        **os.environ,
        "SCANBENCH_URL": live_server.url,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("SCANBENCH_TOKEN", None)
    work = tmp_path / "work"
    work.mkdir()

    def run(
        *args: str, stdin: str | None = None, timeout: float = 240
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "scanbench_client", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=timeout,
        )

    run.work = work  # type: ignore[attr-defined]
    return run


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def _one_error_line(
    result: subprocess.CompletedProcess, code: int, *, after_notes: bool = False
) -> str:
    """The exit code and the one ``error: ...`` line on stderr; with ``after_notes`` progress
    notes (the evaluation's states) may come before it."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert errors and errors == lines[-1:], result.stderr
    assert after_notes or len(lines) == 1, result.stderr
    return lines[-1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _listed_sha() -> dict[str, str]:
    from challenges.models import DataFile

    return dict(DataFile.objects.filter(challenge__slug=SLUG).values_list("name", "sha256"))


@pytest.mark.worker
@pytest.mark.slow
def test_a_participant_goes_from_login_to_the_leaderboard_on_the_command_line(
    participant, scanbench, start_worker, tmp_path: Path
):
    start_worker(queues="cpu")
    work: Path = scanbench.work

    out = _ok(scanbench("login", "--username", participant, "--password-stdin", stdin=PASSWORD))
    config = tmp_path / "config" / "scanbench" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text())["token"]
    assert out == ""  # the note goes to stderr

    assert SLUG in _ok(scanbench("challenges"))
    card = _ok(scanbench("show", SLUG))
    assert "Breast biopsy" in card and f"{SLUG}/{PHASE}" in card

    _one_error_line(scanbench("join", SLUG), 2)  # terms not accepted: a usage error
    assert "Joined" in _ok(scanbench("join", SLUG, "--accept-terms"))

    _ok(scanbench("download", SLUG, "--split", "train", "--dest", "data"))
    _ok(scanbench("download", SLUG, "--split", "sample", "--dest", "data"))
    listed = _listed_sha()
    train, sample = work / "data" / "train.csv", work / "data" / "sample-submission.csv"
    assert _sha(train) == listed["train.csv"]
    assert _sha(sample) == listed["sample-submission.csv"]
    assert not (work / "data" / "test-inputs.csv").exists()

    # An interrupted download whose kept bytes are wrong: resumed, found bad, fetched again.
    good = sample.read_bytes()
    sample.unlink()
    (work / "data" / "sample-submission.csv.part").write_bytes(b"X" * (len(good) // 2))
    _ok(scanbench("download", SLUG, "--split", "sample", "--dest", "data"))
    assert sample.read_bytes() == good
    assert not (work / "data" / "sample-submission.csv.part").exists()
    # A good partial file is resumed to the same bytes.
    sample.unlink()
    (work / "data" / "sample-submission.csv.part").write_bytes(good[: len(good) // 3])
    _ok(scanbench("download", SLUG, "--split", "sample", "--dest", "data"))
    assert sample.read_bytes() == good

    result = scanbench(
        "submit",
        f"{SLUG}/{PHASE}",
        str(sample),
        "--comment",
        "from the CLI",
        "--wait",
        "--timeout",
        "150",
    )
    out = _ok(result)
    assert "succeeded" in out and "auc_roc" in out, out
    assert "running" in result.stderr or "scoring" in result.stderr or "queued" in result.stderr

    broken = work / "broken.csv"
    broken.write_text("case_id,score\nnot-a-case,0.5\n")
    line = _one_error_line(
        scanbench("submit", f"{SLUG}/{PHASE}", str(broken), "--wait", "--timeout", "150"),
        1,
        after_notes=True,
    )
    assert "failed: Invalid predictions" in line and "not-a-case" in line, line

    listing = _ok(scanbench("submissions", f"{SLUG}/{PHASE}"))
    assert "sample-submission.csv" in listing and "succeeded" in listing

    from challenges.models import LeaderboardEntry

    wait_for(
        lambda: LeaderboardEntry.objects.filter(
            phase__challenge__slug=SLUG, part="public", participant__username=participant
        ).exists(),
        timeout=60,
    )
    board = _ok(scanbench("leaderboard", f"{SLUG}/{PHASE}", "--csv"))
    rows = list(csv.DictReader(io.StringIO(board)))
    assert any(r.get("entrant") == participant for r in rows), board
    assert participant in _ok(scanbench("leaderboard", f"{SLUG}/{PHASE}"))
    _one_error_line(scanbench("leaderboard", f"{SLUG}/{PHASE}", "--private"), 1)


@pytest.mark.worker
@pytest.mark.slow
def test_local_score_gives_the_servers_aggregates(
    participant, scanbench, start_worker, live_server, tmp_path: Path
):
    """``scanbench score`` runs the evaluator the server scores with: on the same predictions,
    reference, cases and options it gives the same public aggregates."""
    from challenges.models import Phase
    from challenges.services.references import reference_for_phase

    start_worker(queues="cpu")
    with Client.login(live_server.url, participant, PASSWORD, save=False) as client:
        client.join(SLUG)
        sample = client.download(SLUG, "sample-submission.csv", tmp_path)
        sub = client.wait(client.submit(SLUG, PHASE, sample)["id"], timeout=120, poll=0.5)
        assert sub["state"] == "succeeded", sub
        server = sub["evaluations"][-1]["results"]["public"]["aggregates"]

    phase = Phase.objects.get(challenge__slug=SLUG, slug=PHASE)
    reference = reference_for_phase(phase=phase)
    ids = tmp_path / "public-ids.txt"
    ids.write_text("\n".join(reference.public_ids) + "\n")
    options = [
        "--case-ids",
        str(ids),
        "--bootstrap",
        "0",
        "--seed",
        str(phase.pk),
        "--threshold",
        str(phase.decision_threshold),
        "--allow-missing",
    ]
    if phase.metrics:
        options += ["--metrics", ",".join(phase.metrics)]
    out = _ok(scanbench("score", "classification", str(reference.path), str(sample), *options))
    local = json.loads(out)["aggregates"]
    assert local.keys() == server.keys()
    for metric, value in server.items():
        assert local[metric] == pytest.approx(value, nan_ok=True), metric


def test_server_refusals_become_scanbench_errors_and_one_line_exits(
    participant, scanbench, live_server
):
    with pytest.raises(ScanbenchError) as info:
        Client.login(live_server.url, participant, "wrong-password", save=False)
    assert info.value.status == 400 and info.value.code == "invalid_credentials"
    _one_error_line(
        scanbench("login", "--username", participant, "--password-stdin", stdin="wrong"), 1
    )

    _one_error_line(scanbench("challenges"), 2)  # not logged in

    with Client.login(live_server.url, participant, PASSWORD, save=False) as client:
        with pytest.raises(ScanbenchError) as info:
            client.challenge("no-such-challenge")
        assert info.value.status == 404

        with pytest.raises(ScanbenchError) as info:
            client.data_files(SLUG)
        assert info.value.status == 403 and info.value.code == "not_joined"

        with pytest.raises(ScanbenchError) as info:
            client.join(SLUG, accept_terms=False)
        assert info.value.status == 400 and info.value.code == "terms_not_accepted"

        with (
            Client(url=live_server.url, token="not-a-token") as stranger,
            pytest.raises(ScanbenchError) as info,
        ):
            stranger.challenges()
        assert info.value.status == 401

    _ok(scanbench("login", "--username", participant, "--password-stdin", stdin=PASSWORD))
    _one_error_line(scanbench("show", "no-such-challenge"), 1)
    _one_error_line(scanbench("submit", f"{SLUG}/{PHASE}", "missing.csv"), 2)
