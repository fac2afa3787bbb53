"""Running model and container submissions in the sandbox (the ``gpu`` queue).

Participant code sees only the test inputs of its phase (read-only at /input) and writes
predictions to /output; it never sees labels, the network or the host. What it writes is
validated by the sandbox and then scored by the trusted evaluator on the cpu queue, never read
as a score."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from django.conf import settings

from challenges.models import Case, CaseSplit, EvaluationState, Phase, SubmissionKind, TaskType
from challenges.services.evaluations import (
    evaluation_begin,
    evaluation_fail,
    evaluation_hand_to_scoring,
    failure_logs,
)
from challenges.services.programs import CodeSubmissionInvalid, code_run
from challenges.services.storage import public_storage, storage_local_dir, storage_local_path
from evaluator import InvalidSubmission
from evaluator.sandbox import (
    DockerBackend,
    InputSpec,
    InvalidImageTarball,
    Limits,
    NoSandbox,
    ProgramError,
    RunSpec,
    RunStatus,
    SandboxBackend,
    get_backend,
    load_image_tarball,
    run_model_submission,
)

logger = logging.getLogger(__name__)
MiB = 1024 * 1024


def sandbox_backend() -> SandboxBackend:
    return get_backend(settings.SCANBENCH_SANDBOX_BACKEND)


def test_inputs_dir(*, phase: Phase) -> Path:
    """The folder of the phase's test inputs (public files; never labels)."""
    files = list(
        Case.objects.filter(dataset_id=phase.dataset_id, split=CaseSplit.TEST)
        .exclude(input_file="")
        .values_list("input_file", flat=True)
    )
    folders = {str(Path(f).parent) for f in files}
    if not files or len(folders) != 1:
        raise RuntimeError(f"phase {phase}: test inputs are not one folder of files")
    return storage_local_dir(storage=public_storage(), prefix=folders.pop())


def _limits(phase: Phase) -> Limits:
    return Limits(
        time_limit_s=float(phase.time_limit_s),
        memory_bytes=phase.memory_limit_mb * MiB,
        gpus=phase.gpus,
    )


def _runner_spec(phase: Phase) -> InputSpec:
    """The phase's input specification for the model runner, with its CSV columns always
    ``class_0..`` (or ``score``): the scorer reads those, not class names, so a spec that names
    its classes would otherwise turn every model's output into an unreadable file."""
    return dataclasses.replace(InputSpec.from_dict(phase.input_spec), class_names=())


def evaluation_run(*, evaluation_id: int) -> None:
    """Run the submission's code once for this delivery; hand valid output to scoring."""
    evaluation = evaluation_begin(evaluation_id=evaluation_id, stage=EvaluationState.RUNNING)
    if evaluation is None:
        return
    submission = evaluation.submission
    phase = submission.phase
    out = (
        Path(settings.VAR_DIR) / "evaluations" / str(evaluation.pk) / f"run-{evaluation.deliveries}"
    )
    shutil.rmtree(out, ignore_errors=True)  # a fresh folder per delivery: no half-written output
    backend = sandbox_backend()
    if isinstance(backend, NoSandbox):
        evaluation_fail(
            evaluation_id=evaluation_id,
            message=NoSandbox.MESSAGE,
            logs="; ".join(backend.check()),
            platform_fault=True,
        )
        return
    owner = f"evaluation-{evaluation.pk}"
    if evaluation.deliveries > 1 and isinstance(backend, DockerBackend):
        # An earlier delivery died with its worker: remove its container and output volume.
        removed = backend.remove_leftovers(owner=owner)
        logger.info("removed %d leftover(s) of %s", removed, owner)
    image_id: str | None = None
    try:
        submission_path = storage_local_path(
            storage=submission.file.storage, name=str(submission.file.name)
        )
        if submission.kind == SubmissionKind.CODE:
            result = code_run(evaluation=evaluation, phase=phase, code_zip=submission_path, out=out)
        elif submission.kind == SubmissionKind.MODEL:
            inputs = test_inputs_dir(phase=phase)
            result = run_model_submission(
                model_path=submission_path,
                input_dir=inputs,
                output_dir=out,
                input_spec=_runner_spec(phase),
                limits=_limits(phase),
                backend=backend,
                label=owner,
            )
        else:
            import docker

            inputs = test_inputs_dir(phase=phase)
            client = docker.from_env()
            image_id = load_image_tarball(submission_path, client)
            result = backend.run(
                RunSpec(
                    input_dir=inputs,
                    output_dir=out,
                    image=image_id,
                    limits=_limits(phase),
                    label=owner,
                )
            )
    except ProgramError as exc:  # the organizers' ingestion program, not the participant
        evaluation_fail(
            evaluation_id=evaluation_id,
            message="The ingestion program of this phase has a problem; this does not count "
            "against your limits. The organizers have been told.",
            logs=str(exc),
            platform_fault=True,
        )
        return
    except (InvalidSubmission, InvalidImageTarball, CodeSubmissionInvalid) as exc:
        evaluation_fail(evaluation_id=evaluation_id, message=f"Invalid submission: {exc}")
        return
    except Exception as exc:
        logger.exception("sandbox run of %s failed", evaluation)
        evaluation_fail(
            evaluation_id=evaluation_id,
            message="The platform could not run this submission; it does not count against "
            "your limits.",
            logs=f"{type(exc).__name__}: {exc}\n{failure_logs()}",
            platform_fault=True,
        )
        return
    finally:
        if image_id is not None:
            _remove_image(image_id)
        if evaluation.deliveries > 1 and isinstance(backend, DockerBackend):
            # Once more after this run: the engine may still have been creating the dead
            # delivery's container when it was first cleaned up.
            backend.remove_leftovers(owner=owner)
    logs = f"[sandbox backend: {result.backend}] {result.status} in {result.wall_s:.1f} s\n"
    if not result.ok:
        evaluation_fail(
            evaluation_id=evaluation_id,
            message=result.participant_message,
            logs=logs + result.logs_tail,
            platform_fault=result.status is RunStatus.SANDBOX_ERROR,
        )
        return
    predictions = (
        out / "predictions.csv"
        if phase.challenge.task_type == TaskType.CLASSIFICATION and submission.kind == "model"
        else out
    )
    evaluation_hand_to_scoring(
        evaluation_id=evaluation_id, predictions=predictions, logs=logs + result.logs_tail
    )


def _remove_image(image_id: str) -> None:
    try:
        import docker

        docker.from_env().images.remove(image_id, force=True)
    except Exception:
        logger.warning("could not remove image %s", image_id, exc_info=True)
