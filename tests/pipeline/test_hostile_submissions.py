"""Hostile prediction files through the real pipeline (API upload, Redis, a real Celery worker,
PostgreSQL): each ends failed as the participant's error (it counts against their limits), with
a message that names no server path, nothing scored and nothing on the leaderboard; the worker
stays up and scores the next valid submission."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from django.conf import settings
from rest_framework.test import APIClient

from challenges.models import Evaluation, LeaderboardEntry, Result
from challenges.services.submissions import limits_for
from tests.factories import UserFactory, classification_phase, segmentation_phase
from tests.helpers import final_evaluation as _final


def _upload(user, phase, name: str, data: bytes) -> int:
    client = APIClient()
    client.force_authenticate(user)
    f = io.BytesIO(data)
    f.name = name
    response = client.post(f"/api/phases/{phase.pk}/submissions/", {"file": f}, format="multipart")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def _assert_participants_error(evaluation: Evaluation) -> None:
    assert evaluation.state == "failed", evaluation.message
    assert not evaluation.platform_fault, evaluation.message
    assert not Result.objects.filter(evaluation=evaluation).exists()
    for secret in (str(settings.SCANBENCH_PRIVATE_ROOT), str(settings.MEDIA_ROOT), "/root"):
        assert secret not in evaluation.message


def _nrrd_pointing_at(target: Path, shape: tuple[int, ...]) -> bytes:
    header = [
        "NRRD0004",
        "type: uint8",
        "dimension: 3",
        "sizes: " + " ".join(map(str, shape)),
        "encoding: gzip",
        "byte skip: -1",
        f"data file: {target}",
    ]
    return ("\n".join(header) + "\n\n").encode()


def test_nrrd_naming_the_hidden_reference_scores_nothing(start_worker, tmp_path):
    """The reported exploit: NRRD headers naming the phase's reference masks. Before the fix this
    scored Dice 1.0 on both parts; now it is refused and counts against the participant."""
    phase, good = segmentation_phase(tmp_path)
    labels = Path(settings.SCANBENCH_PRIVATE_ROOT) / (
        f"challenges/{phase.challenge.slug}/main/test/labels"
    )
    cases = sorted(p.name.removesuffix(".nii.gz") for p in labels.iterdir())
    attack = io.BytesIO()
    with zipfile.ZipFile(attack, "w") as zf:
        for case in cases:
            zf.writestr(f"{case}.nrrd", _nrrd_pointing_at(labels / f"{case}.nii.gz", (48, 48, 24)))
    user = UserFactory()
    start_worker(queues="cpu")
    evaluation = _final(_upload(user, phase, "masks.zip", attack.getvalue()))
    _assert_participants_error(evaluation)
    assert "NRRD header names a separate data file" in evaluation.message
    assert limits_for(user=user, phase=phase).daily_used == 1
    assert not LeaderboardEntry.objects.filter(phase=phase, score=1.0).exists()
    # the worker is still there for the next, valid submission
    evaluation = _final(_upload(user, phase, "masks.zip", good.read_bytes()))
    assert evaluation.state == "succeeded", evaluation.message
    decoding = Result.objects.get(evaluation=evaluation, part="public").meta["decoding"]
    assert "rlimits" in decoding and "in-process" not in decoding
    if os.geteuid() == 0:
        assert "uid 65534" in decoding and "network namespace" in decoding


def test_corrupt_zip_and_column_bomb_are_the_participants_errors(start_worker, tmp_path):
    phase, preds = classification_phase(tmp_path)
    user = UserFactory()
    start_worker(queues="cpu")

    corrupt = io.BytesIO()
    with zipfile.ZipFile(corrupt, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("preds.csv", preds.read_bytes() + os.urandom(50_000))
    data = bytearray(corrupt.getvalue())
    data[200:600] = os.urandom(400)  # inside the deflate stream
    first = _final(_upload(user, phase, "preds.zip", bytes(data)))
    _assert_participants_error(first)
    assert "preds.zip" in first.message

    columns = io.BytesIO()
    header = "case_id," + ",".join("x" * 25_000)
    with zipfile.ZipFile(columns, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("preds.csv", header + "\n" + ("a," + "0," * 25_000 + "\n") * 20)
    second = _final(_upload(user, phase, "preds.zip", columns.getvalue()))
    _assert_participants_error(second)
    assert "25001 columns in the header" in second.message
    assert limits_for(user=user, phase=phase).daily_used == 2

    ok = _final(_upload(user, phase, "preds.csv", preds.read_bytes()))
    assert ok.state == "succeeded", ok.message


def test_table_past_the_size_cap_is_refused_before_parsing(start_worker, tmp_path):
    """A table larger than SCANBENCH_MAX_TABLE_BYTES is refused by its size, before pandas sees
    it (the cap is set low for the worker through its environment)."""
    phase, preds = classification_phase(tmp_path)
    text = preds.read_text().splitlines()
    # 6 MB of CSV (a long comment-like column value) against a 1 MiB table cap
    padded = "\n".join(text) + "\n" + "\n".join(f"{'z' * 60},0.5" for _ in range(100_000))
    user = UserFactory()
    start_worker(queues="cpu", extra_env={"SCANBENCH_MAX_TABLE_BYTES": str(1 << 20)})
    evaluation = _final(_upload(user, phase, "preds.csv", padded.encode()))
    _assert_participants_error(evaluation)
    assert "over the limit 1048576" in evaluation.message
