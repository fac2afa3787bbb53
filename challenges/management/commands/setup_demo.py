import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand, CommandParser

from challenges.services.baselines import baselines_add
from challenges.services.bundles import ImportReport, challenge_import_bundle

ROOT = Path(settings.BASE_DIR)
#: the fetched packages the imaging demos are made from (scripts/make_imaging_demos.py): one
#: cache for the checkout, so that set-up and the tests download them once
DEMO_DATA_CACHE = ROOT / "var" / "cache" / "demo-data"


class Command(BaseCommand):
    help = (
        "Load the demo challenges (the committed synthetic example, the real Wisconsin breast "
        "cancer data from scikit-learn and three imaging demos built from real images fetched "
        "from PyPI, see docs/data.md) and create or reset the organizer account, printing its "
        "password."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="organizer")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        out = settings.VAR_DIR / "demo-bundles"
        subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "make_demo_bundles.py"), "--out", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(
            username=username, defaults={"email": f"{username}@localhost"}
        )
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        # An organizer of the demo challenges, not a site administrator (docs/organizers.md):
        # the console under each challenge is theirs; the admin belongs to the site's superuser.
        user.is_staff = False
        user.is_superuser = False
        user.save()
        user.user_permissions.add(Permission.objects.get(codename="add_challenge"))
        for bundle in (
            ROOT / "examples" / "bundles" / "synthetic-lesions",
            out / "breast-cancer-wdbc",
        ):
            report = self._import(bundle, user)
            for phase in report.challenge.phases.all():
                added = baselines_add(phase=phase, user=user)
                self.stdout.write(f"  {len(added)} baseline(s) queued for scoring in {phase}")
        for bundle in self._imaging_demos(out):
            report = self._import(bundle, user)
            for phase in report.challenge.phases.all():
                try:
                    added = baselines_add(phase=phase, user=user)
                except ValueError as exc:  # image tasks: their baselines come with the runner
                    self.stdout.write(f"  baselines for {report.challenge.slug}: {exc}")
                else:
                    self.stdout.write(f"  {len(added)} baseline(s) queued for scoring in {phase}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Organizer account: username '{username}', password '{password}' "
                "(the console of each demo challenge: http://127.0.0.1:8000/organize/)"
            )
        )

    def _import(self, bundle: Path, user: Any) -> ImportReport:
        report = challenge_import_bundle(path=bundle, organizer=user)
        if not report.challenge.is_published:
            report.challenge.is_published = True  # the demos are meant to be seen at once
            report.challenge.save(update_fields=["is_published"])
        self.stdout.write(str(report))
        return report

    def _imaging_demos(self, out: Path) -> list[Path]:
        """Build the imaging demos from their cached (else fetched) sources; a demo whose
        source cannot be had is skipped with one line, and set-up goes on without it."""
        script = ROOT / "scripts" / "make_imaging_demos.py"
        cmd = [sys.executable, str(script), "--out", str(out), "--cache", str(DEMO_DATA_CACHE)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        built: list[Path] = []
        for line in done.stdout.splitlines():
            word, _, rest = line.partition(" ")
            if word == "built":
                built.append(Path(rest.split(" ", 1)[1]))
            elif word == "skipped":
                slug, _, reason = rest.partition(": ")
                self.stdout.write(f"Imaging demo {slug} skipped: {reason}")
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            self.stdout.write(f"Imaging demos skipped: {script.name} failed: {lines[-1]}")
        return built
