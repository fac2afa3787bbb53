"""Template tags for the challenge pages: the tab bar (``{% challenge_tabs challenge
phase=phase current="submit" %}``) and a phase's status badge with its UTC dates and the time
left (``{% phase_status phase %}``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from challenges.models import Challenge, Phase
from challenges.selectors_tabs import challenge_tabs as tabs_for
from challenges.selectors_tabs import phase_status as status_of
from challenges.selectors_tabs import utc_text

register = template.Library()


@register.inclusion_tag("challenges/_challenge_tabs.html")
def challenge_tabs(
    challenge: Challenge, *, phase: Phase | None = None, current: str = "overview"
) -> dict[str, Any]:
    """The tab bar; ``phase`` is the page's phase (leaderboard, submit), else the challenge's
    current phase is linked."""
    return {"tabs": tabs_for(challenge=challenge, phase=phase or None, current=current)}


@register.simple_tag
def phase_status(phase: Phase) -> SafeString:
    """The phase's state in colour and words, its dates in UTC and the time left."""
    status = status_of(phase=phase)
    closes = format_html(" · closes {}", status.closes) if status.closes else ""
    return format_html(
        '<p class="phase-status" data-state="{}"><span class="status-badge status-{}">{}</span>'
        ' <span>opens {}{}</span> · <strong class="time-left">{}</strong></p>',
        status.state,
        status.state,
        status.label,
        status.opens,
        closes,
        status.time_left,
    )


@register.filter
def utc(value: datetime | None) -> str:
    """A moment as ``2026-12-01 00:00 UTC``; empty for None."""
    return utc_text(value) if value else ""
