"""Reads for the challenge pages' tab bar and for a phase's status (upcoming, open, closed)
with its dates in UTC and the time left. Used by the ``scanbench_tabs`` template tags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.urls import reverse
from django.utils import timezone

from challenges.models import Challenge, Phase

TAB_NAMES = ("overview", "data", "leaderboard", "submit", "submissions", "team")


@dataclass(frozen=True)
class Tab:
    name: str
    label: str
    url: str
    current: bool


@dataclass(frozen=True)
class PhaseStatus:
    state: str  # "upcoming", "open" or "closed"
    label: str  # the state in words, for the badge
    opens: str  # "2026-12-01 00:00 UTC"
    closes: str  # "" when the phase never closes
    time_left: str  # "opens in 2 days 3 hours", "closes in 5 hours 10 minutes", "closed on …"


def utc_text(value: datetime) -> str:
    """A moment as the pages show it: ``2026-12-01 00:00 UTC``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def duration_words(delta: timedelta) -> str:
    """A time span in the two largest units that matter: ``3 days 4 hours``,
    ``5 hours 10 minutes``, ``12 minutes``; under a minute, ``less than a minute``."""
    minutes = int(delta.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return _plural(days, "day") + (f" {_plural(hours, 'hour')}" if hours else "")
    if hours:
        return _plural(hours, "hour") + (f" {_plural(minutes, 'minute')}" if minutes else "")
    if minutes:
        return _plural(minutes, "minute")
    return "less than a minute"


def phase_status(*, phase: Phase, now: datetime | None = None) -> PhaseStatus:
    """Whether the phase is upcoming, open or closed at ``now``, with its dates and the time
    until it opens or closes (the same rule as ``Phase.is_open``, which takes submissions)."""
    now = now or timezone.now()
    opens = utc_text(phase.opens_at)
    closes = utc_text(phase.closes_at) if phase.closes_at else ""
    if phase.is_closed(now):
        assert phase.closes_at is not None
        return PhaseStatus("closed", "Closed", opens, closes, f"closed on {closes}")
    if not phase.is_open(now):
        left = f"opens in {duration_words(phase.opens_at - now)}"
        return PhaseStatus("upcoming", "Upcoming", opens, closes, left)
    if phase.closes_at is None:
        return PhaseStatus("open", "Open", opens, closes, "never closes")
    left = f"closes in {duration_words(phase.closes_at - now)}"
    return PhaseStatus("open", "Open", opens, closes, left)


def tab_phase_for(*, challenge: Challenge, now: datetime | None = None) -> Phase | None:
    """The phase the Leaderboard and Submit tabs link to when the page has none of its own:
    the first open phase, else the latest that has opened, else the first to open."""
    now = now or timezone.now()
    phases = sorted(challenge.phases.all(), key=lambda p: p.opens_at)
    open_phases = [p for p in phases if p.is_open(now)]
    if open_phases:
        return open_phases[0]
    started = [p for p in phases if p.opens_at <= now]
    if started:
        return started[-1]
    return phases[0] if phases else None


def challenge_tabs(*, challenge: Challenge, phase: Phase | None, current: str) -> list[Tab]:
    """The tab bar of a challenge's pages: Overview, Data and, when the challenge has a phase,
    that phase's Leaderboard, Submit and My submissions; then Team. ``current`` names the page's
    tab."""
    if current not in TAB_NAMES:
        raise ValueError(f"unknown tab {current!r}; one of {', '.join(TAB_NAMES)}")
    phase = phase or tab_phase_for(challenge=challenge)
    tabs = [
        ("overview", "Overview", challenge.get_absolute_url()),
        ("data", "Data", reverse("challenges:data", kwargs={"slug": challenge.slug})),
    ]
    if phase is not None:
        submit = reverse(
            "challenges:submit", kwargs={"slug": challenge.slug, "phase_slug": phase.slug}
        )
        tabs += [
            ("leaderboard", "Leaderboard", phase.get_absolute_url()),
            ("submit", "Submit", submit),
            ("submissions", "My submissions", f"{submit}#submissions"),
        ]
    tabs.append(("team", "Team", reverse("challenges:team", kwargs={"slug": challenge.slug})))
    return [Tab(name, label, url, name == current) for name, label, url in tabs]
