"""A submission's own page. Interface only: one selector, then render."""

from __future__ import annotations

from typing import Any

from django.views.generic import TemplateView

from challenges.selectors_submissions import submission_page_for_user
from challenges.services.charts import histogram_svg


class SubmissionDetailView(TemplateView):
    """``/submissions/<id>/``: the latest attempt's state, timings, message and metrics, for the
    submission's participant, their team and the challenge's organizers; 404 for everyone else
    (anonymous visitors included, so that the page does not tell that the submission exists)."""

    template_name = "challenges/submission_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        page = submission_page_for_user(user=self.request.user, submission_id=kwargs["pk"])
        histograms = []
        if page.cases is not None:
            histograms = [
                histogram_svg(page.cases.values[m], metric=m, unit=page.cases.units[m])
                for m in page.cases.metrics
            ]
        phase = page.submission.phase
        return {
            **super().get_context_data(**kwargs),
            "page": page,
            "submission": page.submission,
            "evaluation": page.evaluation,
            "phase": phase,
            "challenge": phase.challenge,
            "parts": [p for p in (page.public, page.private) if p is not None],
            "histograms": histograms,
        }
