"""Scanbench evaluator: a Django-free library and CLI that reads, validates and scores
predictions, and ranks entries with their uncertainty.

Public API::

    from evaluator import score, ScoreOptions, ScoreReport, InvalidSubmission
    report = score("segmentation", reference_dir, predictions_zip, options=ScoreOptions())

Ranking lives in :mod:`evaluator.ranking`, metric metadata in :mod:`evaluator.metrics.registry`,
safe zip reading in :mod:`evaluator.readers.safe_zip`, fixture writers in
:mod:`evaluator.synthetic`.
"""

from evaluator._version import __version__
from evaluator.errors import EvaluatorInputError, InvalidReference, InvalidSubmission
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
