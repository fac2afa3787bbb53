"""Models, one module per concern; import them from here."""

from challenges.models.challenge import Challenge, TaskType
from challenges.models.data import Case, CaseSplit, Dataset, LeaderboardPart
from challenges.models.evaluation import CaseResult, Evaluation, EvaluationState, Result
from challenges.models.phase import Direction, Phase, RankingScheme, SubmissionKind
from challenges.models.submission import Submission
from challenges.models.team import Team, TeamMembership
from challenges.models.worker import WorkerHeartbeat

__all__ = [
    "Case",
    "CaseResult",
    "CaseSplit",
    "Challenge",
    "Dataset",
    "Direction",
    "Evaluation",
    "EvaluationState",
    "LeaderboardPart",
    "Phase",
    "RankingScheme",
    "Result",
    "Submission",
    "SubmissionKind",
    "TaskType",
    "Team",
    "TeamMembership",
    "WorkerHeartbeat",
]
