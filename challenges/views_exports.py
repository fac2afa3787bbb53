"""Leaderboards as files: the CSV download of a phase's board (same permissions as the page)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from challenges.selectors import LeaderboardHidden, leaderboard_for_phase, phase_get_by_slugs
from challenges.selectors_columns import board_columns


class _Echo:
    """A file-like object whose ``write`` returns the line, for streaming csv.writer output."""

    def write(self, value: str) -> str:
        return value


def _rows(phase: Any, entries: Any) -> Iterator[str]:
    # the board's own columns: a bundle's hidden columns are not in the CSV either
    metrics = [c.key for c in board_columns(phase)]
    writer = csv.writer(_Echo())
    yield writer.writerow(
        [
            "rank",
            "entrant",
            "baseline",
            phase.primary_metric,
            f"{phase.primary_metric}_ci_low",
            f"{phase.primary_metric}_ci_high",
            "rank_low",
            "rank_high",
            "tier",
            *metrics,
            "submissions",
            "worst_filled_cases",
            "submitted_at",
        ]
    )
    for row in entries.iterator(chunk_size=500):
        yield writer.writerow(
            [
                row.rank,
                row.display_name,
                "yes" if row.is_baseline else "",
                _num(row.score),
                _num(row.score_ci_low),
                _num(row.score_ci_high),
                row.rank_low or "",
                row.rank_high or "",
                row.tier or "",
                *(_num(row.aggregates.get(m)) for m in metrics),
                row.n_submissions,
                row.n_worst_filled,
                row.submitted_at.isoformat(timespec="seconds"),
            ]
        )


def _num(value: object) -> str:
    """Full precision (repr of the float) or empty for a missing or undefined value."""
    return "" if value is None else repr(float(value))  # type: ignore[arg-type]


def leaderboard_csv(
    request: HttpRequest, slug: str, phase_slug: str
) -> HttpResponse | StreamingHttpResponse:
    """``?part=public|private``: the board as CSV, streamed; 403 while the part is hidden."""
    phase = phase_get_by_slugs(slug=slug, phase_slug=phase_slug)
    part = request.GET.get("part", "public")
    if part not in ("public", "private"):
        return HttpResponse("part must be public or private", status=400, content_type="text/plain")
    try:
        entries = leaderboard_for_phase(phase=phase, part=part, user=request.user)
    except LeaderboardHidden as exc:
        return HttpResponse(str(exc), status=403, content_type="text/plain")
    response = StreamingHttpResponse(_rows(phase, entries), content_type="text/csv")
    name = f"{phase.challenge.slug}-{phase.slug}-{part}-leaderboard.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
