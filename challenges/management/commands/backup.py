from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from challenges.services.backup import BackupError, backup_create


class Command(BaseCommand):
    help = (
        "Write one tar file (mode 0600) holding a pg_dump of the database, the stored files "
        "(media, private, generated data, evaluation outputs) and a manifest.json with "
        "sha256 sums. It holds the hidden test labels: keep it as secret as the private root. "
        "See docs/backup.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", type=Path, help="The archive to write (a new .tar file).")
        parser.add_argument("--database", default="default", help="Database alias.")

    def handle(self, *args: Any, out: Path, database: str, **options: Any) -> None:
        try:
            manifest = backup_create(out=out, database=database)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        files = len(manifest["files"]) - 1
        rows = sum(manifest["row_counts"].values())
        self.stdout.write(
            self.style.SUCCESS(f"wrote {out}: database ({rows} rows) and {files} files")
        )
