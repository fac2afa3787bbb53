from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from challenges.codabench import CodabenchError
from challenges.codabench.importer import codabench_import, is_codabench_bundle
from challenges.services.bundles import BundleError, challenge_import_bundle


class Command(BaseCommand):
    help = (
        "Import (or update) a challenge from a bundle: a folder or zip with challenge.yaml, or "
        "a Codabench version-2 bundle (competition.yaml). "
        "Every problem of the data is listed; a new challenge starts unpublished."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--organizer", help="Username to add as organizer of the challenge.")
        parser.add_argument(
            "--slug", help="Codabench bundles: the challenge's slug (default: from its title)."
        )

    def handle(
        self, *args: Any, path: Path, organizer: str | None, slug: str | None, **options: Any
    ) -> None:
        user = None
        if organizer:
            try:
                user = get_user_model().objects.get(username=organizer)
            except get_user_model().DoesNotExist as exc:
                raise CommandError(f"--organizer: no user named '{organizer}'") from exc
        if is_codabench_bundle(path):
            try:
                imported = codabench_import(path=path, organizer=user, slug=slug)
            except CodabenchError as exc:
                raise CommandError(f"{path}: {exc}") from exc
            self.stdout.write(self.style.SUCCESS(str(imported)))
            return
        if slug:
            raise CommandError("--slug is for Codabench bundles; challenge.yaml names its slug")
        try:
            report = challenge_import_bundle(path=path, organizer=user)
        except BundleError as exc:
            # one line per problem (every problem found, not only the first)
            raise CommandError(f"{path}: {exc}") from exc
        note = "" if report.challenge.is_published else " (unpublished: publish it in the console)"
        self.stdout.write(self.style.SUCCESS(f"{report}{note}"))
