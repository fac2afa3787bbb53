from django.conf import settings
from django.db import models

from challenges.models.phase import Phase, SubmissionKind
from challenges.models.team import Team


def submission_upload_to(instance: "Submission", filename: str) -> str:
    return f"submissions/{instance.phase_id}/{instance.sha256[:2]}/{instance.sha256}/{filename}"


class Submission(models.Model):
    """What a participant (or the platform, for a baseline) handed in to a phase."""

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="submissions")
    participant = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="submissions"
    )
    team = models.ForeignKey(
        Team, on_delete=models.PROTECT, null=True, blank=True, related_name="submissions"
    )
    kind = models.CharField(max_length=16, choices=SubmissionKind.choices)
    file = models.FileField(upload_to=submission_upload_to, max_length=500)
    original_name = models.CharField(
        max_length=255,
        blank=True,
        help_text="The participant's file name, for display; the file is stored under a name "
        "the server chose.",
    )
    sha256 = models.CharField(max_length=64)
    comment = models.CharField(max_length=500, blank=True)
    is_baseline = models.BooleanField(
        default=False, help_text="A reference method shown on the leaderboard, marked as such."
    )
    baseline_name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["phase", "participant", "created_at"]),
            models.Index(fields=["phase", "team", "created_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_baseline=False) | ~models.Q(baseline_name=""),
                name="baseline_has_name",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} by {self.participant} to {self.phase}"
