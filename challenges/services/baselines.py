"""Honest baselines on every leaderboard: classical methods trained on the public train split,
and the trivial "always negative" that exposes the accuracy paradox on imbalanced data."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.db import transaction

from challenges.models import Case, CaseSplit, Phase, Submission, SubmissionKind, TaskType
from challenges.services.evaluations import evaluation_create


def _classifiers() -> dict[str, object]:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    return {
        "kNN (k=5)": make_pipeline(StandardScaler(), KNeighborsClassifier(5)),
        "SVM (RBF)": make_pipeline(
            StandardScaler(), CalibratedClassifierCV(SVC(random_state=0), ensemble=False)
        ),
        "Decision tree": DecisionTreeClassifier(max_depth=5, random_state=0),
        "Random forest": RandomForestClassifier(200, random_state=0),
        "Naive Bayes": GaussianNB(),
        "Logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    }


def _predictions_csv(case_ids: list[str], scores: np.ndarray) -> bytes:
    out = io.StringIO()
    pd.DataFrame({"case_id": case_ids, "score": np.round(scores, 6)}).to_csv(out, index=False)
    return out.getvalue().encode()


@transaction.atomic
def _add(*, phase: Phase, user: User, name: str, body: bytes) -> Submission | None:
    digest = hashlib.sha256(body).hexdigest()
    if Submission.objects.filter(
        phase=phase, is_baseline=True, baseline_name=name, sha256=digest
    ).exists():
        return None  # the same baseline is already there
    submission = Submission(
        phase=phase,
        participant=user,
        kind=SubmissionKind.PREDICTIONS,
        sha256=digest,
        is_baseline=True,
        baseline_name=name,
        comment="Baseline computed by Scanbench on the public train split.",
    )
    submission.file.save(f"{name.lower().replace(' ', '-')}.csv", ContentFile(body), save=False)
    submission.save()
    evaluation_create(submission=submission)
    return submission


def baselines_add(*, phase: Phase, user: User) -> list[Submission]:
    """Train the classical baselines on a tabular classification phase's train split and submit
    their test predictions (not counted against any limit). Idempotent."""
    if phase.challenge.task_type != TaskType.CLASSIFICATION or not phase.dataset.input_table:
        raise ValueError(f"{phase}: baselines need a classification phase with a feature table")
    table = pd.read_csv(Path(settings.MEDIA_ROOT) / phase.dataset.input_table)
    table["case_id"] = table["case_id"].astype(str)
    table = table.set_index("case_id")
    cases = Case.objects.filter(dataset=phase.dataset)
    train = dict(cases.filter(split=CaseSplit.TRAIN).values_list("case_id", "label"))
    test_ids = list(cases.filter(split=CaseSplit.TEST).values_list("case_id", flat=True))
    x_train = table.loc[list(train)].to_numpy(dtype=float)
    y_train = np.array([int(v) for v in train.values()])
    x_test = table.loc[test_ids].to_numpy(dtype=float)
    added = []
    made = _add(
        phase=phase, user=user, name="Always negative",
        body=_predictions_csv(test_ids, np.zeros(len(test_ids))),
    )  # fmt: skip
    added += [made] if made else []
    for name, model in _classifiers().items():
        model.fit(x_train, y_train)  # type: ignore[attr-defined]
        scores = model.predict_proba(x_test)[:, 1]  # type: ignore[attr-defined]
        made = _add(phase=phase, user=user, name=name, body=_predictions_csv(test_ids, scores))
        added += [made] if made else []
    return added
