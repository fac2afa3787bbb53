"""The chest X-ray demo's starting kit as a participant meets it: a fresh virtual environment
with only ``pip install .`` (the ``scanbench`` client and the evaluator, no Django, no checkout on
the path), the live server and a real Celery worker. The participant logs in, joins, downloads
the kit, train and test files into a clean folder, trains and predicts with the kit, scores a
holdout locally as the kit's README says, submits with ``--wait``, and the server's public
aggregates are those ``scanbench score`` gives locally on the same file and public cases.

The virtual environment is built once (a couple of minutes) under
``var/cache/kit-venv-<hash of pyproject.toml>`` and reused; the client and evaluator in it are
reinstalled (``--no-deps``, seconds) whenever their sources change. Skipped, naming the reason,
only when the demo's source cannot be fetched."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.foundation.test_imaging_demos import CACHE, _script

ROOT = Path(__file__).resolve().parents[2]
SLUG = "chest-xray-pneumonia"
USERNAME = "kit-user"
PASSWORD = "a-Long-pass-123!"
PACKAGES = ("scanbench_client", "evaluator")


# --- the participant's virtual environment ----------------------------------------------------


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _pip(venv: Path, *args: str) -> None:
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
        cwd=venv.parent,
    )
    assert done.returncode == 0, (args, done.stdout[-4000:], done.stderr[-4000:])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def kit_venv() -> Path:
    """A virtual environment with ``pip install <repository root>`` from the configured index:
    built once per pyproject.toml, the packages reinstalled when their sources changed."""
    cache = ROOT / "var" / "cache"
    venv = cache / f"kit-venv-{_digest([ROOT / 'pyproject.toml'])}"
    sources = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    code = _digest([ROOT / "pyproject.toml", *sources])
    with _locked(cache / f"{venv.name}.lock"):
        built, stamp = venv / ".scanbench-complete", venv / ".scanbench-code"
        if not built.is_file():  # absent, or a build that was interrupted
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            _pip(venv, str(ROOT))
            built.write_text("ok\n")
            stamp.write_text(code)
        elif not stamp.is_file() or stamp.read_text() != code:
            _pip(venv, "--no-deps", "--force-reinstall", str(ROOT))
            stamp.write_text(code)
    return venv


# --- the challenge, a participant, the server and a worker ------------------------------------


@pytest.fixture(scope="session")
def xray_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kit-demo")
    result = _script().build_all(out, CACHE, only=[SLUG])[SLUG]
    if not isinstance(result, Path):
        pytest.skip(f"the {SLUG} source cannot be fetched: {result}")
    return result


@pytest.fixture
def storage(settings: Any, tmp_path: Path) -> dict[str, str]:
    """The test's own storage, shared with the worker through its environment."""
    var = tmp_path / "var"
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = var
    settings.MEDIA_ROOT = var / "media"
    settings.SCANBENCH_PRIVATE_ROOT = var / "private"
    return {
        "SCANBENCH_VAR_DIR": str(var),
        "MEDIA_ROOT": str(var / "media"),
        "SCANBENCH_PRIVATE_ROOT": str(var / "private"),
    }


def _participant() -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from challenges.services.accounts import VERIFIED_EMAIL_GROUP

    user = get_user_model().objects.create_user(USERNAME, f"{USERNAME}@example.org", PASSWORD)
    group, _ = Group.objects.get_or_create(name=VERIFIED_EMAIL_GROUP)
    user.groups.add(group)


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, (done.args, done.returncode, done.stdout, done.stderr)
    return done.stdout


@pytest.mark.worker
@pytest.mark.slow
def test_the_starting_kit_trains_predicts_scores_locally_and_submits_from_a_fresh_venv(
    kit_venv: Path,
    xray_bundle: Path,
    storage: dict[str, str],
    live_server: Any,
    start_worker: Any,
    tmp_path: Path,
) -> None:
    from challenges.models import Phase, Submission
    from challenges.services.bundles import challenge_import_bundle
    from challenges.services.references import reference_for_phase

    challenge = challenge_import_bundle(path=xray_bundle).challenge
    assert challenge.is_published
    phase = Phase.objects.get(challenge=challenge)
    _participant()
    start_worker(queues="cpu", extra_env=storage)

    work = tmp_path / "participant"
    work.mkdir()
    bin_ = kit_venv / "bin"
    env = {  # only the venv, a home, a config folder and the server: no Django, no checkout
        "PATH": f"{bin_}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(tmp_path / "home"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SCANBENCH_URL": live_server.url,
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args),
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=work,
            timeout=300,
            check=False,
        )

    python, scanbench = str(bin_ / "python"), str(bin_ / "scanbench")
    # The venv is the participant's: it has the client and evaluator, not the platform.
    probe = "import importlib.util as u; print(u.find_spec('django'), u.find_spec('challenges'))"
    assert _ok(run(python, "-c", probe)).split() == ["None", "None"]

    _ok(run(scanbench, "login", "--username", USERNAME, "--password-stdin", stdin=PASSWORD))
    assert "Joined" in _ok(run(scanbench, "join", SLUG, "--accept-terms"))
    for split in ("kit", "train", "test"):
        _ok(run(scanbench, "download", SLUG, "--split", split))
    assert sorted(p.name for p in work.iterdir()) == [
        "starting-kit.zip",
        "test-inputs.zip",
        "train.zip",
    ]
    with zipfile.ZipFile(work / "starting-kit.zip") as zf:
        zf.extractall(work)
    kit = "starting-kit/train_and_predict.py"
    assert (work / "starting-kit" / "README.md").is_file()

    # Train and predict, as the kit's README says.
    _ok(run(python, kit, "--train", "train.zip", "--test", "test-inputs.zip", "--out", "p.csv"))
    predictions = work / "p.csv"
    assert len(predictions.read_text().splitlines()) == 7  # header + 6 test cases

    # Score locally on a holdout, as the README says: the evaluator, and `scanbench score`.
    _ok(run(python, kit, "--train", "train.zip", "--holdout", "4", "--out", "holdout.csv"))
    ref = "holdout-reference.csv"
    report = _ok(
        run(
            *(python, "-m", "evaluator", "score", "--task", "classification"),
            *("--reference", ref, "--predictions", "holdout.csv", "--bootstrap", "0"),
        )
    )
    holdout = json.loads(report)
    assert holdout["meta"]["n_cases"] == 4, holdout
    via_client = _ok(
        run(scanbench, "score", "classification", ref, "holdout.csv", "--bootstrap", "0")
    )
    assert json.loads(via_client)["aggregates"] == holdout["aggregates"]

    # Submit and wait for the server's score.
    out = _ok(
        run(scanbench, "submit", f"{SLUG}/{phase.slug}", "p.csv", "--wait", "--timeout", "240")
    )
    assert "succeeded" in out and "auc_roc" in out, out
    submission = Submission.objects.get(phase=phase, participant__username=USERNAME)
    evaluation = submission.evaluations.order_by("pk").last()
    assert evaluation is not None
    server = evaluation.results.get(part="public").aggregates

    # The same file, the phase's public reference and options, scored in the venv.
    reference = reference_for_phase(phase=phase)
    ids = tmp_path / "public-ids.txt"
    ids.write_text("\n".join(reference.public_ids) + "\n")
    options = ["--case-ids", str(ids), "--bootstrap", "0", "--seed", str(phase.pk)]
    options += ["--threshold", str(phase.decision_threshold), "--allow-missing"]
    if phase.metrics:
        options += ["--metrics", ",".join(phase.metrics)]
    local_out = _ok(
        run(scanbench, "score", "classification", str(reference.path), "p.csv", *options)
    )
    local = json.loads(local_out)["aggregates"]
    assert local.keys() == server.keys()
    for metric, value in server.items():
        assert local[metric] == pytest.approx(value, nan_ok=True), metric
