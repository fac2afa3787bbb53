"""`python manage.py export_challenge SLUG OUT`: write a challenge as a bundle that
`import_challenge` takes back (docs/bundles.md, "Exporting a challenge")."""

from collections import Counter
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from challenges.models import Case, Challenge, Phase
from challenges.services.bundle_export import (
    BundleExportError,
    bundle_export_losses,
    challenge_export_bundle,
    challenge_export_zip,
)


class Command(BaseCommand):
    help = (
        "Export a challenge as a bundle folder (or a zip with --zip): challenge.yaml, cases, "
        "inputs, labels (the hidden test labels too, unless --without-test-labels), starting "
        "kit. Never submissions, results or users."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("out", type=Path, help="the bundle folder (or zip) to write")
        parser.add_argument("--zip", action="store_true", help="write a zip of the bundle")
        parser.add_argument(
            "--without-test-labels",
            action="store_true",
            help="leave the hidden test labels out (for sharing; the importer refuses it)",
        )

    def handle(self, *args: Any, slug: str, out: Path, **opts: Any) -> None:
        try:
            challenge = Challenge.objects.get(slug=slug)
        except Challenge.DoesNotExist as exc:
            raise CommandError(f"no challenge '{slug}'") from exc
        include = not opts["without_test_labels"]
        export = challenge_export_zip if opts["zip"] else challenge_export_bundle
        try:
            losses = bundle_export_losses(challenge=challenge)
            path = export(challenge=challenge, out=out, include_test_labels=include)
        except BundleExportError as exc:
            raise CommandError(str(exc)) from exc
        splits = Counter(
            Case.objects.filter(dataset__challenge=challenge).values_list("split", flat=True)
        )
        counts = ", ".join(f"{n} {split}" for split, n in sorted(splits.items()))
        phases = Phase.objects.filter(challenge=challenge).count()
        labels = "test labels included" if include else "test labels left out"
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {path}: challenge '{slug}', {phases} phase(s), cases: {counts}; {labels}"
            )
        )
        for line in losses:
            self.stdout.write(self.style.WARNING(f"not carried by the bundle: {line}"))
