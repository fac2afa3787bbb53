"""Baselines on a model phase: the LeNet-style CNN is submitted twice, as its predictions and as
its exported TorchScript model file; a real gpu worker runs the model file in the Docker sandbox
on the test inputs (as it runs a participant's), a real cpu worker scores both, and the two rows
of the leaderboard agree case by case."""

from __future__ import annotations

from typing import Any

import pytest

from challenges.models import Evaluation, LeaderboardEntry, Result, Submission
from challenges.services.baselines import MODEL_FILE_SUFFIX, baselines_run
from tests.factories import UserFactory
from tests.helpers import wait_for
from tests.pipeline.test_image_baselines import image_classification_phase

torch = pytest.importorskip("torch")

from challenges.baselines import cnn  # noqa: E402

pytestmark = [pytest.mark.docker, pytest.mark.worker, pytest.mark.slow]


def test_cnn_baseline_is_also_run_as_a_model_file_in_the_sandbox(
    start_worker: Any, evaluator_image: str, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cnn, "EPOCH_SCALE", 0.5)
    settings.SCANBENCH_SANDBOX_BACKEND = "docker"
    phase = image_classification_phase(n_train=40, n_test=24)
    phase.submission_kind = "model"
    phase.input_spec = {"image_size": [32, 32], "intensity": "minmax", "output": "class_scores",
                        "class_names": ["no blob", "blob"]}  # fmt: skip
    phase.time_limit_s, phase.memory_limit_mb = 300, 2048
    phase.save()
    baselines_run(phase_id=phase.pk, user_id=UserFactory().pk, names=(cnn.LENET,))

    names = {cnn.LENET: "predictions", cnn.LENET + MODEL_FILE_SUFFIX: "model"}
    subs = {s.baseline_name: s for s in Submission.objects.filter(phase=phase, is_baseline=True)}
    assert {n: s.kind for n, s in subs.items()} == names
    assert subs[cnn.LENET + MODEL_FILE_SUFFIX].file.name.endswith(".pt")

    start_worker(queues="gpu", extra_env={"SCANBENCH_SANDBOX_BACKEND": "docker"})
    start_worker(queues="cpu")
    final = ("succeeded", "failed")
    wait_for(
        lambda: (
            Evaluation.objects.filter(submission__in=subs.values(), state__in=final).count() == 2
        ),
        timeout=300,
    )
    runs = {
        e.submission.baseline_name: e for e in Evaluation.objects.filter(submission__phase=phase)
    }
    for name, evaluation in runs.items():
        assert evaluation.state == "succeeded", (name, evaluation.message, evaluation.logs)
    assert "[sandbox backend: docker]" in runs[cnn.LENET + MODEL_FILE_SUFFIX].logs

    def probabilities(name: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for result in Result.objects.filter(evaluation=runs[name]):
            out.update({c: v["p/1"] for c, v in result.cases.items()})
        return out

    own, sandboxed = probabilities(cnn.LENET), probabilities(cnn.LENET + MODEL_FILE_SUFFIX)
    assert len(own) == 24 and set(own) == set(sandboxed)
    for case_id, p in own.items():
        assert sandboxed[case_id] == pytest.approx(p, abs=1e-4), case_id
    wait_for(
        lambda: (
            LeaderboardEntry.objects.filter(phase=phase, part="public", is_baseline=True).count()
            == 2
        )
    )
