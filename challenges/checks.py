"""Configuration mistakes caught at start-up as system checks (ids challenges.E00x)."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register


@register(Tags.security, deploy=True)
def check_secret_key(app_configs: Any, **kwargs: Any) -> list[Error]:
    if not settings.DEBUG and settings.SECRET_KEY.startswith("embedded-default"):
        return [
            Error(
                "SECRET_KEY is the embedded default while DEBUG is off.",
                hint="Set SECRET_KEY in the environment.",
                id="challenges.E001",
            )
        ]
    return []


@register()
def check_private_root(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    private = settings.SCANBENCH_PRIVATE_ROOT.resolve()
    media = settings.MEDIA_ROOT.resolve()
    if private == media or media in private.parents:
        return [
            Error(
                "SCANBENCH_PRIVATE_ROOT lies inside MEDIA_ROOT: hidden labels could be served.",
                hint="Point SCANBENCH_PRIVATE_ROOT outside MEDIA_ROOT.",
                id="challenges.E002",
            )
        ]
    return []
