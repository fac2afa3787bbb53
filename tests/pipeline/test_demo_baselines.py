"""The README's first command, end to end on the imaging demos: ``setup_demo`` queues the
baselines of chest-xray-pneumonia, nuclei-segmentation and lesion-segmentation-3d; a real Celery
worker trains every one (trivial, classical and the CNNs of challenges/baselines/cnn.py), and
their predictions are scored by the ordinary pipeline onto each demo's public leaderboard, with
a score and, where the metric has one at live scoring (AUC: DeLong), an interval; the trained
baselines beat the trivial ones where they must.

The CNNs train for half their default length (``SCANBENCH_BASELINE_EPOCH_SCALE``, read by
``cnn.EPOCH_SCALE`` in the worker) on one thread, so the test takes a few minutes on 2 busy
cores rather than ten.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from challenges.baselines.data import phase_data
from challenges.baselines.registry import baselines_for
from challenges.models import Evaluation, LeaderboardEntry, Phase, Submission
from tests.foundation.test_pages import demo  # noqa: F401  (the fixture: setup_demo, tmp VAR_DIR)
from tests.helpers import wait_for

pytest.importorskip("torch")

pytestmark = [pytest.mark.slow, pytest.mark.worker]

IMAGING = ("chest-xray-pneumonia", "nuclei-segmentation", "lesion-segmentation-3d")
FINAL = ("succeeded", "failed")
EPOCH_SCALE = "0.5"
#: primary metrics with an interval computed at every scoring (DeLong, Wilson); a mean over cases
#: such as Dice gets one only from the live bootstrap (SCANBENCH_LIVE_BOOTSTRAP, default 0: none)
ANALYTIC = ("auc_roc", "sensitivity", "specificity")


def _expected(phase: Phase) -> set[str]:
    """The names of the baselines that apply to the phase (trivial, classical, CNN)."""
    with tempfile.TemporaryDirectory(dir=settings.VAR_DIR) as work:
        return {b.name for b in baselines_for(phase_data(phase, Path(work)))}


def _all_final(phases: dict[Phase, set[str]]) -> bool:
    for phase, names in phases.items():
        baselines = Submission.objects.filter(phase=phase, is_baseline=True)
        if set(baselines.values_list("baseline_name", flat=True)) < names:
            return False
        if Evaluation.objects.filter(submission__in=baselines).exclude(state__in=FINAL).exists():
            return False
        public = LeaderboardEntry.objects.filter(phase=phase, part="public", is_baseline=True)
        if public.count() < len(names):
            return False
    return True


def _board(phase: Phase) -> dict[str, LeaderboardEntry]:
    rows = LeaderboardEntry.objects.filter(phase=phase, part="public", is_baseline=True)
    return {row.submission.baseline_name: row for row in rows.select_related("submission")}


def test_demo_imaging_baselines_reach_the_public_leaderboards(
    start_worker: Callable[..., Any],
    demo: str,  # noqa: F811  (after start_worker: its broker flush must not drop what demo queues)
    tmp_path: Path,
) -> None:
    phases = {
        phase: _expected(phase)
        for phase in Phase.objects.filter(challenge__slug__in=IMAGING).select_related(
            "challenge", "dataset"
        )
    }
    assert {p.challenge.slug for p in phases} == set(IMAGING), "an imaging demo was not built"
    for phase, names in phases.items():
        assert {"LeNet-style CNN", "U-Net 2-D", "U-Net 2.5-D"} & names, (phase, names)
    worker = start_worker(
        queues="cpu",
        extra_env={
            # the worker sees the demo's VAR_DIR (feature tables, scratch, the pretraining cache)
            # and the same media and private roots the import wrote to
            "SCANBENCH_VAR_DIR": str(settings.VAR_DIR),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "SCANBENCH_PRIVATE_ROOT": str(settings.SCANBENCH_PRIVATE_ROOT),
            "SCANBENCH_BASELINE_EPOCH_SCALE": EPOCH_SCALE,
            "SCANBENCH_BASELINE_THREADS": "1",
        },
    )
    try:
        wait_for(lambda: _all_final(phases), timeout=15 * 60, interval=2)
    except pytest.fail.Exception:
        pytest.fail(f"baselines not all scored; worker log tail:\n{worker.output()[-6000:]}")

    for phase, names in phases.items():
        failed = Evaluation.objects.filter(
            submission__phase=phase, submission__is_baseline=True, state="failed"
        )
        assert not failed.exists(), [(e.submission.baseline_name, e.message) for e in failed]
        board = _board(phase)
        assert set(board) == names, (phase, set(board) ^ names)
        for name, row in board.items():
            assert row.score is not None, (phase, name)
            if phase.primary_metric in ANALYTIC or settings.SCANBENCH_LIVE_BOOTSTRAP > 0:
                low, high = row.score_ci_low, row.score_ci_high
                assert low is not None and high is not None, (phase, name)
                assert low <= row.score <= high, (phase, name, low, row.score, high)
        html = Client().get(phase.get_absolute_url()).content.decode()
        for row in board.values():
            assert row.display_name in html.replace("&#x27;", "'"), (phase, row.display_name)

    chest = _board(Phase.objects.get(challenge__slug="chest-xray-pneumonia"))
    negative = chest["Always negative"]
    assert negative.aggregates["sensitivity"] == 0
    best = max(chest.values(), key=lambda row: row.score or 0.0)
    assert best.score is not None and negative.score is not None
    assert best.score > negative.score, {n: r.score for n, r in chest.items()}

    lesion = _board(Phase.objects.get(challenge__slug="lesion-segmentation-3d"))
    unet, empty = lesion["U-Net 2.5-D"].aggregates["dice"], lesion["Empty mask"].aggregates["dice"]
    assert unet is not None and empty is not None
    assert unet > empty, {n: r.aggregates.get("dice") for n, r in lesion.items()}
