"""`python manage.py make_synthetic_challenge`: bundles of every kind, with the imbalance real
data has, that the importer accepts (docs/catalogue.md)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import yaml
from django.core.management import CommandError, call_command

from challenges.models import Case, Challenge
from evaluator.readers.masks import decode_mask


def _make(*args: str) -> str:
    out = io.StringIO()
    call_command("make_synthetic_challenge", *args, stdout=out)
    return out.getvalue()


def _rows(bundle: Path) -> list[dict[str, str]]:
    with (bundle / "cases.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.django_db
def test_classification_bundle_has_ten_percent_positives_and_imports(tmp_path):
    out = _make(
        "--task", "classification", "--cases", "60", "--slug", "syn-cls",
        "--out", str(tmp_path), "--import",
    )  # fmt: skip
    bundle = tmp_path / "syn-cls"
    rows = _rows(bundle)
    assert len(rows) == 60 and sum(r["label"] == "1" for r in rows) == 6  # 10 %
    assert {r["split"] for r in rows if r["label"] == "1"} == {"train", "test"}  # stratified
    assert len(list((bundle / "images").glob("*.npy"))) == 60
    assert np.load(bundle / "images" / f"{rows[0]['case_id']}.npy").shape == (32, 32)
    manifest = yaml.safe_load((bundle / "challenge.yaml").read_text())
    assert manifest["published"] is False
    assert manifest["phases"][0]["primary_metric"] == "auc_roc"
    assert "Created challenge 'syn-cls'" in out
    cases = Case.objects.filter(dataset__challenge__slug="syn-cls")
    assert cases.count() == 60
    assert cases.filter(label="1").count() == 6
    assert cases.filter(split="test").count() == 18  # 30 % of each class
    assert cases.filter(split="test", label="1").count() == 2
    assert Challenge.objects.get(slug="syn-cls").is_published is False


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("task", "shape", "ext"),
    [("segmentation2d", "48x40", ".png"), ("segmentation3d", "24x20x8", ".nii.gz")],
)
def test_segmentation_bundle_has_small_structures_and_empty_masks(tmp_path, task, shape, ext):
    _make(
        "--task", task, "--cases", "10", "--prevalence", "0.6", "--shape", shape,
        "--slug", "syn-seg", "--out", str(tmp_path), "--import",
    )  # fmt: skip
    bundle = tmp_path / "syn-seg"
    rows = _rows(bundle)
    assert len(rows) == 10
    fractions = []
    for row in rows:
        decoded = decode_mask((bundle / "labels" / f"{row['case_id']}{ext}").read_bytes(), ext)
        mask, grid = decoded.data, decoded.grid
        assert (bundle / "images" / f"{row['case_id']}{ext}").is_file()
        assert grid.shape == tuple(int(n) for n in shape.split("x"))
        assert set(np.unique(mask)) <= {0, 1}
        fractions.append(float((mask > 0).mean()))
    non_empty = [f for f in fractions if f > 0]
    assert len(non_empty) == 6  # 60 % hold a structure, 4 masks are empty
    assert max(non_empty) < 0.1  # a small foreground fraction
    cases = Case.objects.filter(dataset__challenge__slug="syn-seg")
    assert cases.count() == 10
    assert cases.filter(split="test").count() == 3  # 30 % of each group (2 + 1)
    assert Challenge.objects.get(slug="syn-seg").task_type == "segmentation"


@pytest.mark.django_db
def test_default_folder_is_under_var_and_a_rerun_replaces_the_bundle(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    _make("--task", "classification", "--cases", "20", "--seed", "3")
    bundle = tmp_path / "synthetic-bundles" / "synthetic-classification-20"
    assert (bundle / "challenge.yaml").is_file()
    _make("--task", "classification", "--cases", "12", "--slug", "synthetic-classification-20")
    assert len(_rows(bundle)) == 12 and len(list((bundle / "images").iterdir())) == 12
    assert not Challenge.objects.exists()  # without --import nothing is imported


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "classification", "--cases", "1"], "--cases"),
        (["--task", "classification", "--cases", "10", "--prevalence", "1.5"], "--prevalence"),
        (["--task", "segmentation3d", "--cases", "10", "--shape", "32x32"], "--shape"),
        (["--task", "segmentation2d", "--cases", "10", "--shape", "ax3"], "--shape"),
        (["--task", "classification", "--cases", "10", "--slug", "no/slug"], "--slug"),
    ],
)
def test_bad_arguments_are_refused_with_the_option_named(tmp_path, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("make_synthetic_challenge", *args, "--out", str(tmp_path))
