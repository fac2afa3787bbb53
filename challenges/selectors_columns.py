"""The columns of a phase's leaderboard: the built-in metrics (names with their units, four
decimals), or, for a phase scored by the organizers' program, the bundle's own columns (title,
precision, and no hidden column)."""

from __future__ import annotations

from dataclasses import dataclass

from challenges.models import Phase
from challenges.templatetags.scanbench import with_unit

DEFAULT_PRECISION = 4


@dataclass(frozen=True)
class BoardColumn:
    key: str
    title: str
    precision: int = DEFAULT_PRECISION


def _declared(phase: Phase) -> list[BoardColumn]:
    return [
        BoardColumn(
            key=str(c["key"]),
            title=str(c.get("title") or c["key"]),
            precision=max(0, min(12, int(c.get("precision", DEFAULT_PRECISION)))),
        )
        for c in phase.leaderboard_columns
        if not c.get("hidden")
    ]


def board_primary(phase: Phase) -> BoardColumn:
    """The column the board ranks by."""
    for c in phase.leaderboard_columns or []:
        if c.get("key") == phase.primary_metric:
            return BoardColumn(
                key=phase.primary_metric,
                title=str(c.get("title") or phase.primary_metric),
                precision=max(0, min(12, int(c.get("precision", DEFAULT_PRECISION)))),
            )
    task = str(phase.challenge.task_type)
    return BoardColumn(key=phase.primary_metric, title=with_unit(phase.primary_metric, task))


def board_hidden_keys(phase: Phase) -> frozenset[str]:
    """The keys of a bundle's hidden columns: left out of every board (page, CSV, API)."""
    return frozenset(str(c["key"]) for c in phase.leaderboard_columns or [] if c.get("hidden"))


def board_columns(phase: Phase) -> list[BoardColumn]:
    """The other columns, in board order; a hidden column of a bundle is never among them."""
    if phase.leaderboard_columns:
        return [c for c in _declared(phase) if c.key != phase.primary_metric]
    task = str(phase.challenge.task_type)
    return [
        BoardColumn(key=m, title=with_unit(m, task))
        for m in phase.metrics
        if m != phase.primary_metric
    ]
