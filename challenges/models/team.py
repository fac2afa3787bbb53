from django.conf import settings
from django.db import models

from challenges.models.challenge import Challenge


class Team(models.Model):
    """Participants who submit together and count against the limits together."""

    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=64)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TeamMembership", related_name="teams"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["challenge", "slug"], name="team_unique_slug"),
            models.UniqueConstraint(fields=["challenge", "name"], name="team_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class TeamMembership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    # Denormalized so the database can enforce one team per user per challenge.
    challenge = models.ForeignKey(Challenge, on_delete=models.CASCADE)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["challenge", "user"], name="one_team_per_challenge"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"
