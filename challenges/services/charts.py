"""Small charts drawn on the server as inline SVG: no JavaScript chart library, nothing loaded
from another address, readable without scripts and by screen readers (a title and a
description name what is drawn; every bar and point has a tooltip with its numbers).

The submission page draws histograms of per-case values; the leaderboard draws the leaders'
scores over time (step lines), each entry's 95 % rank interval and box plots of the top
entries' per-case values. The leaderboard's charts scale to the width of their box (a
``viewBox`` and ``width="100%"``), so they fit a 390 px phone without scrolling sideways."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

__all__ = [
    "BEST_COLOUR",
    "LINE_COLOURS",
    "BoxStats",
    "RankInterval",
    "StepSeries",
    "box_plots_svg",
    "box_stats",
    "histogram_bins",
    "histogram_svg",
    "rank_intervals_svg",
    "steps_over_time_svg",
]

WIDTH = 320
HEIGHT = 140
MARGIN_LEFT = 34
MARGIN_BOTTOM = 22
MARGIN_TOP = 8
MARGIN_RIGHT = 8


def histogram_bins(
    values: Sequence[float | None], *, bins: int = 20, unit_interval: bool = False
) -> tuple[float, float, list[int]]:
    """Equal-width bins over the finite ``values``: ``(low, high, counts)``. With
    ``unit_interval`` and every value within [0, 1], the bins span [0, 1] (fractions such as
    dice read against their whole range). The last bin includes its upper edge."""
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return 0.0, 0.0, []
    low, high = min(finite), max(finite)
    if unit_interval and low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    if high == low:
        return low, high, [len(finite)]
    counts = [0] * bins
    width = (high - low) / bins
    for v in finite:
        counts[min(int((v - low) / width), bins - 1)] += 1
    return low, high, counts


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def histogram_svg(
    values: Sequence[float | None],
    *,
    metric: str,
    unit: str = "",
    bins: int = 20,
    element_id: str = "",
) -> SafeString:
    """An inline SVG histogram of per-case ``values`` of ``metric``; values that are None
    (undefined for a case) are counted in the description, not drawn."""
    low, high, counts = histogram_bins(values, bins=bins, unit_interval=not unit)
    n = sum(counts)
    n_undefined = len(values) - n
    label = f"{metric} ({unit})" if unit else metric
    title = f"Distribution of {label} over {n} case{'s' if n != 1 else ''}"
    desc = (
        f"Histogram of {n} per-case values from {_fmt(low)} to {_fmt(high)}"
        if counts
        else "No per-case values to draw"
    )
    if n_undefined:
        desc += f"; {n_undefined} case{'s' if n_undefined != 1 else ''} without a value"
    ident = escape(element_id or f"hist-{metric}".replace("/", "-"))
    plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    base = MARGIN_TOP + plot_h
    parts = [
        f'<svg class="histogram" id="{ident}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-labelledby="{ident}-title {ident}-desc">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
        f'<line x1="{MARGIN_LEFT}" y1="{base}" x2="{WIDTH - MARGIN_RIGHT}" y2="{base}" '
        'stroke="#5a6473"/>',
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{base}" '
        'stroke="#5a6473"/>',
    ]
    if counts:
        peak = max(counts)
        bar_w = plot_w / len(counts)
        edge_w = (high - low) / len(counts)
        for i, count in enumerate(counts):
            if not count:
                continue
            h = plot_h * count / peak
            x = MARGIN_LEFT + i * bar_w
            start, end = low + i * edge_w, low + (i + 1) * edge_w
            span = _fmt(start) if high == low else f"{_fmt(start)} to {_fmt(end)}"
            tip = f"{span}: {count} case{'s' if count != 1 else ''}"
            parts.append(
                f'<rect class="bar" x="{x + 0.5:.1f}" y="{base - h:.1f}" '
                f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="#2f5d8a">'
                f"<title>{escape(tip)}</title></rect>"
            )
        text = 'font-size="10" fill="#5a6473"'
        parts += [
            f'<text x="{MARGIN_LEFT - 4}" y="{MARGIN_TOP + 8}" text-anchor="end" {text}>'
            f"{peak}</text>",
            f'<text x="{MARGIN_LEFT - 4}" y="{base}" text-anchor="end" {text}>0</text>',
            f'<text x="{MARGIN_LEFT}" y="{HEIGHT - 6}" {text}>{escape(_fmt(low))}</text>',
            f'<text x="{WIDTH - MARGIN_RIGHT}" y="{HEIGHT - 6}" text-anchor="end" {text}>'
            f"{escape(_fmt(high))}</text>",
            f'<text x="{MARGIN_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle" '
            f"{text}>{escape(label)}</text>",
        ]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 -- every interpolated text is escaped above


# --- leaderboard charts -------------------------------------------------------------------------

#: Line colours of the leaders, in rank order: dark enough for 4.5:1 against white, and told
#: apart by the legend's names too, not by colour alone.
LINE_COLOURS = ("#1f5a96", "#b3401a", "#1b7a4c", "#7b3f99", "#7a5c00")
#: The best score of each snapshot: a dashed near-black line with a dot per snapshot.
BEST_COLOUR = "#1d2430"
AXIS = "#5a6473"
GRID = "#e3e7ee"
TEXT = 'font-size="12" fill="#5a6473"'
#: Width of the leaderboard charts' coordinate system; they are drawn at the width of their box.
WIDE = 360
LABEL_W = 118  # names to the left of the rank-interval and box-plot rows
NAME_CHARS = 16
SCALABLE = 'width="100%" style="display:block;max-width:34rem;height:auto"'


@dataclass(frozen=True)
class StepSeries:
    """One line of :func:`steps_over_time_svg`: a value per snapshot time (None where the
    entrant was not on the board)."""

    name: str
    values: Sequence[float | None]
    colour: str
    dashed: bool = False
    markers: bool = False


@dataclass(frozen=True)
class RankInterval:
    name: str
    rank: int
    rank_low: int | None
    rank_high: int | None
    is_baseline: bool = False


@dataclass(frozen=True)
class BoxStats:
    """The five-number summary of one entry's finite per-case values."""

    name: str
    n: int
    minimum: float
    q1: float
    median: float
    q3: float
    maximum: float


def box_stats(name: str, values: Sequence[float | None]) -> BoxStats | None:
    """Minimum, quartiles (inclusive method) and maximum of the finite ``values``; None when
    there is none."""
    finite = sorted(float(v) for v in values if v is not None and math.isfinite(v))
    if not finite:
        return None
    if len(finite) == 1:
        q1 = median = q3 = finite[0]
    else:
        q1, median, q3 = statistics.quantiles(finite, n=4, method="inclusive")
    return BoxStats(name, len(finite), finite[0], q1, median, q3, finite[-1])


def _nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """Round tick values covering [low, high] (1, 2 or 5 times a power of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    ticks = []
    i = first
    while i * step <= high + step * 1e-9:
        ticks.append(round(i * step, 12))
        i += 1
    return ticks


def _short(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[: NAME_CHARS - 1] + "…"


def _open_svg(ident: str, height: float, title: str, desc: str, css: str) -> list[str]:
    return [
        f'<svg class="{css}" id="{ident}" viewBox="0 0 {WIDE} {height:.0f}" {SCALABLE} '
        f'role="img" aria-labelledby="{ident}-title {ident}-desc">',
        f'<title id="{ident}-title">{escape(title)}</title>',
        f'<desc id="{ident}-desc">{escape(desc)}</desc>',
    ]


def _time_label(moment: datetime, span_s: float) -> str:
    return moment.strftime("%Y-%m-%d" if span_s >= 2 * 86400 else "%m-%d %H:%M")


def steps_over_time_svg(
    times: Sequence[datetime],
    series: Sequence[StepSeries],
    *,
    end: datetime,
    label: str,
    title: str,
    desc: str,
    element_id: str = "chart-over-time-svg",
) -> SafeString:
    """Step lines over time: each value holds from its snapshot's time until the next one (the
    last until ``end``). ``times`` are timezone-aware UTC datetimes in ascending order; the
    axis is labelled with UTC dates. Series with ``markers`` get a dot per value."""
    ident = escape(element_id)
    height, left, right, top, bottom = 220, 44, 10, 22, 24
    plot_w, plot_h = WIDE - left - right, height - top - bottom
    base = top + plot_h
    parts = _open_svg(ident, height, title, desc, "steps")
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    if not times or not values:
        parts.append("</svg>")
        return mark_safe("".join(parts))  # noqa: S308 -- title and desc are escaped
    t0 = times[0].timestamp()
    span = max(end.timestamp() - t0, 1e-3)  # one snapshot just now: its step spans the plot
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or max(abs(high) * 0.05, 0.01)
    low, high = low - pad, high + pad

    def x(moment: datetime) -> float:
        return left + plot_w * (moment.timestamp() - t0) / span

    def y(value: float) -> float:
        return base - plot_h * (value - low) / (high - low)

    parts.append(f'<text x="4" y="12" {TEXT}>{escape(label)}</text>')
    for tick in _nice_ticks(low, high):
        if low <= tick <= high:
            parts.append(
                f'<line x1="{left}" y1="{y(tick):.1f}" x2="{WIDE - right}" y2="{y(tick):.1f}" '
                f'stroke="{GRID}"/><text x="{left - 4}" y="{y(tick) + 4:.1f}" '
                f'text-anchor="end" {TEXT}>{escape(_fmt(tick))}</text>'
            )
    parts += [
        f'<line x1="{left}" y1="{base}" x2="{WIDE - right}" y2="{base}" stroke="{AXIS}"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{base}" stroke="{AXIS}"/>',
        f'<text x="{left}" y="{height - 6}" {TEXT}>{escape(_time_label(times[0], span))}</text>',
        f'<text x="{WIDE - right}" y="{height - 6}" text-anchor="end" {TEXT}>'
        f"{escape(_time_label(end, span))} UTC</text>",
    ]
    for s in series:
        path: list[str] = []
        pen = False
        for moment, value in zip(times, s.values, strict=True):
            if value is None or not math.isfinite(value):
                if pen:
                    path.append(f"H{x(moment):.1f}")
                pen = False
                continue
            path.append(
                f"H{x(moment):.1f}V{y(value):.1f}" if pen else f"M{x(moment):.1f} {y(value):.1f}"
            )
            pen = True
        if pen:
            path.append(f"H{x(end):.1f}")
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        parts.append(
            f'<path class="line" d="{"".join(path)}" fill="none" stroke="{s.colour}" '
            f'stroke-width="2"{dash}><title>{escape(s.name)}</title></path>'
        )
        if s.markers:
            for moment, value in zip(times, s.values, strict=True):
                if value is None or not math.isfinite(value):
                    continue
                tip = f"{moment:%Y-%m-%d %H:%M} UTC: {s.name} {_fmt4(value)}"
                parts.append(
                    f'<circle class="point" cx="{x(moment):.1f}" cy="{y(value):.1f}" r="2.5" '
                    f'fill="{s.colour}" data-value="{value!r}"><title>{escape(tip)}</title>'
                    "</circle>"
                )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 -- every interpolated text is escaped above


def _fmt4(value: float) -> str:
    return f"{value:.4f}"


def rank_intervals_svg(
    rows: Sequence[RankInterval], *, title: str, desc: str, element_id: str = "chart-ranks-svg"
) -> SafeString:
    """One row per entry, in the given (rank) order: a bar over its 95 % rank interval and a
    dot at its rank; rank 1 is on the left."""
    ident = escape(element_id)
    row_h, top, bottom, right = 16, 8, 26, 10
    height = top + row_h * max(len(rows), 1) + bottom
    plot_w = WIDE - LABEL_W - right
    base = top + row_h * len(rows)
    parts = _open_svg(ident, height, title, desc, "rank-intervals")
    worst = max([1, *(r.rank for r in rows), *(r.rank_high or 0 for r in rows)])

    def x(rank: float) -> float:
        return LABEL_W + plot_w * (rank - 0.5) / worst

    for tick in [1, *(t for t in _nice_ticks(1, worst) if t > 1 and t == int(t))]:
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{base}" '
            f'stroke="{GRID}"/><text x="{x(tick):.1f}" y="{base + 13}" text-anchor="middle" '
            f"{TEXT}>{int(tick)}</text>"
        )
    parts += [
        f'<line x1="{LABEL_W}" y1="{base}" x2="{WIDE - right}" y2="{base}" stroke="{AXIS}"/>',
        f'<text x="{LABEL_W + plot_w / 2:.1f}" y="{height - 3}" text-anchor="middle" {TEXT}>'
        "rank (1 = best)</text>",
    ]
    for i, row in enumerate(rows):
        mid = top + row_h * i + row_h / 2
        name = row.name + (" (baseline)" if row.is_baseline else "")
        parts.append(
            f'<text x="{LABEL_W - 6}" y="{mid + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#1d2430">{escape(_short(row.name))}<title>{escape(name)}</title></text>'
        )
        span = "no rank interval"
        if row.rank_low is not None and row.rank_high is not None:
            span = f"95 % rank interval {row.rank_low} to {row.rank_high}"
            x1, x2 = x(row.rank_low - 0.3), x(row.rank_high + 0.3)
            parts.append(
                f'<rect class="range" x="{x1:.1f}" y="{mid - 4:.1f}" width="{x2 - x1:.1f}" '
                f'height="8" rx="3" fill="#8fb0d3" stroke="#2f5d8a" '
                f'data-low="{row.rank_low}" data-high="{row.rank_high}">'
                f"<title>{escape(f'{name}: {span}')}</title></rect>"
            )
        parts.append(
            f'<circle class="rank" cx="{x(row.rank):.1f}" cy="{mid:.1f}" r="3.5" '
            f'fill="{BEST_COLOUR}" data-rank="{row.rank}">'
            f"<title>{escape(f'{name}: rank {row.rank}, {span}')}</title></circle>"
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 -- every interpolated text is escaped above


def box_plots_svg(
    boxes: Sequence[BoxStats],
    *,
    label: str,
    unit_interval: bool,
    title: str,
    desc: str,
    element_id: str = "chart-cases-svg",
) -> SafeString:
    """One horizontal box plot per entry: whiskers from the lowest to the highest value, the
    box from the first to the third quartile, a bar at the median. With ``unit_interval`` and
    every value within [0, 1], the axis spans [0, 1]."""
    ident = escape(element_id)
    row_h, top, bottom, right = 24, 8, 30, 12
    height = top + row_h * max(len(boxes), 1) + bottom
    plot_w = WIDE - LABEL_W - right
    base = top + row_h * len(boxes)
    parts = _open_svg(ident, height, title, desc, "box-plots")
    if not boxes:
        parts.append("</svg>")
        return mark_safe("".join(parts))  # noqa: S308 -- title and desc are escaped
    low = min(b.minimum for b in boxes)
    high = max(b.maximum for b in boxes)
    if unit_interval and low >= 0.0 and high <= 1.0:
        low, high = 0.0, 1.0
    elif high == low:
        low, high = low - 0.5, high + 0.5

    def x(value: float) -> float:
        return LABEL_W + plot_w * (value - low) / (high - low)

    for tick in _nice_ticks(low, high):
        if low <= tick <= high:
            parts.append(
                f'<line x1="{x(tick):.1f}" y1="{top}" x2="{x(tick):.1f}" y2="{base}" '
                f'stroke="{GRID}"/><text x="{x(tick):.1f}" y="{base + 13}" '
                f'text-anchor="middle" {TEXT}>{escape(_fmt(tick))}</text>'
            )
    parts += [
        f'<line x1="{LABEL_W}" y1="{base}" x2="{WIDE - right}" y2="{base}" stroke="{AXIS}"/>',
        f'<text x="{LABEL_W + plot_w / 2:.1f}" y="{height - 3}" text-anchor="middle" {TEXT}>'
        f"{escape(label)}</text>",
    ]
    for i, (b, colour) in enumerate(zip(boxes, LINE_COLOURS * len(boxes), strict=False)):
        mid = top + row_h * i + row_h / 2
        tip = (
            f"{b.name}: {b.n} cases, lowest {_fmt4(b.minimum)}, quartiles {_fmt4(b.q1)}, "
            f"{_fmt4(b.median)} (median), {_fmt4(b.q3)}, highest {_fmt4(b.maximum)}"
        )
        parts += [
            f'<g class="box" data-median="{b.median!r}" data-n="{b.n}">'
            f"<title>{escape(tip)}</title>",
            f'<text x="{LABEL_W - 6}" y="{mid + 4:.1f}" text-anchor="end" font-size="12" '
            f'fill="#1d2430">{escape(_short(b.name))}</text>',
            f'<line x1="{x(b.minimum):.1f}" y1="{mid:.1f}" x2="{x(b.maximum):.1f}" '
            f'y2="{mid:.1f}" stroke="{colour}" stroke-width="1.5"/>',
            f'<line x1="{x(b.minimum):.1f}" y1="{mid - 5:.1f}" x2="{x(b.minimum):.1f}" '
            f'y2="{mid + 5:.1f}" stroke="{colour}" stroke-width="1.5"/>',
            f'<line x1="{x(b.maximum):.1f}" y1="{mid - 5:.1f}" x2="{x(b.maximum):.1f}" '
            f'y2="{mid + 5:.1f}" stroke="{colour}" stroke-width="1.5"/>',
            f'<rect x="{x(b.q1):.1f}" y="{mid - 8:.1f}" '
            f'width="{max(x(b.q3) - x(b.q1), 1.5):.1f}" height="16" fill="white" '
            f'stroke="{colour}" stroke-width="1.5"/>',
            f'<line x1="{x(b.median):.1f}" y1="{mid - 8:.1f}" x2="{x(b.median):.1f}" '
            f'y2="{mid + 8:.1f}" stroke="{colour}" stroke-width="3"/>',
            "</g>",
        ]
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 -- every interpolated text is escaped above
