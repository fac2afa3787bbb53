from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from challenges.models import Phase
from challenges.services.baselines import baselines_add


class Command(BaseCommand):
    help = "Submit the classical baselines (kNN, SVM, trees, naive Bayes, ...) to a phase."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("challenge")
        parser.add_argument("phase")
        parser.add_argument("--as-user", default="organizer")

    def handle(self, *args: Any, challenge: str, phase: str, as_user: str, **opts: Any) -> None:
        try:
            target = Phase.objects.get(challenge__slug=challenge, slug=phase)
            user = get_user_model().objects.get(username=as_user)
        except (Phase.DoesNotExist, get_user_model().DoesNotExist) as exc:
            raise CommandError(str(exc)) from exc
        try:
            added = baselines_add(phase=target, user=user)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{len(added)} baseline(s) submitted to {target}")
