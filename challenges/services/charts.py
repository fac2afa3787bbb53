"""Small charts drawn on the server as inline SVG: no JavaScript chart library, nothing loaded
from another address, readable without scripts and by screen readers (a title and a
description name what is drawn; every bar has a tooltip with its range and count)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

__all__ = ["histogram_bins", "histogram_svg"]

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
