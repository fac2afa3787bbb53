from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from challenges.services.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup made by `manage.py backup` into an empty database and empty storage "
        "roots. The whole archive is checked (sha256 of every file, member names, migration "
        "state) before anything is written. Stop the web processes, workers and beat first. "
        "See docs/backup.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path, help="The .tar file written by backup.")
        parser.add_argument(
            "--force",
            action="store_true",
            help="Replace what the database and the storage roots already hold.",
        )
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, archive: Path, force: bool, database: str, **opts: Any) -> None:
        try:
            report = backup_restore(archive=archive, force=force, database=database)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        replaced = " (replaced what was there)" if report.replaced else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"restored {archive}: database ({report.tables} tables) and {report.files} "
                f"files, {report.bytes} bytes{replaced}"
            )
        )
