"""The hidden reference of a phase, materialized for the trusted scorer (never for the web)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Max

from challenges.models import Case, CaseSplit, Phase, TaskType
from challenges.services.storage import private_storage, storage_local_dir


@dataclass(frozen=True)
class Reference:
    path: Path
    public_ids: list[str]
    private_ids: list[str]


class ReferenceError_(RuntimeError):
    """The phase's reference is unusable: an organizer's problem, never the participant's."""


# Per worker process: the reference of a data set, valid while its test cases are unchanged
# (same count, same latest ``updated_at``: one aggregate query instead of reading every case).
_cache: dict[int, tuple[tuple[object, ...], Reference]] = {}


def reference_for_phase(*, phase: Phase) -> Reference:
    """Return the reference file (classification: a CSV written once, named by its content
    hash) or folder (segmentation: the private label folder) of the phase's test cases."""
    stamp = tuple(
        Case.objects.filter(dataset_id=phase.dataset_id, split=CaseSplit.TEST)
        .aggregate(n=Count("pk"), latest=Max("updated_at"), top=Max("pk"))
        .values()
    )
    cached = _cache.get(phase.dataset_id)
    if cached is not None and cached[0] == stamp and cached[1].path.exists():
        return cached[1]
    reference = _build_reference(phase)
    _cache[phase.dataset_id] = (stamp, reference)
    return reference


def _build_reference(phase: Phase) -> Reference:
    rows = list(
        Case.objects.filter(dataset_id=phase.dataset_id, split=CaseSplit.TEST)
        .order_by("case_id")
        .values_list("case_id", "leaderboard_part", "label", "label_file")
    )
    if not rows:
        raise ReferenceError_(f"phase {phase}: the data set has no test cases")
    public = [r[0] for r in rows if r[1] == "public"]
    private = [r[0] for r in rows if r[1] == "private"]
    private_root = Path(settings.SCANBENCH_PRIVATE_ROOT)
    if phase.challenge.task_type == TaskType.CLASSIFICATION:
        body = "case_id,label\n" + "".join(f"{r[0]},{r[2]}\n" for r in rows)
        digest = hashlib.sha256(body.encode()).hexdigest()[:24]
        path = private_root / "references" / f"{phase.dataset_id}-{digest}.csv"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(body, encoding="utf-8")
            tmp.replace(path)  # atomic: a concurrent scorer sees the whole file or none
        return Reference(path=path, public_ids=public, private_ids=private)
    folders = {str(Path(r[3]).parent) for r in rows}
    if len(folders) != 1 or not rows[0][3]:
        raise ReferenceError_(f"phase {phase}: test label masks are not in one folder")
    # The label masks: the private folder itself, or (S3) the worker's cached copy of it.
    path = storage_local_dir(storage=private_storage(), prefix=folders.pop())
    return Reference(path=path, public_ids=public, private_ids=private)
