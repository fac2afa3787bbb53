from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from challenges.models import Dataset
from challenges.services.bundles import dataset_summary_refresh
from evaluator.dataset_summary import MaskSummaryError


class Command(BaseCommand):
    help = (
        "Measure the data sets of a challenge (or of every challenge) again and store the "
        "summary the task card shows: for data imported before summaries existed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug", nargs="?", help="Challenge slug (default: every challenge).")

    def handle(self, *args: Any, slug: str | None, **options: Any) -> None:
        datasets = Dataset.objects.select_related("challenge").order_by("challenge__slug", "slug")
        if slug:
            datasets = datasets.filter(challenge__slug=slug)
            if not datasets.exists():
                raise CommandError(f"no challenge '{slug}' with a data set")
        for dataset in datasets:
            try:
                summary = dataset_summary_refresh(dataset=dataset)
            except MaskSummaryError as exc:
                raise CommandError(f"{dataset}: {exc}") from exc
            splits = summary.get("splits", {})
            counts = ", ".join(f"{s['cases']} {name}" for name, s in splits.items())
            self.stdout.write(self.style.SUCCESS(f"{dataset}: measured {counts or 'no cases'}"))
