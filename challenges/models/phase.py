from datetime import datetime

from django.core.validators import RegexValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from challenges.models.challenge import Challenge, TaskType
from challenges.models.data import Dataset

# Queues of model runs: "gpu", or "gpu-<kind>" for workers with one kind of card.
GPU_QUEUE_PATTERN = r"^gpu(-[a-z0-9]+)*$"
GPU_QUEUE_VALIDATOR = RegexValidator(
    GPU_QUEUE_PATTERN, "A queue name: gpu, or gpu-<kind> such as gpu-h100 (lower case)."
)


class SubmissionKind(models.TextChoices):
    PREDICTIONS = "predictions", "Prediction file"
    MODEL = "model", "Model file (TorchScript or ONNX)"
    CONTAINER = "container", "Container image"
    CODE = "code", "Code (a zip run by the organizers' ingestion program)"


class Direction(models.TextChoices):
    HIGHER = "higher", "Higher is better"
    LOWER = "lower", "Lower is better"


class RankingScheme(models.TextChoices):
    AGGREGATE_THEN_RANK = "aggregate_then_rank", "Aggregate, then rank"
    RANK_THEN_AGGREGATE = "rank_then_aggregate", "Rank per metric, then aggregate"


class EntrySelection(models.TextChoices):
    BEST = "best", "Best submission per participant or team"
    LATEST = "latest", "Latest submission per participant or team"


class PrivateRelease(models.TextChoices):
    ON_CLOSE = "on_close", "When the phase and every phase on the same test cases have closed"
    MANUAL = "manual", "When an organizer publishes it, after the close"


class Phase(models.Model):
    """A stage of a challenge with its own submission kind, window, limits and scoring."""

    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="phases")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="phases")
    slug = models.SlugField(max_length=64)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    submission_kind = models.CharField(
        max_length=16, choices=SubmissionKind.choices, default=SubmissionKind.PREDICTIONS
    )
    opens_at = models.DateTimeField(default=timezone.now)
    closes_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never closes.")
    private_release = models.CharField(
        max_length=16, choices=PrivateRelease.choices, default=PrivateRelease.ON_CLOSE
    )
    private_published_at = models.DateTimeField(
        null=True, blank=True, help_text="When an organizer published the private leaderboard."
    )
    daily_limit = models.PositiveIntegerField(
        default=5, help_text="Submissions per participant or team per UTC day."
    )
    total_limit = models.PositiveIntegerField(
        default=100, help_text="Submissions per participant or team in the whole phase."
    )
    metrics = models.JSONField(default=list, help_text="Metric names, see docs/metrics.md.")
    primary_metric = models.CharField(max_length=64)
    primary_direction = models.CharField(
        max_length=8, choices=Direction.choices, default=Direction.HIGHER
    )
    ranking_scheme = models.CharField(
        max_length=32, choices=RankingScheme.choices, default=RankingScheme.AGGREGATE_THEN_RANK
    )
    entry_selection = models.CharField(
        max_length=8, choices=EntrySelection.choices, default=EntrySelection.BEST
    )
    use_ladder = models.BooleanField(
        default=False, help_text="Ladder (Blum & Hardt 2015) against leaderboard overfitting."
    )
    decision_threshold = models.FloatField(default=0.5)
    nsd_tolerance_mm = models.FloatField(default=2.0)
    input_spec = models.JSONField(
        default=dict, blank=True, help_text="Model phases: image size, channels, scaling, output."
    )
    time_limit_s = models.PositiveIntegerField(default=600)
    memory_limit_mb = models.PositiveIntegerField(default=4096)
    gpus = models.PositiveSmallIntegerField(default=0)
    gpu_queue = models.CharField(
        max_length=64,
        blank=True,
        default="",
        validators=[GPU_QUEUE_VALIDATOR],
        help_text="The queue whose workers run this phase's models, for a kind of GPU "
        "(gpu-h100: only workers started with -Q gpu-h100). Empty: gpu, any gpu worker.",
    )
    show_case_results = models.BooleanField(
        null=True,
        blank=True,
        default=None,
        help_text="Participants see their per-case results on the public part. Empty: decided "
        "by the task (on for segmentation; off for classification, where per-case correctness "
        "would reveal the hidden labels).",
    )
    scoring_program = models.CharField(
        max_length=500,
        blank=True,
        help_text="Private storage path of the organizers' scoring program (a folder with "
        "metadata.yaml); empty: the built-in metrics score the phase.",
    )
    reference_data = models.CharField(
        max_length=500,
        blank=True,
        help_text="Private storage path of the folder the scoring program reads as reference "
        "(ref); empty: the test labels.",
    )
    ingestion_program = models.CharField(
        max_length=500,
        blank=True,
        help_text="Code phases: private storage path of the ingestion program that runs a "
        "participant's code on the input data.",
    )
    input_data = models.CharField(
        max_length=500,
        blank=True,
        help_text="Code phases: private storage path of the input data given to the "
        "ingestion program.",
    )
    leaderboard_columns = models.JSONField(
        default=list,
        blank=True,
        help_text="Columns of a program-scored board: key, title, sorting (desc|asc), "
        "precision, hidden; in board order.",
    )
    leaderboard_computed_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Start of the last leaderboard update."
    )
    ranges_pending_since = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="First new result whose rank ranges are not computed yet (none pending: "
        "empty). The ranges are computed off the scoring path, once the board is quiet.",
    )
    ranges_due_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the pending rank ranges are computed: pushed back by each new result, "
        "up to SCANBENCH_RANGES_MAX_WAIT_S after the first.",
    )

    class Meta:
        ordering = ["challenge", "opens_at"]
        constraints = [
            models.UniqueConstraint(fields=["challenge", "slug"], name="phase_unique_slug"),
            models.CheckConstraint(
                condition=models.Q(closes_at__isnull=True)
                | models.Q(closes_at__gt=models.F("opens_at")),
                name="phase_closes_after_opening",
            ),
            models.CheckConstraint(
                condition=models.Q(daily_limit__lte=models.F("total_limit")),
                name="phase_daily_limit_within_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.challenge.slug}/{self.slug}"

    def get_absolute_url(self) -> str:
        return reverse(
            "challenges:leaderboard",
            kwargs={"slug": self.challenge.slug, "phase_slug": self.slug},
        )

    @property
    def public_fraction(self) -> float:
        return self.dataset.public_fraction

    def is_open(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.opens_at <= now and (self.closes_at is None or now < self.closes_at)

    def is_closed(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.closes_at is not None and now >= self.closes_at

    def case_results_visible(self) -> bool:
        """Whether participants see their per-case results on the public part:
        ``show_case_results`` if set, else on for segmentation and off for classification
        (per-case correctness beside the submitted scores would reveal the hidden labels)."""
        if self.show_case_results is not None:
            return self.show_case_results
        return self.challenge.task_type == TaskType.SEGMENTATION
