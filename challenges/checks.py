"""Configuration mistakes caught at start-up as system checks (ids challenges.E00x)."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning


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


@register()
def check_sandbox_backend(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    """A sandbox backend named explicitly must be able to run here; ``auto`` may fall back to
    none (prediction-file phases still work), which is reported as a warning."""
    from evaluator.sandbox import NoSandbox, get_backend

    name = settings.SCANBENCH_SANDBOX_BACKEND
    try:
        backend = get_backend(name)
    except ValueError as exc:
        return [Error(str(exc), id="challenges.E003")]
    if name == "auto":
        if isinstance(backend, NoSandbox):
            return [
                CheckWarning(
                    NoSandbox.MESSAGE,
                    hint="Install docker.io or bubblewrap for model and container phases.",
                    id="challenges.W001",
                )
            ]
        return []
    problems = backend.check() if name != "none" else []
    return [
        Error(
            f"SCANBENCH_SANDBOX_BACKEND={name} cannot run here: {p}",
            hint="Fix the backend or choose another one (auto, docker, bwrap, none).",
            id="challenges.E003",
        )
        for p in problems
    ]
