"""Models, one module per concern; import them from here."""

from challenges.models.challenge import Challenge, TaskType
from challenges.models.data import Case, CaseSplit, Dataset, LeaderboardPart
from challenges.models.evaluation import Evaluation, EvaluationState, Result
from challenges.models.leaderboard import LeaderboardEntry, LeaderboardSnapshot, SubmissionCounter
from challenges.models.membership import ChallengeMembership, DataFile, MembershipStatus
from challenges.models.organizer import (
    Announcement,
    BundleUpload,
    BundleUploadState,
    EntryExclusion,
    ExclusionKind,
    OrganizerAction,
)
from challenges.models.phase import (
    Direction,
    Phase,
    PrivateRelease,
    RankingScheme,
    SubmissionKind,
)
from challenges.models.submission import Submission
from challenges.models.team import Team, TeamMembership
from challenges.models.team_invitation import TeamInvitation
from challenges.models.worker import WorkerHeartbeat

__all__ = [
    "Announcement",
    "BundleUpload",
    "BundleUploadState",
    "Case",
    "CaseSplit",
    "Challenge",
    "ChallengeMembership",
    "DataFile",
    "Dataset",
    "Direction",
    "EntryExclusion",
    "Evaluation",
    "EvaluationState",
    "ExclusionKind",
    "LeaderboardEntry",
    "LeaderboardPart",
    "LeaderboardSnapshot",
    "MembershipStatus",
    "OrganizerAction",
    "Phase",
    "PrivateRelease",
    "RankingScheme",
    "Result",
    "Submission",
    "SubmissionCounter",
    "SubmissionKind",
    "TaskType",
    "Team",
    "TeamInvitation",
    "TeamMembership",
    "WorkerHeartbeat",
]
