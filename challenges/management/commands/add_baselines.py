from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from challenges.models import Phase
from challenges.services.baselines import baselines_add


class Command(BaseCommand):
    help = (
        "Submit the baselines that apply to a phase (trivial, classical, CNN where torch is "
        "installed; docs/baselines.md). Feature tables train here; image phases are queued "
        "for a worker (queue cpu)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("challenge")
        parser.add_argument("phase")
        parser.add_argument("--as-user", default="organizer")
        parser.add_argument(
            "--background",
            action="store_true",
            help="queue the baselines for a worker even on a feature table",
        )

    def handle(
        self, *args: Any, challenge: str, phase: str, as_user: str, background: bool, **opts: Any
    ) -> None:
        try:
            target = Phase.objects.get(challenge__slug=challenge, slug=phase)
            user = get_user_model().objects.get(username=as_user)
        except (Phase.DoesNotExist, get_user_model().DoesNotExist) as exc:
            raise CommandError(str(exc)) from exc
        try:
            added = baselines_add(phase=target, user=user, background=background)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if added or (target.dataset.input_table and not background):
            self.stdout.write(f"{len(added)} baseline(s) submitted to {target}")
        else:
            self.stdout.write(f"baselines queued for a worker (queue cpu) on {target}")
