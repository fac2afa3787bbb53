from django.conf import settings
from django.db import models

from challenges.models.challenge import Challenge


class MembershipStatus(models.TextChoices):
    APPROVED = "approved", "Approved"
    PENDING = "pending", "Waiting for the organizers' approval"
    REJECTED = "rejected", "Not approved"


class ChallengeMembership(models.Model):
    """A participant who joined a challenge. Downloads need a membership whose accepted terms
    are the challenge's current terms (``terms_sha256``): when an organizer changes the terms,
    members accept them again before their next download."""

    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="challenge_memberships"
    )
    joined_at = models.DateTimeField(auto_now_add=True)
    terms_accepted_at = models.DateTimeField(null=True, blank=True)
    terms_sha256 = models.CharField(
        max_length=64, blank=True, help_text="sha256 of the terms text the member accepted."
    )
    status = models.CharField(
        max_length=16, choices=MembershipStatus.choices, default=MembershipStatus.APPROVED
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["challenge", "user"], name="membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.challenge.slug}"


class DataFile(models.Model):
    """A generated public download of a challenge (inputs, train labels, a sample submission):
    the whitelist that download URLs are looked up in. ``path`` is relative to the data folder
    under ``SCANBENCH_VAR_DIR`` and is never built from a request."""

    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="data_files")
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=300)
    path = models.CharField(max_length=500)
    size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    stamp = models.CharField(
        max_length=64, help_text="Digest of the public case rows the file was generated from."
    )
    position = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["challenge", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["challenge", "name"], name="datafile_unique_name"),
        ]

    def __str__(self) -> str:
        return f"{self.challenge.slug}/{self.name}"
