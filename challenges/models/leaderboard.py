from django.conf import settings
from django.db import models

from challenges.models.evaluation import Evaluation
from challenges.models.phase import Phase
from challenges.models.submission import Submission
from challenges.models.team import Team


class SubmissionCounter(models.Model):
    """One row per phase and entrant (a participant, or a team), locked with
    ``select_for_update`` while a submission is counted, so that concurrent uploads of one
    entrant are checked against the limits one at a time."""

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="+")
    entrant = models.CharField(max_length=64, help_text="user:<id> or team:<id>")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["phase", "entrant"], name="counter_unique_entrant"),
        ]

    def __str__(self) -> str:
        return f"{self.entrant} in {self.phase}"


class LeaderboardEntry(models.Model):
    """A materialized leaderboard row: one per phase, part and entrant. Reads never compute
    metrics; the rows are rewritten after each result by `leaderboard_update`."""

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="leaderboard")
    part = models.CharField(max_length=8, choices=[("public", "Public"), ("private", "Private")])
    entrant = models.CharField(max_length=120, help_text="user:<id>, team:<id> or baseline:<name>")
    display_name = models.CharField(max_length=150)
    participant = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, related_name="+"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, null=True, related_name="+")
    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="+")
    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="+")
    is_baseline = models.BooleanField(default=False)
    rank = models.PositiveIntegerField()
    score = models.FloatField(null=True, help_text="Primary metric, full precision.")
    score_ci_low = models.FloatField(null=True)
    score_ci_high = models.FloatField(null=True)
    rank_low = models.PositiveIntegerField(null=True)
    rank_high = models.PositiveIntegerField(null=True)
    tier = models.PositiveIntegerField(null=True)
    aggregates = models.JSONField(default=dict)
    n_submissions = models.PositiveIntegerField(default=1)
    n_worst_filled = models.PositiveIntegerField(default=0)
    submitted_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["phase", "part", "rank", "display_name"]
        constraints = [
            models.UniqueConstraint(
                fields=["phase", "part", "entrant"], name="leaderboard_one_row_per_entrant"
            ),
        ]
        indexes = [models.Index(fields=["phase", "part", "rank"])]
        verbose_name_plural = "leaderboard entries"

    def __str__(self) -> str:
        return f"{self.rank}. {self.display_name} ({self.phase}, {self.part})"


class LeaderboardSnapshot(models.Model):
    """A dated copy of a leaderboard's state, kept as history (one per change)."""

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="snapshots")
    part = models.CharField(max_length=8)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=200)
    rows = models.JSONField(default=list)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.phase} {self.part} at {self.created_at:%Y-%m-%d %H:%M}"
