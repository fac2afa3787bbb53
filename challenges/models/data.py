from django.db import models

from challenges.models.challenge import Challenge


class CaseSplit(models.TextChoices):
    TRAIN = "train", "Train"
    TEST = "test", "Test"


class LeaderboardPart(models.TextChoices):
    PUBLIC = "public", "Public"
    PRIVATE = "private", "Private"


class Dataset(models.Model):
    """The cases of a challenge. The public/private draw of the test split belongs here, not to a
    phase: every phase on one data set shares it, so that no participant can combine phases to
    learn private scores."""

    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="datasets")
    slug = models.SlugField(max_length=64)
    description = models.TextField(blank=True)
    public_fraction = models.FloatField(
        default=0.3,
        help_text="Fraction of the test cases scored live on the public leaderboard.",
    )
    split_seed = models.BigIntegerField(
        default=0, help_text="Seed of the one-time public/private draw of the test cases."
    )
    input_table = models.CharField(
        max_length=500,
        blank=True,
        help_text="For tabular inputs: storage path of the table of all cases' features.",
    )
    summary = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "Measured at import from the organizer's files (image sizes, spacing, foreground "
            "fractions, empty-mask scores; class counts): aggregates only, shown on the task "
            "card. Empty for data imported before it existed: manage.py dataset_summary."
        ),
    )
    starting_kit = models.CharField(
        max_length=500,
        blank=True,
        help_text="Public storage path of the bundle's starting-kit folder, if it has one.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["challenge", "slug"], name="dataset_unique_slug"),
            models.CheckConstraint(
                condition=models.Q(public_fraction__gt=0) & models.Q(public_fraction__lt=1),
                name="dataset_public_fraction_open_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.challenge.slug}/{self.slug}"


class Case(models.Model):
    """One case (patient, image). Test labels are hidden: `label` and `label_file` are read only by
    trusted scoring code and never serialized by the web."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="cases")
    case_id = models.CharField(max_length=200)
    split = models.CharField(max_length=8, choices=CaseSplit.choices)
    leaderboard_part = models.CharField(
        max_length=8, choices=LeaderboardPart.choices, blank=True, default=""
    )
    input_file = models.CharField(max_length=500, blank=True, help_text="Public storage path.")
    label = models.CharField(max_length=64, blank=True, help_text="Class label (classification).")
    label_file = models.CharField(
        max_length=500, blank=True, help_text="Mask path (segmentation); private for test cases."
    )
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["case_id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "case_id"], name="case_unique_id"),
            # Test cases always belong to exactly one leaderboard part, train cases to none.
            models.CheckConstraint(
                condition=(
                    models.Q(split="train", leaderboard_part="")
                    | models.Q(split="test", leaderboard_part__in=["public", "private"])
                ),
                name="case_part_matches_split",
            ),
        ]
        indexes = [models.Index(fields=["dataset", "split", "leaderboard_part"])]

    def __str__(self) -> str:
        return self.case_id
