"""What organizers do to a running challenge, kept as data: the audit log of their actions,
entries they hid or disqualified (with the reason the participant sees), announcements, and
bundles uploaded from the browser or the API with their dry-run report (docs/organizers.md).

Scores are never among these: a result changes only by re-evaluation, which keeps the earlier
attempt (docs/pipeline.md)."""

from django.conf import settings
from django.db import models

from challenges.models.challenge import Challenge
from challenges.models.phase import Phase
from challenges.models.submission import Submission
from challenges.models.team import Team


class OrganizerAction(models.Model):
    """One thing an organizer did (who, when, what), shown in the console. Append-only."""

    challenge = models.ForeignKey(
        Challenge, on_delete=models.CASCADE, related_name="organizer_actions"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="organizer_actions"
    )
    action = models.CharField(max_length=64, db_index=True)
    summary = models.CharField(max_length=500)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor}: {self.summary}"


class ExclusionKind(models.TextChoices):
    HIDDEN = "hidden", "Hidden (this submission does not count for the leaderboard)"
    DISQUALIFIED = "disqualified", "Disqualified (the entrant is off this phase's leaderboard)"


class EntryExclusion(models.Model):
    """An organizer's decision that keeps a submission (hidden) or a whole entrant
    (disqualified: a participant or a team) off a phase's leaderboard, with the reason shown to
    the participant. Lifting it (``lifted_at``) puts them back; both are logged."""

    phase = models.ForeignKey(Phase, on_delete=models.CASCADE, related_name="exclusions")
    kind = models.CharField(max_length=16, choices=ExclusionKind.choices)
    submission = models.ForeignKey(
        Submission, on_delete=models.CASCADE, null=True, blank=True, related_name="exclusions"
    )
    participant = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="exclusions",
    )
    team = models.ForeignKey(
        Team, on_delete=models.CASCADE, null=True, blank=True, related_name="exclusions"
    )
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(kind="hidden", submission__isnull=False)
                    | models.Q(kind="disqualified", submission__isnull=True)
                    & (
                        models.Q(participant__isnull=False, team__isnull=True)
                        | models.Q(participant__isnull=True, team__isnull=False)
                    )
                ),
                name="exclusion_target_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} in {self.phase}: {self.reason[:60]}"


class Announcement(models.Model):
    """A message from the organizers to a challenge's participants, sent by e-mail and shown
    on the challenge page."""

    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="announcements")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    subject = models.CharField(max_length=200)
    body = models.TextField()
    recipients = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.subject


class BundleUploadState(models.TextChoices):
    CHECKED = "checked", "Checked (dry run): waiting for confirmation"
    REFUSED = "refused", "Refused: the bundle has problems"
    IMPORTING = "importing", "Importing"
    IMPORTED = "imported", "Imported"
    FAILED = "failed", "Import failed"


class BundleUpload(models.Model):
    """A challenge bundle uploaded by an organizer: kept in the private area (``path``, never
    under a public URL), checked without writing anything (``report``), imported on
    confirmation by a background task that records its progress."""

    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bundle_uploads"
    )
    challenge = models.ForeignKey(
        Challenge, on_delete=models.SET_NULL, null=True, blank=True, related_name="bundle_uploads"
    )
    slug = models.SlugField(max_length=64, blank=True, help_text="The bundle's challenge slug.")
    original_name = models.CharField(max_length=255)
    path = models.CharField(max_length=500, help_text="Relative to the private root.")
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=BundleUploadState.choices)
    report = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True, help_text="{done, total, stage}")
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.original_name} ({self.state})"
