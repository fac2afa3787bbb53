"""Models, one module per concern; import them from here."""

from challenges.models.challenge import Challenge, TaskType
from challenges.models.data import Case, CaseSplit, Dataset, LeaderboardPart
from challenges.models.evaluation import Evaluation, EvaluationState, Result
from challenges.models.leaderboard import LeaderboardEntry, LeaderboardSnapshot, SubmissionCounter
from challenges.models.membership import ChallengeMembership, DataFile
from challenges.models.phase import Direction, Phase, RankingScheme, SubmissionKind
from challenges.models.submission import Submission
from challenges.models.team import Team, TeamMembership
from challenges.models.team_invitation import TeamInvitation
from challenges.models.worker import WorkerHeartbeat

__all__ = [
    "Case",
    "CaseSplit",
    "Challenge",
    "ChallengeMembership",
    "DataFile",
    "Dataset",
    "Direction",
    "Evaluation",
    "EvaluationState",
    "LeaderboardEntry",
    "LeaderboardPart",
    "LeaderboardSnapshot",
    "Phase",
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
