"""Baselines on image challenges: on a generated image classification challenge (class 1 has a
bright blob) and a generated 2-D segmentation challenge (blobs brighter than the background),
every trivial and classical baseline is trained by a real worker, submitted, scored through the
pipeline and shown on the leaderboard with its description; the classical ones beat the
trivial ones on AUC and Otsu beats the empty mask on Dice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.test import Client
from PIL import Image

from challenges.baselines import registry
from challenges.baselines.classical import IMAGE
from challenges.baselines.registry import Baseline
from challenges.models import Case, LeaderboardEntry, Phase, Result, Submission
from challenges.services.baselines import baselines_add, baselines_run
from challenges.services.bundles import draw_leaderboard_parts
from evaluator.synthetic import ellipsoid_mask
from tests.factories import ChallengeFactory, PhaseFactory, UserFactory
from tests.helpers import final_evaluation, wait_for

CLASSICAL = [b.name for b in IMAGE]
#: the CNN baselines (torch) have their own tests; these stay within a minute
FAST = ("trivial", "classical")


def _png(path: Path, arr: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(arr, dtype=np.uint8), mode="L").save(path)
    return str(path)


def _cases(phase: Phase, rows: list[tuple[str, str, str, str, str]]) -> None:
    """rows: (case_id, split, input_rel, label, label_rel)."""
    test_ids = [r[0] for r in rows if r[1] == "test"]
    parts = draw_leaderboard_parts(test_ids, phase.dataset.public_fraction, 1)
    Case.objects.bulk_create(
        [
            Case(
                dataset=phase.dataset, case_id=c, split=split, input_file=inp, label=label,
                label_file=mask, leaderboard_part=parts.get(c, "") if split == "test" else "",
            )
            for c, split, inp, label, mask in rows
        ]
    )  # fmt: skip


def image_classification_phase(*, n_train: int = 60, n_test: int = 40, seed: int = 0) -> Phase:
    """32x32 PNGs of noise; class 1 (half the cases) has a bright Gaussian blob somewhere."""
    challenge = ChallengeFactory(classes=["no blob", "blob"])
    phase = PhaseFactory(challenge=challenge)
    rng = np.random.default_rng(seed)
    media, rel = Path(settings.MEDIA_ROOT), f"challenges/{challenge.slug}/main"
    yy, xx = np.mgrid[:32, :32]
    rows = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        label = i % 2
        img = rng.normal(80, 12, (32, 32))
        if label:
            cy, cx = rng.uniform(8, 24, 2)
            img += 90 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))
        case_id = f"img_{i:03d}"
        inp = f"{rel}/{split}/inputs/{case_id}.png"
        _png(media / inp, np.clip(img, 0, 255))
        rows.append((case_id, split, inp, str(label), ""))
    _cases(phase, rows)
    return phase


def image_segmentation_phase(*, n_train: int = 8, n_test: int = 10, seed: int = 0) -> Phase:
    """48x48 PNGs: an ellipse brighter than the noisy background; masks 0/1 PNGs (train masks
    public under MEDIA_ROOT, test masks private)."""
    challenge = ChallengeFactory(task_type="segmentation", classes=["blob"])
    phase = PhaseFactory(challenge=challenge, metrics=["dice"], primary_metric="dice")
    rng = np.random.default_rng(seed)
    media, private = Path(settings.MEDIA_ROOT), Path(settings.SCANBENCH_PRIVATE_ROOT)
    rel = f"challenges/{challenge.slug}/main"
    rows = []
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        mask = ellipsoid_mask((48, 48), rng.uniform(16, 32, 2), rng.uniform(5, 10, 2))
        img = rng.normal(60, 10, (48, 48)) + 90 * mask
        case_id = f"seg_{i:03d}"
        inp = f"{rel}/{split}/inputs/{case_id}.png"
        lab = f"{rel}/{split}/labels/{case_id}.png"
        _png(media / inp, np.clip(img, 0, 255))
        _png((media if split == "train" else private) / lab, mask)
        rows.append((case_id, split, inp, "", lab))
    _cases(phase, rows)
    return phase


def _scores(phase: Phase, names: set[str], metric: str) -> dict[str, dict[str, float]]:
    """Wait until every named baseline is submitted and scored; its metric per part."""
    submitted = Submission.objects.filter(phase=phase, is_baseline=True)
    wait_for(lambda: set(submitted.values_list("baseline_name", flat=True)) >= names, timeout=300)
    out: dict[str, dict[str, float]] = {}
    for submission in submitted:
        evaluation = final_evaluation(submission.pk, timeout=180)
        assert evaluation.state == "succeeded", (submission.baseline_name, evaluation.message)
        out[submission.baseline_name] = {
            r.part: r.aggregates[metric] for r in Result.objects.filter(evaluation=evaluation)
        }
    assert set(out) == names
    return out


def _board_shows_descriptions(phase: Phase, names: set[str]) -> None:
    wait_for(
        lambda: LeaderboardEntry.objects.filter(phase=phase, part="public").count() == len(names),
        timeout=120,
    )
    html = Client().get(phase.get_absolute_url()).content.decode()
    for submission in Submission.objects.filter(phase=phase, is_baseline=True):
        assert submission.comment and submission.comment in html.replace("&#x27;", "'")
        assert f'title="{submission.comment}' in html.replace("&#x27;", "'")


def test_image_classification_baselines_run_in_the_background_and_beat_trivial(
    start_worker, tmp_path
):
    phase = image_classification_phase()
    start_worker(queues="cpu")
    assert (
        baselines_add(phase=phase, user=UserFactory(username="org"), families=FAST) == []
    )  # queued
    names = {"Always negative", "Class prior", *CLASSICAL}
    auc = _scores(phase, names, "auc_roc")
    for part in ("public", "private"):
        trivial = max(auc["Always negative"][part], auc["Class prior"][part])
        assert trivial == pytest.approx(0.5)
        for name in CLASSICAL:
            assert auc[name][part] > trivial + 0.2, (name, part, auc[name])
    _board_shows_descriptions(phase, names)
    # Idempotent: the same predictions are not submitted twice.
    assert (
        baselines_run(phase_id=phase.pk, user_id=UserFactory(username="org").pk, families=FAST)
        == []
    )


def test_image_segmentation_baselines_otsu_beats_the_empty_mask(start_worker, tmp_path):
    phase = image_segmentation_phase()
    start_worker(queues="cpu")
    assert baselines_add(phase=phase, user=UserFactory(username="org"), families=FAST) == []
    dice = _scores(phase, {"Empty mask", "Otsu threshold"}, "dice")
    for part in ("public", "private"):
        assert dice["Empty mask"][part] < 0.05
        assert dice["Otsu threshold"][part] > 0.8 > dice["Empty mask"][part]
    _board_shows_descriptions(phase, {"Empty mask", "Otsu threshold"})


@pytest.mark.django_db
def test_one_failing_baseline_does_not_stop_the_others():
    phase = image_segmentation_phase(n_train=3, n_test=3)

    def boom(data):
        raise RuntimeError("broken on purpose")

    broken = Baseline("Broken", "Always fails.", "trivial", lambda d: True, boom)
    registry.register(broken)
    try:
        added = baselines_run(phase_id=phase.pk, user_id=UserFactory().pk, families=FAST)
    finally:
        registry._REGISTRY.pop("Broken")
    assert {s.baseline_name for s in added} == {"Empty mask", "Otsu threshold"}
    assert all(s.file.name.endswith(".zip") for s in added)


@pytest.mark.django_db
def test_a_phase_without_inputs_raises_a_clear_value_error():
    phase = PhaseFactory()
    with pytest.raises(ValueError, match="no train cases"):
        baselines_add(phase=phase, user=UserFactory())
    table_less = image_segmentation_phase(n_train=2, n_test=2)
    Case.objects.filter(dataset=table_less.dataset).update(input_file="")
    with pytest.raises(ValueError, match="neither a feature table nor input images"):
        baselines_add(phase=table_less, user=UserFactory())
