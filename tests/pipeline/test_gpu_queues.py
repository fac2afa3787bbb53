"""Queues per kind of GPU: a phase with ``gpu_queue`` sends its model runs only to the workers
started on that queue (``-Q gpu-h100``); plain gpu workers leave them alone."""

from __future__ import annotations

import time

import pytest
from django.conf import settings

from challenges.models import Evaluation
from challenges.services.bundles import BundleError, _Fields, _gpu_queue
from challenges.services.operations import prometheus_text
from tests.helpers import wait_for
from tests.pipeline.test_code_submissions import _image_phase, _submit, _torchscript

pytestmark = [pytest.mark.docker, pytest.mark.worker]


def _waiting(queue: str) -> int:
    import redis

    return int(redis.Redis.from_url(settings.CELERY_BROKER_URL).llen(queue))


def test_a_phase_for_one_kind_of_gpu_is_run_only_by_that_kind_of_worker(
    start_worker, evaluator_image, tmp_path
):
    docker = {"SCANBENCH_SANDBOX_BACKEND": "docker"}
    phase = _image_phase()
    phase.gpu_queue = "gpu-h100"
    phase.save(update_fields=["gpu_queue"])
    start_worker(queues="gpu", extra_env=docker)
    start_worker(queues="cpu")
    submission = _submit(phase, _torchscript(tmp_path / "model.pt"))
    wait_for(lambda: _waiting("gpu-h100") == 1, timeout=30)
    time.sleep(3)  # a plain gpu worker would have taken it by now
    assert _waiting("gpu-h100") == 1
    assert submission.evaluations.get().state == "queued"
    assert 'scanbench_queue_length{queue="gpu-h100"} 1' in prometheus_text()

    start_worker(queues="gpu-h100", extra_env=docker)
    evaluation = wait_for(
        lambda: Evaluation.objects.filter(
            submission=submission, state__in=["succeeded", "failed"]
        ).first(),
        timeout=240,
    )
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    assert _waiting("gpu-h100") == 0


@pytest.mark.parametrize("value", ["GPU", "h100", "gpu_h100", "gpu-", "cpu"])
def test_challenge_yaml_refuses_a_queue_that_is_not_gpu_or_gpu_kind(value):
    with pytest.raises(BundleError, match=r"phases\.0\.gpu_queue"):
        _gpu_queue(_Fields({"gpu_queue": value}, "phases.0"))


@pytest.mark.parametrize("value", ["gpu", "gpu-h100", "gpu-a100-80gb"])
def test_challenge_yaml_takes_gpu_and_gpu_kind_queues(value):
    assert _gpu_queue(_Fields({"gpu_queue": value}, "phases.0")) == value
