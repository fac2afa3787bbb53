"""The leaderboard's charts: the leaders' scores over time, each entry's rank interval and
the top entries' per-case values. Read-only and bounded: one query for the top entries, one
for the latest snapshots and, where per-case values may be shown, one for the top entries'
results. The SVG is drawn by :mod:`challenges.services.charts`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.db.models import QuerySet
from django.utils import timezone
from django.utils.safestring import SafeString

from challenges.models import LeaderboardEntry, LeaderboardSnapshot, Phase, Result
from challenges.models.phase import Direction
from challenges.services.charts import (
    BEST_COLOUR,
    LINE_COLOURS,
    BoxStats,
    RankInterval,
    StepSeries,
    box_plots_svg,
    box_stats,
    rank_intervals_svg,
    steps_over_time_svg,
)
from evaluator.case_table import CaseTable

#: The history drawn: the latest snapshots only, so that a busy board stays fast to draw.
SNAPSHOT_LIMIT = 500
TOP_LINES = 5
TOP_RANKS = 30
TOP_BOXES = 5


@dataclass(frozen=True)
class LegendItem:
    name: str
    colour: str
    dashed: bool = False


@dataclass(frozen=True)
class Chart:
    """One chart of the leaderboard page: its SVG and, as the text alternative, the numbers it
    draws as a table."""

    slug: str
    title: str
    caption: str
    svg: SafeString
    columns: list[str]
    rows: list[list[str]]
    legend: list[LegendItem] = field(default_factory=list)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _metric_label(phase: Phase) -> tuple[str, str]:
    """The primary metric with its unit (``hd95 (mm)``), and the unit alone."""
    from evaluator.metrics.registry import metric_info

    try:
        unit = metric_info(phase.challenge.task_type, phase.primary_metric).unit  # type: ignore[arg-type]
    except KeyError:
        unit = ""
    metric = phase.primary_metric
    return (f"{metric} ({unit})" if unit else metric), unit


def _over_time(
    phase: Phase, part: str, top: list[LeaderboardEntry], label: str, now: datetime
) -> Chart | None:
    snapshots = list(
        LeaderboardSnapshot.objects.filter(phase=phase, part=part)
        .order_by("-created_at", "-pk")
        .values_list("created_at", "rows")[:SNAPSHOT_LIMIT]
    )[::-1]
    if not snapshots:
        return None
    times = [created.astimezone(UTC) for created, _rows in snapshots]
    pick = max if phase.primary_direction == Direction.HIGHER else min
    best: list[float | None] = []
    by_entrant: list[dict[str, float | None]] = []
    for _created, rows in snapshots:
        scores = {r.get("entrant"): r.get("score") for r in rows or []}
        by_entrant.append(scores)
        finite = [s for s in scores.values() if isinstance(s, int | float)]
        best.append(pick(finite) if finite else None)
    leaders = top[:TOP_LINES]
    series = [
        StepSeries(
            name=e.display_name,
            values=[scores.get(e.entrant) for scores in by_entrant],
            colour=colour,
        )
        for e, colour in zip(leaders, LINE_COLOURS, strict=False)
    ]
    series.append(StepSeries("best score", best, BEST_COLOUR, dashed=True, markers=True))
    end = max(now.astimezone(UTC), times[-1])
    n = len(snapshots)
    title = f"{label} of the current top {len(leaders)} and the best score over time"
    desc = (
        f"Step lines over {n} snapshot{'s' if n != 1 else ''} of the board from "
        f"{times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M} UTC"
    )
    caption = (
        f"How the score ({label}) of today's top {len(leaders)} and the best score on the board "
        f"changed, one step per change of the board ({n} snapshot{'s' if n != 1 else ''}"
        f"{', the latest ' + str(SNAPSHOT_LIMIT) if n == SNAPSHOT_LIMIT else ''}). "
        "Times are UTC. The dashed line with dots is the best score."
    )
    svg = steps_over_time_svg(times, series, end=end, label=label, title=title, desc=desc)
    return Chart(
        slug="over-time",
        title="Leaders over time",
        caption=caption,
        svg=svg,
        columns=["time (UTC)", "best score", *(e.display_name for e in leaders)],
        rows=[
            [f"{t:%Y-%m-%d %H:%M}", _num(b), *(_num(s.values[i]) for s in series[:-1])]
            for i, (t, b) in enumerate(zip(times, best, strict=True))
        ],
        legend=[LegendItem(s.name, s.colour, s.dashed) for s in series],
    )


def _rank_intervals(top: list[LeaderboardEntry]) -> Chart | None:
    if not any(e.rank_low is not None for e in top):
        return None
    rows = [
        RankInterval(e.display_name, e.rank, e.rank_low, e.rank_high, e.is_baseline) for e in top
    ]
    n = len(rows)
    title = f"Rank and 95 % rank interval of the top {n} entries"
    desc = "One row per entry in rank order: a dot at its rank, a bar over its 95 % rank interval"
    caption = (
        f"Each entry's rank (dot) and the range of ranks it takes in 95 % of resampled test "
        f"sets (bar), for the top {n}. Entries whose bars overlap are not clearly apart."
    )
    return Chart(
        slug="ranks",
        title="Rank intervals",
        caption=caption,
        svg=rank_intervals_svg(rows, title=title, desc=desc),
        columns=["entrant", "rank", "95 % rank interval"],
        rows=[
            [
                r.name + (" (baseline)" if r.is_baseline else ""),
                str(r.rank),
                f"{r.rank_low} to {r.rank_high}" if r.rank_low is not None else "—",
            ]
            for r in rows
        ],
    )


def _case_distributions(
    phase: Phase, part: str, top: list[LeaderboardEntry], label: str, unit: str
) -> Chart | None:
    leaders = top[:TOP_BOXES]
    metric = phase.primary_metric
    results = dict(
        Result.objects.filter(
            evaluation_id__in=[e.evaluation_id for e in leaders], part=part
        ).values_list("evaluation_id", "case_values")
    )
    boxes: list[BoxStats] = []
    for entry in leaders:
        raw = results.get(entry.evaluation_id)
        values = list(CaseTable.from_bytes(raw).column(metric).values()) if raw else []
        stats = box_stats(entry.display_name, values)
        if stats is not None:
            boxes.append(stats)
    if not boxes:
        return None
    title = f"Per-case {label} of the top {len(boxes)} entries"
    desc = "Box plots: whiskers from the lowest to the highest value, box from quartile to quartile"
    caption = (
        f"How {label} spreads over the test cases of this part for the top {len(boxes)} "
        "entries: the box holds the middle half of the cases, the thick bar is the median, "
        "the whiskers reach the lowest and the highest value."
    )
    return Chart(
        slug="cases",
        title="Per-case scores of the top entries",
        caption=caption,
        svg=box_plots_svg(boxes, label=label, unit_interval=not unit, title=title, desc=desc),
        columns=[
            "entrant",
            "cases",
            "lowest",
            "lower quartile",
            "median",
            "upper quartile",
            "highest",
        ],
        rows=[
            [b.name, str(b.n), *(_num(v) for v in (b.minimum, b.q1, b.median, b.q3, b.maximum))]
            for b in boxes
        ],
        legend=[],
    )


def leaderboard_charts(
    *,
    phase: Phase,
    part: str,
    entries: QuerySet[LeaderboardEntry],
    now: datetime | None = None,
) -> list[Chart]:
    """The charts below a leaderboard's table, those that have something to draw.

    ``entries`` must come from :func:`challenges.selectors.leaderboard_for_phase`, which has
    checked that this part may be shown (it raises for a hidden private part); call this only
    after it. Per-case distributions are drawn only where the phase shows per-case results
    (:meth:`Phase.case_results_visible`: off for classification, where they could reveal the
    hidden labels)."""
    top = list(
        entries.only(
            "entrant", "display_name", "rank", "score", "rank_low", "rank_high",
            "is_baseline", "evaluation_id",
        )[:TOP_RANKS]
    )  # fmt: skip
    if not top:
        return []
    label, unit = _metric_label(phase)
    charts = [
        _over_time(phase, part, top, label, now or timezone.now()),
        _rank_intervals(top),
    ]
    if phase.case_results_visible():
        charts.append(_case_distributions(phase, part, top, label, unit))
    return [c for c in charts if c is not None]
