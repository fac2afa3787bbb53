from collections.abc import Mapping
from typing import cast

from django.db import models

from challenges.models.submission import Submission
from evaluator.case_table import CaseTable, as_case_table


class EvaluationState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running the submission"
    SCORING = "scoring", "Scoring"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATES = (EvaluationState.RUNNING, EvaluationState.SCORING)
FINAL_STATES = (EvaluationState.SUCCEEDED, EvaluationState.FAILED, EvaluationState.CANCELLED)

# Allowed moves of the state machine; services refuse any other.
TRANSITIONS: dict[str, frozenset[str]] = {
    EvaluationState.QUEUED: frozenset(
        {
            EvaluationState.RUNNING,
            EvaluationState.SCORING,
            EvaluationState.CANCELLED,
            EvaluationState.FAILED,
        }
    ),
    EvaluationState.RUNNING: frozenset(
        {
            EvaluationState.SCORING,
            EvaluationState.FAILED,
            EvaluationState.CANCELLED,
            EvaluationState.QUEUED,
        }
    ),
    EvaluationState.SCORING: frozenset(
        {
            EvaluationState.SUCCEEDED,
            EvaluationState.FAILED,
            EvaluationState.CANCELLED,
            EvaluationState.QUEUED,
        }
    ),
    EvaluationState.SUCCEEDED: frozenset(),
    EvaluationState.FAILED: frozenset(),
    EvaluationState.CANCELLED: frozenset(),
}


class Evaluation(models.Model):
    """One attempt at evaluating a submission. Re-evaluation adds an attempt; history stays."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="evaluations")
    attempt = models.PositiveIntegerField(default=1)
    state = models.CharField(
        max_length=16, choices=EvaluationState.choices, default=EvaluationState.QUEUED
    )
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deliveries = models.PositiveIntegerField(
        default=0, help_text="How often a worker took this attempt up (re-deliveries included)."
    )
    stage_deliveries = models.PositiveIntegerField(
        default=0,
        help_text="Deliveries of the current step (the sandbox run, then the scoring); the "
        "attempt fails as the platform's fault once this would pass SCANBENCH_MAX_DELIVERIES.",
    )
    lease_owner = models.CharField(
        max_length=64,
        blank=True,
        default="",
        editable=False,
        help_text="Token of the delivery that holds this attempt; empty when none does.",
    )
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="The holder renews its lease while it works; once it lapses (the worker died) "
        "the reaper takes the attempt back.",
    )
    platform_fault = models.BooleanField(
        default=False, help_text="Failed through the platform's fault: not counted to limits."
    )
    message = models.TextField(blank=True, help_text="Shown to the participant.")
    logs = models.TextField(blank=True, help_text="Bounded log tail, organizers only.")
    sandbox_backend = models.CharField(max_length=16, blank=True)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When a task for this attempt was last sent."
    )
    predictions = models.CharField(
        max_length=500, blank=True, help_text="Predictions written by a code submission."
    )
    timings = models.JSONField(default=dict, blank=True)
    board_pending = models.BooleanField(
        default=False,
        editable=False,
        help_text="Succeeded, and its leaderboard row not chosen again yet. The leaderboard "
        "task applies every pending result of a phase at once.",
    )

    class Meta:
        ordering = ["-queued_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["submission", "attempt"], name="evaluation_unique_attempt"
            ),
            # Attempts are numbered from 1: the leaderboard's "newest attempt" rule relies on it.
            models.CheckConstraint(
                condition=models.Q(attempt__gte=1), name="evaluation_attempt_from_one"
            ),
            # At most one attempt of a submission is being worked on at any time.
            models.UniqueConstraint(
                fields=["submission"],
                condition=models.Q(state__in=["running", "scoring"]),
                name="evaluation_one_active_per_submission",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "queued_at"]),
            # the few results waiting for the leaderboard task
            models.Index(
                fields=["board_pending"],
                condition=models.Q(board_pending=True),
                name="evaluation_board_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"evaluation of submission {self.submission_id}, attempt {self.attempt}"


class Result(models.Model):
    """Metrics of one evaluation on one leaderboard part of the test set.

    Per-case values are kept (bootstrap intervals, significance tests, re-ranking) as one
    binary columnar document per result (:mod:`evaluator.case_table`: the case ids, then one
    array per metric) rather than one row per case or a JSON object: the leaderboard reads whole
    columns at once, and a 10,000-case submission writes about 190 KB instead of 20,000 rows
    or 900 KB of JSON text. ``result.cases`` reads and writes them as ``{case_id: {metric:
    value}}`` (a :class:`~evaluator.case_table.CaseTable`). Written once per evaluation and
    part (unique constraint)."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="results")
    part = models.CharField(max_length=8, choices=[("public", "Public"), ("private", "Private")])
    aggregates = models.JSONField(default=dict)
    case_values = models.BinaryField(
        default=bytes, help_text="Per-case values, evaluator.case_table's binary format."
    )
    meta = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "part"], name="result_unique_part"),
        ]

    def __str__(self) -> str:
        return f"{self.part} result of {self.evaluation}"

    @property
    def cases(self) -> CaseTable:
        """The per-case values (decoded once per instance)."""
        raw = self.case_values
        cached = self.__dict__.get("_cases")
        if cached is not None and cached[0] is raw:
            return cast(CaseTable, cached[1])
        table = CaseTable.from_bytes(raw) if raw else CaseTable([], {})
        self.__dict__["_cases"] = (raw, table)
        return table

    @cases.setter
    def cases(self, value: Mapping[str, Mapping[str, float | None]] | None) -> None:
        table = as_case_table(value)
        self.case_values = table.to_bytes() if len(table) or table.metrics else b""
        self.__dict__["_cases"] = (self.case_values, table)
