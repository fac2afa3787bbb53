"""Honest baselines on every leaderboard: trivial, classical (and CNN, where torch is installed)
methods trained on the public train split (challenges.baselines, docs/baselines.md).

Feature tables train in a few seconds, so :func:`baselines_add` submits their baselines at once.
Image phases take longer: :func:`baselines_add` queues the Celery task ``baselines_run`` (queue
``cpu``), which runs every applicable baseline (:func:`baselines_run`) and submits each one's
predictions as it finishes. A submitted baseline is an ordinary predictions submission
(``is_baseline``, not counted against any limit): re-evaluation re-scores its stored file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.db import transaction

from challenges.baselines.data import phase_data
from challenges.baselines.registry import Baseline, PhaseData, baselines_for
from challenges.models import Phase, Submission, SubmissionKind
from challenges.services.evaluations import evaluation_create

logger = logging.getLogger(__name__)

DEFAULT_COMMENT = "Baseline computed by Scanbench on the public train split."


@transaction.atomic
def _add(
    *,
    phase: Phase,
    user: User,
    name: str,
    body: bytes,
    comment: str = DEFAULT_COMMENT,
    suffix: str = ".csv",
    kind: str = SubmissionKind.PREDICTIONS,
) -> Submission | None:
    digest = hashlib.sha256(body).hexdigest()
    if Submission.objects.filter(
        phase=phase, is_baseline=True, baseline_name=name, sha256=digest
    ).exists():
        return None  # the same baseline is already there
    submission = Submission(
        phase=phase,
        participant=user,
        kind=kind,
        sha256=digest,
        is_baseline=True,
        baseline_name=name,
        comment=comment[:500],
    )
    submission.file.save(f"{name.lower().replace(' ', '-')}{suffix}", ContentFile(body), save=False)
    submission.save()
    evaluation_create(submission=submission, first=True)
    return submission


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "baseline"


#: added to a baseline's name for the entry of its exported model, run in the sandbox
MODEL_FILE_SUFFIX = " (model file)"


def _sandbox_runs_models() -> bool:
    from challenges.services.sandbox import sandbox_backend
    from evaluator.sandbox import NoSandbox

    return not isinstance(sandbox_backend(), NoSandbox)


def baseline_submit(
    *, phase: Phase, user: User, baseline: Baseline, data: PhaseData
) -> Submission | None:
    """Run one baseline in its own scratch folder and submit its predictions (None when the
    same predictions of that baseline are already there).

    On a model phase, a baseline that exported its network for the phase's input specification
    (``model.pt`` in its folder, see challenges.baselines.cnn) is also submitted as a model
    file, entry "<name> (model file)", when this installation has a sandbox backend: the same
    network then runs in the sandbox from the test inputs, exactly as a participant's model
    does, and its row shows what the runner's path scores next to the predictions' row."""
    own = dataclasses.replace(data, work_dir=data.work_dir / _slug(baseline.name))
    own.work_dir.mkdir(parents=True, exist_ok=True)
    path = baseline.run(own)
    suffix = ".zip" if path.name.lower().endswith(".zip") else ".csv"
    added = _add(
        phase=phase, user=user, name=baseline.name, body=path.read_bytes(),
        comment=baseline.description, suffix=suffix,
    )  # fmt: skip
    model = own.work_dir / "model.pt"
    if phase.submission_kind == SubmissionKind.MODEL and model.is_file():
        if _sandbox_runs_models():
            _add(
                phase=phase, user=user, name=baseline.name + MODEL_FILE_SUFFIX,
                body=model.read_bytes(), suffix=".pt", kind=SubmissionKind.MODEL,
                comment=f"{baseline.description} Exported as TorchScript and run in the "
                "sandbox on the test inputs, like a participant's model file.",
            )  # fmt: skip
        else:
            logger.info("%s: no sandbox backend, its model file is not submitted", baseline.name)
    return added


def _chosen(baseline: Baseline, families: tuple[str, ...] | None) -> bool:
    """Whether ``baseline`` is of ``families`` (default: $SCANBENCH_BASELINE_FAMILIES, else
    every family)."""
    if families is None:
        env = os.environ.get("SCANBENCH_BASELINE_FAMILIES", "").strip()
        families = tuple(f.strip() for f in env.split(",") if f.strip()) or None
    return families is None or baseline.family in families


def _scratch() -> Path:
    root = Path(settings.VAR_DIR) / "baselines"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=root))


def _run_all(
    *,
    phase: Phase,
    user: User,
    families: tuple[str, ...] | None = None,
    names: tuple[str, ...] | None = None,
    defer_slow: bool = False,
) -> list[Submission]:
    """Build the phase's data, run every applicable baseline (of ``families``, or only those
    ``names``), submit each. One baseline that fails is logged and skipped; the others still
    run. ``defer_slow`` queues each CNN baseline as a task of its own instead of running it
    here, so that what was queued meanwhile (scoring, leaderboards) is not held up behind all
    of them."""
    work = _scratch()
    try:
        data = phase_data(phase, work)
        chosen = [
            b
            for b in baselines_for(data)
            if _chosen(b, families) and (names is None or b.name in names)
        ]
        if not chosen:
            raise ValueError(f"{phase}: no baseline applies to this phase's task and inputs")
        added: list[Submission] = []
        for baseline in chosen:
            if defer_slow and baseline.family == "cnn":
                _queue(phase=phase, user=user, names=[baseline.name])
                continue
            started = time.monotonic()
            try:
                made = baseline_submit(phase=phase, user=user, baseline=baseline, data=data)
            except Exception:
                logger.exception("baseline %r failed on %s", baseline.name, phase)
                continue
            logger.info(
                "baseline %r on %s: %.1f s", baseline.name, phase, time.monotonic() - started
            )
            added += [made] if made else []
        return added
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _queue(
    *, phase: Phase, user: User, families: list[str] | None = None, names: list[str] | None = None
) -> None:
    from challenges.tasks import baselines_run as task

    phase_id, user_id = phase.pk, user.pk
    transaction.on_commit(
        lambda: task.delay(phase_id=phase_id, user_id=user_id, families=families, names=names)
    )


def baselines_add(
    *,
    phase: Phase,
    user: User,
    background: bool = False,
    families: tuple[str, ...] | None = None,
) -> list[Submission]:
    """Submit the baselines that apply to ``phase`` (not counted against any limit; idempotent:
    a baseline whose predictions are already there is not added again).

    A feature-table phase trains its trivial and classical baselines here and returns the new
    submissions. An image phase (or ``background=True``) queues the Celery task
    ``baselines_run`` instead and returns an empty list: the baselines appear as they finish.
    ``families`` (e.g. ``("trivial", "classical")``) limits the run to those families; the
    default is every family, or the comma-separated ``SCANBENCH_BASELINE_FAMILIES`` of the
    worker's environment. Raises ValueError, queuing nothing, when no baseline applies."""
    work = _scratch()
    try:
        data = phase_data(phase, work)  # raises (a ValueError) when there is nothing to learn
        applicable = [b for b in baselines_for(data) if _chosen(b, families)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not applicable:
        raise ValueError(f"{phase}: no baseline applies to this phase's task and inputs")
    if data.input_kind == "table" and not background:
        return _run_all(phase=phase, user=user, families=("trivial", "classical"))
    _queue(phase=phase, user=user, families=list(families) if families else None)
    return []


def baselines_run(
    *,
    phase_id: int,
    user_id: int,
    families: tuple[str, ...] | None = None,
    names: tuple[str, ...] | None = None,
) -> list[Submission]:
    """The Celery task's work: every applicable baseline of the phase (of ``families``), each
    submitted as it finishes (a failing one is logged and does not stop the others). The CNN
    baselines are queued as one task each (``names``), behind whatever was queued meanwhile."""
    phase = Phase.objects.select_related("challenge", "dataset").get(pk=phase_id)
    user = User.objects.get(pk=user_id)
    return _run_all(
        phase=phase, user=user, families=families, names=names, defer_slow=names is None
    )
