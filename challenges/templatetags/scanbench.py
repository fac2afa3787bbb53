from typing import Any

from django import template

register = template.Library()


@register.filter
def get_item(mapping: dict[str, Any] | None, key: str) -> Any:
    return (mapping or {}).get(key)


@register.filter
def score(value: Any) -> str:
    """A score for display: 4 significant decimals; stored values keep full precision."""
    if value is None:
        return "—"
    return f"{value:.4f}"


@register.filter
def score_to(value: Any, precision: int) -> str:
    """A score with ``precision`` decimals (a bundle's leaderboard column)."""
    if value is None:
        return "—"
    return f"{value:.{int(precision)}f}"


@register.filter
def with_unit(metric: str, task: str) -> str:
    """A metric name for a column header, with its unit from the evaluator's registry
    (``hd95 (mm)``); unitless metrics and names the registry does not know stay as they are."""
    from evaluator.metrics.registry import metric_info

    try:
        unit = metric_info(task, metric).unit  # type: ignore[arg-type]
    except KeyError:
        return metric
    return f"{metric} ({unit})" if unit else metric
