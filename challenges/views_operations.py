"""The staff page of queues and workers (``/console/operations/``; docs/operations.md,
"Queues"): Flower's view of the pipeline, inside the site. Interface only: the reads are in
:mod:`challenges.selectors_operations`."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.generic import TemplateView

from challenges.selectors_operations import (
    WORKER_STALE_AFTER,
    evaluations_failed_recently,
    evaluations_running,
    queue_lengths,
    workers_seen,
)


class OperationsView(LoginRequiredMixin, TemplateView):
    """Queue lengths, workers seen recently, evaluations running now and the last failures.
    Anonymous visitors go to the log-in page; anyone who is not staff gets 404, like the
    consoles of challenges they do not organize."""

    template_name = "challenges/console/operations.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated and not request.user.is_staff:
            raise Http404("Staff only")
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "now": timezone.now(),
            "queues": queue_lengths(),
            "workers": workers_seen(),
            "stale_after_min": int(WORKER_STALE_AFTER.total_seconds() // 60),
            "running": evaluations_running(),
            "failures": evaluations_failed_recently(),
        }
