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
from challenges.services.bundles import challenge_import_bundle

ROOT = Path(settings.BASE_DIR)


class Command(BaseCommand):
    help = (
        "Load the demo challenges (the committed synthetic example and the real Wisconsin breast "
        "cancer data from scikit-learn) and create or reset the organizer account, printing its "
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
            report = challenge_import_bundle(path=bundle, organizer=user)
            if not report.challenge.is_published:
                report.challenge.is_published = True  # the demos are meant to be seen at once
                report.challenge.save(update_fields=["is_published"])
            self.stdout.write(str(report))
            for phase in report.challenge.phases.all():
                added = baselines_add(phase=phase, user=user)
                self.stdout.write(f"  {len(added)} baseline(s) queued for scoring in {phase}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Organizer account: username '{username}', password '{password}' "
                "(the console of each demo challenge: http://127.0.0.1:8000/organize/)"
            )
        )
