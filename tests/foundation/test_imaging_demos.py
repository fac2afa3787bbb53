"""The imaging demos of scripts/make_imaging_demos.py, from real images fetched from PyPI: each
bundle imports, its summary states the cases, classes or grid, and both the Data tab's sample
submission and the starting kit's baseline (run as a participant would, on the downloads) score.

The sources are fetched once into var/cache/demo-data (shared with ``setup_demo``); these tests
are skipped, naming the reason, only when the registry cannot be reached and nothing is cached."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from challenges.models import Case, Challenge, EvaluationState
from challenges.services.bundles import challenge_import_bundle
from challenges.services.data import data_files_current, data_root
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import submission_create
from tests.factories import UserFactory

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "var" / "cache" / "demo-data"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_imaging_demos", ROOT / "scripts" / "make_imaging_demos.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    results = _script().build_all(tmp_path_factory.mktemp("imaging-demos"), CACHE)
    skipped = {slug: r for slug, r in results.items() if not isinstance(r, Path)}
    if skipped:
        pytest.skip(f"registry unreachable, imaging demos not built: {skipped}")
    return results


@pytest.fixture
def storage(settings, tmp_path: Path) -> Path:
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"
    return tmp_path


def _score(phase, name: str, body: bytes) -> dict:
    user = UserFactory()
    submission = submission_create(
        user=user, phase=phase, file=SimpleUploadedFile(name, body), comment="test"
    )
    evaluation = submission.evaluations.get()
    evaluation_score(evaluation_id=evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.state == EvaluationState.SUCCEEDED, (evaluation.message, evaluation.logs)
    return {r.part: r.aggregates for r in evaluation.results.all()}


def _downloads(challenge) -> dict[str, Path]:
    return {f.name: data_root() / f.path for f in data_files_current(challenge=challenge)}


def _run(args: list[str], work: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # `python -m evaluator` from this checkout
    done = subprocess.run(
        [sys.executable, *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _run_kit(files: dict[str, Path], work: Path, out_name: str) -> Path:
    with zipfile.ZipFile(files["starting-kit.zip"]) as zf:
        zf.extractall(work)
    kit = ["starting-kit/train_and_predict.py", "--train", str(files["train.zip"])]
    _run([*kit, "--test", str(files["test-inputs.zip"]), "--out", out_name], work)
    return work / out_name


def _score_holdout(files: dict[str, Path], work: Path, task: str, n: int, out: str) -> dict:
    """The kit README's way to score locally: hold train cases out, score with the evaluator."""
    kit = ["starting-kit/train_and_predict.py", "--train", str(files["train.zip"])]
    _run([*kit, "--holdout", str(n), "--out", out], work)
    reference = "holdout-reference.csv" if task == "classification" else "holdout-reference"
    score = ["-m", "evaluator", "score", "--task", task, "--reference", reference]
    report = _run([*score, "--predictions", out, "--bootstrap", "0"], work)
    return json.loads(report)


@pytest.mark.django_db
def test_chest_xray_bundle_is_a_balanced_image_classification(demos, storage):
    report = challenge_import_bundle(path=demos["chest-xray-pneumonia"])
    challenge = report.challenge
    assert report.cases == {"train": 10, "test": 6}
    assert challenge.is_published and challenge.task_type == "classification"
    assert "Kermany" in challenge.data_attribution and challenge.data_licence == "CC BY 4.0"
    summary = challenge.datasets.get().summary
    assert summary["splits"]["train"] == {"cases": 10, "classes": {"0": 5, "1": 5}}
    assert summary["splits"]["test"] == {"cases": 6, "classes": {"0": 3, "1": 3}}
    # Anonymous ids: the source file names (NORMAL2-IM-..., person..._bacteria_...) are gone.
    ids = sorted(Case.objects.values_list("case_id", flat=True))
    assert ids == [f"cxr{i:02d}" for i in range(1, 17)]

    files = _downloads(challenge)
    assert set(files) == {
        "train.zip",
        "test-inputs.zip",
        "sample-submission.csv",
        "starting-kit.zip",
    }
    with zipfile.ZipFile(files["train.zip"]) as zf:
        names = zf.namelist()
        assert "labels.csv" in names and len([n for n in names if n.endswith(".png")]) == 10
        from PIL import Image

        with Image.open(zf.open(next(n for n in names if n.endswith(".png")))) as im:
            assert im.mode == "L" and im.size == (128, 128)
    with zipfile.ZipFile(files["test-inputs.zip"]) as zf:
        assert len(zf.namelist()) == 6 and "labels.csv" not in zf.namelist()

    phase = challenge.phases.get()
    assert phase.primary_metric == "auc_roc"
    sample = _score(phase, "sample.csv", files["sample-submission.csv"].read_bytes())
    assert set(sample) == {"public", "private"}
    predictions = _run_kit(files, storage / "kit", "predictions.csv")
    assert len(predictions.read_text().splitlines()) == 7
    scored = _score(phase, "predictions.csv", predictions.read_bytes())
    assert "auc_roc" in scored["public"]
    local = _score_holdout(files, storage / "kit", "classification", 4, "holdout.csv")
    assert local["meta"]["n_cases"] == 4, local


@pytest.mark.django_db
def test_nuclei_bundle_is_a_2d_segmentation_of_16_tiles(demos, storage):
    report = challenge_import_bundle(path=demos["nuclei-segmentation"])
    challenge = report.challenge
    assert report.cases == {"train": 10, "test": 6}
    assert challenge.is_published and challenge.task_type == "segmentation"
    summary = challenge.datasets.get().summary
    for split in ("train", "test"):
        s = summary["splits"][split]
        assert s["ndim"] == 2 and s["shape"] == {"min": [128, 128], "max": [128, 128]}
        assert s["spacing_mm"] == {"min": [1.0, 1.0], "max": [1.0, 1.0]}
        assert 0.05 < s["foreground"]["1"]["mean"] < 0.4
    assert "1 pixel counts as 1 mm" in " ".join(challenge.summary.split())

    files = _downloads(challenge)
    phase = challenge.phases.get()
    assert list(phase.metrics) == ["dice", "hd95", "nsd"] and phase.primary_metric == "dice"
    sample = _score(phase, "sample.zip", files["sample-submission.zip"].read_bytes())
    predictions = _run_kit(files, storage / "kit", "predictions.zip")
    scored = _score(phase, "predictions.zip", predictions.read_bytes())
    # The learnt intensity band finds the bright nuclei: far better than empty masks.
    assert _mean(scored, "dice") > _mean(sample, "dice") + 0.3
    local = _score_holdout(files, storage / "kit", "segmentation", 3, "holdout.zip")
    assert local["meta"]["n_cases"] == 3, local


@pytest.mark.django_db
def test_lesion_bundle_is_a_3d_segmentation_with_anisotropic_spacing(demos, storage):
    report = challenge_import_bundle(path=demos["lesion-segmentation-3d"])
    challenge = report.challenge
    assert report.cases == {"train": 3, "test": 2}
    summary = challenge.datasets.get().summary
    spacings = [summary["splits"][s]["spacing_mm"] for s in ("train", "test")]
    assert all(s["max"][2] > 2 * s["max"][0] for s in spacings)  # thick slices, kept
    assert {summary["splits"][s]["ndim"] for s in ("train", "test")} == {3}
    assert summary["empty_mask"]["metrics"]["dice"] == 0.0
    assert "BSD-3" in challenge.data_licence and "PyRadiomics" in challenge.data_attribution

    files = _downloads(challenge)
    phase = challenge.phases.get()
    _score(phase, "sample.zip", files["sample-submission.zip"].read_bytes())
    predictions = _run_kit(files, storage / "kit", "predictions.zip")
    with zipfile.ZipFile(predictions) as zf:
        assert sorted(zf.namelist()) == sorted(
            f"{c.case_id}.nrrd" for c in Case.objects.filter(split="test")
        )
    scored = _score(phase, "predictions.zip", predictions.read_bytes())
    assert "hd95" in scored["public"]
    local = _score_holdout(files, storage / "kit", "segmentation", 1, "holdout.zip")
    assert local["meta"]["n_cases"] == 1, local


def _mean(aggregates: dict, metric: str) -> float:
    value = aggregates["public"][metric]
    return float(value["mean"] if isinstance(value, dict) else value)


def test_a_source_that_cannot_be_fetched_is_skipped_with_its_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    results = _script().build_all(
        tmp_path / "out", tmp_path / "empty-cache", only=["lesion-segmentation-3d"]
    )
    reason = results["lesion-segmentation-3d"]
    assert isinstance(reason, str) and "pyradiomics-3.0.1.tar.gz" in reason
    assert not (tmp_path / "out" / "lesion-segmentation-3d").exists()
    assert not list((tmp_path / "out").glob(".*"))  # no half-written bundle left


def test_the_command_line_prints_one_line_per_demo(tmp_path):
    env = {**os.environ, "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make_imaging_demos.py"),
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "empty-cache"),
            "--only",
            "lesion-segmentation-3d",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    assert done.stdout.startswith("skipped lesion-segmentation-3d: ")
    assert len(done.stdout.splitlines()) == 1


@pytest.mark.django_db
def test_setup_demo_skips_an_unreachable_demo_with_one_line_and_goes_on(
    storage, monkeypatch, tmp_path
):
    from challenges.management.commands import setup_demo

    monkeypatch.setattr(setup_demo, "DEMO_DATA_CACHE", tmp_path / "empty-cache")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    out = io.StringIO()
    call_command("setup_demo", stdout=out)
    lines = out.getvalue().splitlines()
    skipped = [ln for ln in lines if ln.startswith("Imaging demo ")]
    assert [ln.split(" ")[2] for ln in skipped] == [
        "chest-xray-pneumonia",
        "nuclei-segmentation",
        "lesion-segmentation-3d",
    ]
    assert all(" skipped: " in ln for ln in skipped)
    assert "Organizer account" in lines[-1]
    assert sorted(Challenge.objects.values_list("slug", flat=True)) == [
        "breast-cancer-wdbc",
        "synthetic-lesions",
    ]
