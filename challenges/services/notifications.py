"""Telling participants that an evaluation ended: in the page (its state), and by e-mail."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail

from challenges.models import Evaluation

logger = logging.getLogger(__name__)


def notify_evaluation_finished(*, evaluation_id: int) -> None:
    """E-mail the participant, when they have an address and e-mail is configured. A mail
    failure is logged and never fails the evaluation."""
    if not settings.SCANBENCH_NOTIFY_BY_EMAIL:
        return
    evaluation = Evaluation.objects.select_related(
        "submission__participant", "submission__phase__challenge"
    ).get(pk=evaluation_id)
    user = evaluation.submission.participant
    if not user.email:
        return
    phase = evaluation.submission.phase
    subject = (
        f"[Scanbench] {phase.challenge.title} / {phase.title}: submission "
        f"#{evaluation.submission_id} {evaluation.get_state_display().lower()}"
    )
    try:
        send_mail(
            subject,
            f"{evaluation.message}\n\n{settings.SCANBENCH_SITE_URL}{phase.get_absolute_url()}",
            None,
            [user.email],
        )
    except Exception:
        logger.exception("could not e-mail %s about %s", user.email, evaluation)
