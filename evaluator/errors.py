"""Errors the evaluator raises on bad input.

Every error carries the file, the case and the problem, and renders as ONE line, because the
platform shows :class:`InvalidSubmission` messages to participants verbatim. Messages about a
submission must never contain hidden reference values (labels, masks): they may name case ids,
shapes, spacings and the allowed label set, which participants already know from the task card
and the test inputs.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EvaluatorInputError", "InvalidReference", "InvalidSubmission", "one_line"]

_MAX_MESSAGE = 500


def one_line(text: str, *, limit: int = _MAX_MESSAGE) -> str:
    """Collapse whitespace (newlines included) and cap the length of a message."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class EvaluatorInputError(ValueError):
    """Base class: an input file cannot be scored. ``str()`` is one line."""

    kind = "input"

    def __init__(self, problem: str, *, file: str | Path | None = None, case: str | None = None):
        # Callers pass display names (a file name, or ``archive.zip:member``), never server paths.
        self.problem = one_line(problem)
        self.file = str(file) if file is not None else None
        self.case = case
        parts = []
        if self.file is not None:
            parts.append(one_line(self.file, limit=160))
        if case is not None:
            parts.append(f"case {one_line(case, limit=120)!s}")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {self.problem}" if prefix else self.problem)


class InvalidSubmission(EvaluatorInputError):
    """The predictions are unusable; the message is safe to show to the participant."""

    kind = "submission"


class InvalidReference(EvaluatorInputError):
    """The reference (hidden labels) is unusable: an organizer's problem, not a participant's."""

    kind = "reference"
