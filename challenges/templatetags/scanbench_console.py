"""Tags for what the organizers decided, shown on the participants' pages (docs/organizers.md):
the early-view banner of the private leaderboard, hidden submissions, disqualifications."""

from __future__ import annotations

from typing import Any

from django import template

from challenges.models import EntryExclusion, Phase
from challenges.selectors import private_part_revealed, user_is_organizer
from challenges.selectors_data import membership_waiting_message
from challenges.selectors_submissions import (
    disqualifications_for_user,
    hidden_reasons_for_user,
)

register = template.Library()


@register.simple_tag
def private_revealed(phase: Phase) -> bool:
    """Whether everyone sees the phase's private part (not only its organizers)."""
    return private_part_revealed(phase=phase)


@register.simple_tag
def hidden_reasons(phase: Phase, user: Any) -> dict[int, str]:
    """``{submission id: reason}`` of the user's hidden submissions to the phase."""
    return hidden_reasons_for_user(user=user, phase=phase)


@register.simple_tag
def disqualifications(phase: Phase, user: Any) -> list[EntryExclusion]:
    return disqualifications_for_user(user=user, phase=phase)


@register.simple_tag
def waiting_for_approval(phase: Phase, user: Any) -> str:
    """What the submit page tells a member the organizers have not let in (yet); empty
    otherwise (organizers always may submit)."""
    if not user.is_authenticated or user_is_organizer(user=user, challenge=phase.challenge):
        return ""
    return membership_waiting_message(user=user, challenge=phase.challenge)
