"""Challenge bundles uploaded by organizers from the browser or the API: a dry run, then a
confirmed import in the background (docs/bundles.md).

:func:`bundle_upload_check` stores the zip in the private area
(``SCANBENCH_PRIVATE_ROOT/bundle-uploads/<sha256>.zip``, never under a public URL) and validates
it with the importer's own checks (:func:`challenges.services.bundles.bundle_checked`), writing
nothing but the :class:`~challenges.models.BundleUpload` row and that file; its report says what
the import would do, or lists every problem. :func:`bundle_upload_confirm` hands a checked upload
to a Celery task that runs the same import (one transaction) and records its progress.

Who may do what: creating a new challenge needs the ``challenges.add_challenge`` permission;
updating one (a bundle whose slug exists) needs being one of its organizers. An upload is seen
only by its uploader and the organizers of its challenge.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from challenges.codabench import CodabenchError
from challenges.codabench.importer import (
    CodabenchImport,
    codabench_dry_run,
    codabench_import,
    is_codabench_bundle,
)
from challenges.models import BundleUpload, BundleUploadState, Challenge
from challenges.selectors import user_is_organizer
from challenges.services.bundles import BundleError, ImportReport, bundle_checked

logger = logging.getLogger(__name__)

UPLOAD_FOLDER = "bundle-uploads"
DEFAULT_MAX_BUNDLE_BYTES = 2 << 30
#: progress is written at most this often (seconds) while importing
PROGRESS_EVERY_S = 0.5


class BundleUploadRefused(PermissionError):
    """The user may not do this with this bundle (API 403); the message says why."""

    code = "bundle_forbidden"


class BundleUploadInvalid(ValueError):
    """The request cannot be acted on as it is (API 400): no file, too large, wrong state."""

    def __init__(self, message: str, *, code: str = "bundle_invalid") -> None:
        super().__init__(message)
        self.code = code


def max_bundle_bytes() -> int:
    return int(getattr(settings, "SCANBENCH_MAX_BUNDLE_UPLOAD_BYTES", DEFAULT_MAX_BUNDLE_BYTES))


def can_create_challenges(user: Any) -> bool:
    return bool(user.is_authenticated and user.has_perm("challenges.add_challenge"))


def _private_root() -> Path:
    return Path(settings.SCANBENCH_PRIVATE_ROOT)


def bundle_upload_precheck(*, user: Any, challenge: Challenge | None, size: int | None) -> None:
    """The checks that need no body: who may upload here, and the declared size."""
    if challenge is None:
        if not can_create_challenges(user):
            raise BundleUploadRefused(
                "you may not create challenges (ask the site's administrators for the "
                "'add challenge' permission)"
            )
    elif not user_is_organizer(user=user, challenge=challenge):
        raise BundleUploadRefused(f"you are not an organizer of {challenge.slug}")
    cap = max_bundle_bytes()
    if size is not None and size > cap:
        raise BundleUploadInvalid(
            f"the bundle is {size} bytes, over the limit of {cap} bytes", code="too_large"
        )


def _store_upload(file: File[bytes]) -> tuple[str, int, str]:
    """Stream ``file`` into the private upload folder under its sha256; return (relative
    path, size, sha256). Refuses past the size cap while reading, whatever was declared."""
    cap = max_bundle_bytes()
    folder = _private_root() / UPLOAD_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with tmp.open("wb") as out:
            for chunk in file.chunks():
                size += len(chunk)
                if size > cap:
                    raise BundleUploadInvalid(
                        f"the bundle is over the limit of {cap} bytes", code="too_large"
                    )
                digest.update(chunk)
                out.write(chunk)
        sha = digest.hexdigest()
        rel = f"{UPLOAD_FOLDER}/{sha}.zip"
        os.replace(tmp, _private_root() / rel)
    finally:
        tmp.unlink(missing_ok=True)
    return rel, size, sha


def _discard_file(upload: BundleUpload) -> None:
    """Delete the stored zip unless another upload still waiting or importing needs it."""
    if not upload.path:
        return
    pending = BundleUpload.objects.filter(
        path=upload.path, state__in=[BundleUploadState.CHECKED, BundleUploadState.IMPORTING]
    ).exclude(pk=upload.pk)
    if not pending.exists():
        (_private_root() / upload.path).unlink(missing_ok=True)


def _permission_problem(*, user: Any, slug: str, challenge: Challenge | None) -> str | None:
    """Why ``user`` may not import a bundle with ``slug`` (uploaded for ``challenge``)."""
    if challenge is not None and slug != challenge.slug:
        return (
            f"challenge.yaml: slug: the bundle is for '{slug}', but it was uploaded to update "
            f"'{challenge.slug}'"
        )
    existing = Challenge.objects.filter(slug=slug).first()
    if existing is None:
        if not can_create_challenges(user):
            return f"challenge '{slug}' does not exist and you may not create challenges"
        return None
    if not user_is_organizer(user=user, challenge=existing):
        return f"challenge '{slug}' exists and you are not one of its organizers"
    return None


def bundle_upload_check(
    *, user: Any, file: File[bytes], challenge: Challenge | None = None
) -> BundleUpload:
    """Store the uploaded zip and check it like the import would, writing nothing else.

    Returns the :class:`BundleUpload`, ``checked`` (with the report of what the import would
    do) or ``refused`` (with every problem). Raises :class:`BundleUploadRefused` when the user
    may not upload here at all, :class:`BundleUploadInvalid` when the file is missing or too
    large; nothing is kept then."""
    bundle_upload_precheck(user=user, challenge=challenge, size=getattr(file, "size", None))
    rel, size, sha = _store_upload(file)
    path = _private_root() / rel
    upload = BundleUpload(
        uploaded_by=user,
        challenge=challenge,
        original_name=(getattr(file, "name", "") or "bundle.zip")[:255],
        path=rel,
        size=size,
        sha256=sha,
    )
    problems: list[str] = []
    report: dict[str, Any] = {}
    if not zipfile.is_zipfile(path):
        problems = [f"{upload.original_name}: not a zip archive (zip the bundle's folder)"]
    elif is_codabench_bundle(path):
        try:
            report = codabench_dry_run(path, slug=challenge.slug if challenge else None)
        except CodabenchError as exc:
            problems = [str(exc).replace(path.name, upload.original_name)]
        except Exception as exc:  # a reader's fault on odd bytes: refuse, never a server error
            logger.exception("bundle upload %s: the dry run failed", sha)
            problems = [f"{upload.original_name}: the bundle could not be read ({exc})"]
    else:
        try:
            with bundle_checked(path) as plan:
                report = plan.report()
        except BundleError as exc:
            problems = [p.replace(path.name, upload.original_name) for p in exc.problems]
        except Exception as exc:  # a reader's fault on odd bytes: refuse, never a server error
            logger.exception("bundle upload %s: the dry run failed", sha)
            problems = [f"{upload.original_name}: the bundle could not be read ({exc})"]
    if report:
        upload.slug = report["slug"]
        why = _permission_problem(user=user, slug=report["slug"], challenge=challenge)
        if why:
            problems.append(why)
        existing = Challenge.objects.filter(slug=report["slug"]).first()
        report["exists"] = existing is not None
        if existing is not None:
            upload.challenge = existing
            report["currently_published"] = existing.is_published
    report["problems"] = problems
    upload.report = report
    upload.state = BundleUploadState.REFUSED if problems else BundleUploadState.CHECKED
    if problems:
        upload.message = problems[0]
    upload.save()
    if problems:
        _discard_file(upload)
    return upload


def bundle_uploads_visible_to(*, user: Any) -> QuerySet[BundleUpload]:
    """The uploads ``user`` may see: their own, and those of the challenges they organize."""
    if not user.is_authenticated:
        return BundleUpload.objects.none()
    return BundleUpload.objects.filter(
        Q(uploaded_by=user) | Q(challenge__organizers=user)
    ).distinct()


def bundle_upload_get_for_user(*, user: Any, upload_id: int) -> BundleUpload:
    """The upload, if ``user`` may see it; else Http404 (its existence is not revealed)."""
    upload = bundle_uploads_visible_to(user=user).filter(pk=upload_id).first()
    if upload is None:
        raise Http404("No such upload.")
    return upload


def bundle_upload_confirm(*, upload: BundleUpload, user: Any) -> BundleUpload:
    """Start the import of a checked upload in the background (state ``importing``).

    Only the uploader confirms, and only while the upload is ``checked``; the permission is
    checked again (the user's rights or the challenge may have changed since the dry run)."""
    from challenges import tasks

    with transaction.atomic():
        locked = BundleUpload.objects.select_for_update().get(pk=upload.pk)
        if locked.uploaded_by_id != user.pk:
            raise BundleUploadRefused("only the organizer who uploaded the bundle confirms it")
        if locked.state != BundleUploadState.CHECKED:
            raise BundleUploadInvalid(
                f"the upload is {locked.get_state_display().lower()}, not waiting for confirmation",
                code="bundle_state",
            )
        why = _permission_problem(user=user, slug=locked.slug, challenge=None)
        if why:
            raise BundleUploadRefused(why)
        locked.state = BundleUploadState.IMPORTING
        locked.progress = {"stage": "queued", "done": 0, "total": 0}
        locked.save(update_fields=["state", "progress"])
        upload_id = locked.pk
        transaction.on_commit(
            lambda: tasks.bundle_upload_import.apply_async(kwargs={"upload_id": upload_id})
        )
    return locked


def _progress_writer(upload_id: int) -> Any:
    """A progress callback that writes ``{stage, done, total}`` to the row at most every
    :data:`PROGRESS_EVERY_S` (outside the import's transaction, so pages see it)."""
    import time

    last: dict[str, Any] = {"at": 0.0, "stage": ""}

    def write(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage == last["stage"] and now - last["at"] < PROGRESS_EVERY_S and done < total:
            return
        last.update(at=now, stage=stage)
        BundleUpload.objects.filter(pk=upload_id).update(
            progress={"stage": stage, "done": done, "total": total}
        )

    return write


def bundle_upload_import(*, upload_id: int) -> None:
    """Import a confirmed upload (the Celery task's body). Idempotent: does nothing unless the
    upload is ``importing``; the import itself updates in place, so a second delivery after a
    lost worker repeats it harmlessly. Ends ``imported`` (challenge linked, the uploader made
    an organizer, an ``import`` action logged, all in the import's transaction) or ``failed``
    with the message."""
    from challenges.services.bundles import challenge_import_bundle
    from challenges.services.organizers import _log

    upload = BundleUpload.objects.select_related("uploaded_by").filter(pk=upload_id).first()
    if upload is None or upload.state != BundleUploadState.IMPORTING:
        return
    user = upload.uploaded_by

    def mark(report: ImportReport | CodabenchImport, what: str, **details: Any) -> None:
        """The upload's log entry and final state, inside the import's transaction."""
        verb = "Created" if report.created else "Updated"
        _log(
            report.challenge,
            user,
            "import",
            f"{verb} the challenge from {what} {upload.original_name}",
            upload_id=upload.pk,
            sha256=upload.sha256,
            phases=report.phases,
            **details,
        )
        BundleUpload.objects.filter(pk=upload.pk).update(
            state=BundleUploadState.IMPORTED,
            challenge=report.challenge,
            finished_at=timezone.now(),
            message=str(report)[:5000],
            progress={"stage": "done", "done": 1, "total": 1},
        )

    def written(report: ImportReport) -> None:
        mark(report, "bundle", cases=report.cases)

    def written_codabench(imported: CodabenchImport) -> None:
        mark(imported, "Codabench bundle", not_mapped=imported.report)

    path = _private_root() / upload.path
    try:
        why = _permission_problem(user=user, slug=upload.slug, challenge=None)
        if why:
            raise BundleError(why)
        if (upload.report or {}).get("format") == "codabench":
            try:
                codabench_import(
                    path=path, organizer=user, slug=upload.slug, on_written=written_codabench
                )
            except CodabenchError as exc:
                raise BundleError(str(exc)) from exc
        else:
            challenge_import_bundle(
                path=path,
                organizer=user,
                progress=_progress_writer(upload.pk),
                on_written=written,
            )
    except Exception as exc:
        if not isinstance(exc, BundleError):
            logger.exception("bundle upload %s: the import failed", upload_id)
        problems = exc.problems if isinstance(exc, BundleError) else []
        report = dict(upload.report or {})
        if problems:
            report["problems"] = problems
        BundleUpload.objects.filter(pk=upload.pk).update(
            state=BundleUploadState.FAILED,
            finished_at=timezone.now(),
            message=(str(exc) if isinstance(exc, BundleError) else f"the import failed: {exc}")[
                :5000
            ],
            report=report,
        )
        return
    upload.refresh_from_db()
    _discard_file(upload)
