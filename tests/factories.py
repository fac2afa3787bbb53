"""factory_boy factories and builders of whole phases with real data on disk."""

from __future__ import annotations

import csv
import shutil
from datetime import timedelta
from pathlib import Path

import factory
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from challenges.models import Case, Challenge, Dataset, Phase
from challenges.services.bundles import dataset_summary_refresh, draw_leaderboard_parts
from evaluator.synthetic import write_classification, write_segmentation


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"participant{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    password = factory.django.Password("pw")


class ChallengeFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Challenge

    slug = factory.Sequence(lambda n: f"challenge-{n}")
    title = factory.Sequence(lambda n: f"Challenge {n}")
    summary = "A test challenge."
    task_type = "classification"
    classes = ["negative", "positive"]
    data_licence = "CC0 1.0"
    data_attribution = "Generated."
    is_published = True


class DatasetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Dataset

    challenge = factory.SubFactory(ChallengeFactory)
    slug = "main"
    public_fraction = 0.3
    split_seed = 1


class PhaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Phase

    challenge = factory.SubFactory(ChallengeFactory)
    dataset = factory.SubFactory(DatasetFactory, challenge=factory.SelfAttribute("..challenge"))
    slug = factory.Sequence(lambda n: f"phase-{n}")
    title = factory.Sequence(lambda n: f"Phase {n}")
    opens_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))
    closes_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=30))
    metrics = ["auc_roc", "sensitivity", "specificity", "brier"]
    primary_metric = "auc_roc"
    daily_limit = 100
    total_limit = 1000


def _add_test_cases(dataset: Dataset, labels: dict[str, str], files: dict[str, str]) -> None:
    parts = draw_leaderboard_parts(list(labels), dataset.public_fraction, dataset.split_seed)
    Case.objects.bulk_create(
        [
            Case(
                dataset=dataset, case_id=c, split="test", leaderboard_part=parts[c],
                label=labels[c], label_file=files.get(c, ""),
            )
            for c in labels
        ],
        batch_size=2000,
    )  # fmt: skip


def classification_phase(
    tmp: Path, *, n_cases: int = 200, seed: int = 0, **phase_kw
) -> tuple[Phase, Path]:
    """A binary classification phase whose test labels come from a synthetic reference;
    returns the phase and a matching predictions CSV."""
    ref, preds = write_classification(tmp / "cls", n_cases=n_cases, seed=seed)
    phase = PhaseFactory(**phase_kw)
    with ref.open() as fh:
        labels = {row["case_id"]: row["label"] for row in csv.DictReader(fh)}
    _add_test_cases(phase.dataset, labels, {})
    dataset_summary_refresh(dataset=phase.dataset)
    return phase, preds


def segmentation_phase(
    tmp: Path, *, n_cases: int = 6, shape=(48, 48, 24), **phase_kw
) -> tuple[Phase, Path]:
    """A segmentation phase over synthetic NIfTI masks stored in the private root; returns the
    phase and a zip of matching predictions."""
    ref_dir, pred_dir = write_segmentation(tmp / "seg", n_cases=n_cases, shape=shape)
    challenge = ChallengeFactory(task_type="segmentation", classes=["lesion"])
    phase = PhaseFactory(
        challenge=challenge,
        metrics=["dice", "hd95", "nsd"],
        primary_metric="dice",
        **phase_kw,
    )
    rel = f"challenges/{challenge.slug}/main/test/labels"
    dest = Path(settings.SCANBENCH_PRIVATE_ROOT) / rel
    dest.mkdir(parents=True, exist_ok=True)
    files = {}
    for p in sorted(ref_dir.iterdir()):
        shutil.copyfile(p, dest / p.name)
        files[p.name.removesuffix(".nii.gz")] = f"{rel}/{p.name}"
    _add_test_cases(phase.dataset, {c: "" for c in files}, files)
    # measured as an import would: the task card shows it
    dataset_summary_refresh(dataset=phase.dataset)
    archive = shutil.make_archive(str(tmp / "seg-predictions"), "zip", pred_dir)
    return phase, Path(archive)
