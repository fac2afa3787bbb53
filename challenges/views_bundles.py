"""Pages of challenge bundle uploads (docs/bundles.md): upload a zip for a new challenge or to
update one, read the dry run's report, confirm, watch the import. Interfaces only: each view
calls one service of challenges.services.bundle_uploads."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views import View

from challenges.models import BundleUpload, BundleUploadState, Challenge
from challenges.selectors import user_is_organizer
from challenges.services.bundle_uploads import (
    BundleUploadInvalid,
    BundleUploadRefused,
    bundle_upload_check,
    bundle_upload_confirm,
    bundle_upload_get_for_user,
    can_create_challenges,
    max_bundle_bytes,
)


def _organized_challenge(request: HttpRequest, slug: str) -> Challenge:
    """The challenge, if the user organizes it; 404 for everyone else (as the console)."""
    challenge = Challenge.objects.filter(slug=slug).first()
    if challenge is None or not user_is_organizer(user=request.user, challenge=challenge):
        raise Http404("No such challenge.")
    return challenge


def _form_page(
    request: HttpRequest, challenge: Challenge | None, *, error: str = "", status: int = 200
) -> HttpResponse:
    return render(
        request,
        "challenges/bundles/upload_form.html",
        {
            "challenge": challenge,
            "error": error,
            "max_bytes": max_bundle_bytes(),
            "recent": BundleUpload.objects.filter(
                uploaded_by_id=request.user.pk, challenge=challenge
            )[:5]
            if challenge is not None
            else BundleUpload.objects.filter(uploaded_by_id=request.user.pk)[:5],
        },
        status=status,
    )


def _upload(request: HttpRequest, challenge: Challenge | None) -> HttpResponse:
    file = request.FILES.get("file")
    if file is None:
        return _form_page(request, challenge, error="Choose the bundle's zip file.", status=400)
    try:
        upload = bundle_upload_check(user=request.user, file=file, challenge=challenge)
    except BundleUploadRefused as exc:
        return _form_page(request, challenge, error=f"Refused: {exc}.", status=403)
    except BundleUploadInvalid as exc:
        return _form_page(request, challenge, error=f"{str(exc).capitalize()}.", status=400)
    return HttpResponseRedirect(reverse("challenges:bundle-upload", args=[upload.pk]))


def _range(low: list[Any], high: list[Any], fmt: str, sep: str) -> str:
    lo = sep.join(format(v, fmt) for v in low)
    hi = sep.join(format(v, fmt) for v in high)
    return lo if lo == hi else f"{lo} \u2013 {hi}"


def _when(iso: str | None) -> str:
    """``2026-01-31 12:00 UTC`` from the report's ISO 8601 time (stored in UTC)."""
    return f"{iso[:10]} {iso[11:16]} UTC" if iso else ""


def _split_row(name: str, data: dict[str, Any], classes: list[str]) -> dict[str, Any]:
    """One split of the dry run's summary, as the report's table shows it."""
    row: dict[str, Any] = {"name": name, "cases": data.get("cases", 0)}
    shape, spacing = data.get("shape"), data.get("spacing_mm")
    row["shape"] = _range(shape["min"], shape["max"], "d", "\u00d7") if shape else "mixed"
    row["spacing"] = _range(spacing["min"], spacing["max"], ".4g", " \u00d7 ") if spacing else ""
    row["without_spacing"] = data.get("cases_without_spacing", 0)
    row["foreground"] = [
        {
            "label": f"{lab} {classes[int(lab) - 1]}" if 0 < int(lab) <= len(classes) else lab,
            "mean": 100 * f["mean"],
            "min": 100 * f["min"],
            "max": 100 * f["max"],
        }
        for lab, f in (data.get("foreground") or {}).items()
    ]
    row["classes"] = [
        {"label": f"{k} {classes[int(k)]}" if int(k) < len(classes) else k, "cases": n}
        for k, n in (data.get("classes") or {}).items()
    ]
    return row


class BundleNewView(LoginRequiredMixin, View):
    """Upload a bundle for a new challenge (needs the ``add challenge`` permission)."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        if request.user.is_authenticated and not can_create_challenges(request.user):
            raise PermissionDenied("Creating challenges needs the 'add challenge' permission.")
        return super().dispatch(request, *args, **kwargs)

    def get(self, request: HttpRequest) -> HttpResponse:
        return _form_page(request, None)

    def post(self, request: HttpRequest) -> HttpResponse:
        return _upload(request, None)


class BundleUpdateView(LoginRequiredMixin, View):
    """Upload a new version of a challenge's bundle (its organizers only; 404 for others)."""

    def get(self, request: HttpRequest, slug: str) -> HttpResponse:
        return _form_page(request, _organized_challenge(request, slug))

    def post(self, request: HttpRequest, slug: str) -> HttpResponse:
        return _upload(request, _organized_challenge(request, slug))


class BundleUploadView(LoginRequiredMixin, View):
    """The dry run's report of an upload, its confirmation and the import's progress (its
    uploader and the organizers of its challenge; 404 for others)."""

    def get(self, request: HttpRequest, pk: int, *, error: str = "") -> HttpResponse:
        upload = bundle_upload_get_for_user(user=request.user, upload_id=pk)
        report = upload.report or {}
        summary = report.get("summary") or {}
        classes = report.get("classes") or []
        splits = [
            _split_row(name, data, classes)
            for name, data in sorted((summary.get("splits") or {}).items(), reverse=True)
        ]
        return render(
            request,
            "challenges/bundles/upload_detail.html",
            {
                "upload": upload,
                "report": report,
                "problems": report.get("problems") or [],
                "splits": splits,
                "labels": summary.get("labels") or [],
                "classes": classes,
                "phases": [
                    {
                        **ph,
                        "opens": _when(ph.get("opens_at")),
                        "closes": _when(ph.get("closes_at")),
                    }
                    for ph in report.get("phases") or []
                ],
                "is_uploader": upload.uploaded_by_id == request.user.pk,
                "importing": upload.state == BundleUploadState.IMPORTING,
                "error": error,
                "status_url": reverse("challenges:api-bundle", args=[upload.pk]),
            },
            status=409 if error else 200,
        )

    def post(self, request: HttpRequest, pk: int) -> HttpResponse:
        upload = bundle_upload_get_for_user(user=request.user, upload_id=pk)
        try:
            bundle_upload_confirm(upload=upload, user=request.user)
        except (BundleUploadRefused, BundleUploadInvalid) as exc:
            return self.get(request, pk, error=f"{str(exc).capitalize()}.")
        return HttpResponseRedirect(reverse("challenges:bundle-upload", args=[pk]))
