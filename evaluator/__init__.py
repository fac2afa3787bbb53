"""Scanbench evaluator: a Django-free library and CLI that reads, validates and scores
predictions, and ranks entries with their uncertainty.

Public API::

    from evaluator import score, ScoreOptions, ScoreReport, InvalidSubmission
    report = score("segmentation", reference_dir, predictions_zip, options=ScoreOptions())

Ranking lives in :mod:`evaluator.ranking`, metric metadata in :mod:`evaluator.metrics.registry`,
safe zip reading in :mod:`evaluator.readers.safe_zip`, fixture writers in
:mod:`evaluator.synthetic`.
"""

from typing import TYPE_CHECKING, Any

from evaluator._version import __version__
from evaluator.errors import EvaluatorInputError, InvalidReference, InvalidSubmission

if TYPE_CHECKING:
    from evaluator.scoring import ScoreOptions, ScoreReport, score

__all__ = [
    "EvaluatorInputError",
    "InvalidReference",
    "InvalidSubmission",
    "ScoreOptions",
    "ScoreReport",
    "__version__",
    "score",
]

_LAZY = {"ScoreOptions", "ScoreReport", "score"}


def __getattr__(name: str) -> Any:
    # Scoring pulls in numpy, scipy, pandas and nibabel: load it on first use so that
    # ``python -m evaluator --help`` and the sandbox's imports of ``evaluator`` stay fast.
    if name in _LAZY:
        from evaluator import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'evaluator' has no attribute {name!r}")
