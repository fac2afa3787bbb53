"""Reading Codabench version-2 competition bundles (``competition.yaml``); see docs/codabench.md."""

from challenges.codabench.parse import (
    CodabenchError,
    Column,
    Competition,
    CPhase,
    CTask,
    Leaderboard,
    Page,
    Solution,
    describe,
    open_codabench_bundle,
    read_competition,
)

__all__ = [
    "CPhase",
    "CTask",
    "CodabenchError",
    "Column",
    "Competition",
    "Leaderboard",
    "Page",
    "Solution",
    "describe",
    "open_codabench_bundle",
    "read_competition",
]
