"""Model submissions through the whole pipeline: upload, the gpu queue runs the model in the
Docker sandbox, the cpu queue scores what it wrote; a worker killed in the middle of the run."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from challenges.models import Case, Evaluation, LeaderboardEntry, Result
from challenges.services.bundles import draw_leaderboard_parts
from challenges.services.submissions import submission_create
from challenges.tasks import evaluations_reap
from tests.factories import PhaseFactory, UserFactory
from tests.helpers import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.worker]


def _image_phase(n_cases: int = 8):
    """A model phase over PNG cases: bright cases are positive."""
    from PIL import Image

    phase = PhaseFactory(
        submission_kind="model",
        metrics=["auc_roc", "sensitivity", "specificity"],
        primary_metric="auc_roc",
        input_spec={"image_size": [16, 16], "intensity": "scale", "scale": 1 / 255},
        time_limit_s=120,
        memory_limit_mb=2048,
    )
    rel = f"challenges/{phase.challenge.slug}/main/test"
    folder = Path(settings.MEDIA_ROOT) / rel
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for i in range(n_cases):
        label = i % 2
        pixels = np.clip(rng.normal(200 if label else 40, 10, (24, 24)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"case{i}.png")
        labels[f"case{i}"] = str(label)
    parts = draw_leaderboard_parts(list(labels), 0.3, 1)
    Case.objects.bulk_create(
        [
            Case(dataset=phase.dataset, case_id=c, split="test", leaderboard_part=parts[c],
                 label=lab, input_file=f"{rel}/{c}.png")
            for c, lab in labels.items()
        ]
    )  # fmt: skip
    return phase


def _torchscript(path: Path, *, slow: bool = False) -> Path:
    import torch

    class MeanScore(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)).reshape(1, 1)

    class SlowMeanScore(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = torch.ones(512, 512) / 512.0
            y = torch.ones(512, 512)
            for _ in range(400):  # about a second of compute per case
                y = torch.tanh(y @ w)
            return x.mean(dim=(1, 2, 3)).reshape(1, 1) + 0.0 * y.mean()

    model = SlowMeanScore() if slow else MeanScore()
    torch.jit.save(torch.jit.script(model), str(path))
    return path


def _submit(phase, model: Path):
    upload = SimpleUploadedFile(model.name, model.read_bytes())
    return submission_create(user=UserFactory(), phase=phase, file=upload)


@pytest.fixture
def docker_env(evaluator_image) -> dict[str, str]:
    return {"SCANBENCH_SANDBOX_BACKEND": "docker"}


def test_torchscript_model_runs_in_the_sandbox_and_is_scored(start_worker, docker_env, tmp_path):
    phase = _image_phase()
    start_worker(queues="gpu", extra_env=docker_env)
    start_worker(queues="cpu")
    submission = _submit(phase, _torchscript(tmp_path / "model.pt"))
    evaluation = wait_for(
        lambda: Evaluation.objects.filter(
            submission=submission, state__in=["succeeded", "failed"]
        ).first(),
        timeout=240,
    )
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    assert "[sandbox backend: docker]" in evaluation.logs
    public = Result.objects.get(evaluation=evaluation, part="public")
    assert public.aggregates["auc_roc"] == 1.0  # bright cases score higher
    wait_for(lambda: LeaderboardEntry.objects.filter(phase=phase).exists())


def test_worker_killed_during_the_sandbox_run_is_taken_up_and_ends_once(
    start_worker, docker_env, tmp_path
):
    phase = _image_phase()
    # A short lease, so that the killed worker's lapses in seconds (docs/pipeline.md).
    lease = {"SCANBENCH_LEASE_S": "2", "SCANBENCH_LEASE_RENEW_S": "0.5"}
    gpu = start_worker(queues="gpu", extra_env={**docker_env, **lease})
    # The cpu worker also runs the reaper (Celery beat sends it there in production).
    start_worker(queues="cpu")
    submission = _submit(phase, _torchscript(tmp_path / "slow.pt", slow=True))
    wait_for(
        lambda: Evaluation.objects.filter(submission=submission, state="running").exists(),
        timeout=120,
        interval=0.05,
    )
    gpu.kill()  # SIGKILL to the gpu worker in the middle of the sandbox run
    evaluation = submission.evaluations.get()
    assert evaluation.state == "running"
    start_worker(queues="gpu", extra_env=docker_env)
    # The dead worker no longer renews its lease: once it lapses, the reaper takes the run back.
    wait_for(lambda: Evaluation.objects.get(pk=evaluation.pk).lease_expires_at < timezone.now())
    evaluations_reap.apply_async()
    evaluation = wait_for(
        lambda: Evaluation.objects.filter(
            submission=submission, state__in=["succeeded", "failed"]
        ).first(),
        timeout=300,
    )
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    assert evaluation.deliveries == 3  # the killed run, the run again, the scoring
    assert Result.objects.filter(evaluation=evaluation).count() == 2
    assert Evaluation.objects.filter(submission=submission).count() == 1
    # What the killed worker's run left in the engine was removed by the next delivery.
    import docker

    owned = {"label": f"org.scanbench.owner=evaluation-{evaluation.pk}"}
    client = docker.from_env()
    assert client.containers.list(all=True, filters=owned) == []
    assert client.volumes.list(filters=owned) == []
