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
