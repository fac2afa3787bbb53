from django.conf import settings
from django.db import models

from challenges.models.team import Team


class TeamInvitation(models.Model):
    """A pending invitation to join a team; accepting it creates the TeamMembership and deletes
    the invitation, declining deletes it (docs/teams.md)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    invitee = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_invitations"
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="team_invitations_sent",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["team", "invitee"], name="team_invitation_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.invitee} invited to {self.team}"
