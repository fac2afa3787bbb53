"""The challenge page's task card is made from the data and the phase, per task type."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from django.conf import settings
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from challenges.models import Case, Dataset
from challenges.services.bundles import challenge_import_bundle
from evaluator.metrics.registry import CLASSIFICATION_METRICS, SEGMENTATION_METRICS
from evaluator.scoring import ScoreOptions, score
from evaluator.synthetic import write_nifti
from tests.factories import UserFactory, classification_phase, segmentation_phase
from tests.helpers import final_evaluation, wait_for


def _published(report):  # type: ignore[no-untyped-def]
    """New challenges start unpublished; these tests read its public pages, so publish it."""
    report.challenge.is_published = True
    report.challenge.save(update_fields=["is_published"])
    return report


def _page(phase) -> str:
    response = Client().get(reverse("challenges:detail", args=[phase.challenge.slug]))
    assert response.status_code == 200
    return response.content.decode()


def _section(html: str, element_id: str) -> str:
    match = re.search(rf'<section class="card" id="{element_id}">(.*?)</section>', html, re.S)
    assert match, f"no section #{element_id}"
    return match.group(1)


def _metric_row(section: str, name: str) -> str:
    match = re.search(rf'<tr data-metric="{re.escape(name)}">(.*?)</tr>', section, re.S)
    assert match, f"no row for {name}"
    return match.group(1)


@pytest.mark.django_db
def test_segmentation_card_shows_cases_labels_and_metrics_not_class_balance(tmp_path):
    phase, _ = segmentation_phase(tmp_path, n_cases=6)
    html = _page(phase)
    assert "Class balance" not in html
    assert "Decision threshold" not in html
    cases = _section(html, "cases-and-labels")
    assert re.search(r"<td>test</td><td class=\"num\">6</td>", cases)
    assert "<td>train</td>" not in cases  # no training cases in this data set
    assert "1: lesion" in cases
    card = _section(html, phase.slug)
    assert f"{phase.nsd_tolerance_mm} mm" in card
    for name in ("dice", "hd95", "nsd"):
        info = SEGMENTATION_METRICS[name]
        row = _metric_row(card, name)
        assert info.description.replace("'", "&#x27;") in row
        assert f"<td>{info.unit or 'none'}</td>" in row
        assert ("higher is better" if info.higher_is_better else "lower is better") in row
    assert "<td>mm</td><td>lower is better</td>" in _metric_row(card, "hd95")
    assert "primary" in _metric_row(card, "dice")


@pytest.mark.django_db
def test_classification_card_shows_balance_threshold_and_the_trivial_score(tmp_path):
    phase, _ = classification_phase(
        tmp_path, n_cases=120, decision_threshold=0.35, primary_metric="accuracy"
    )
    labels = list(Case.objects.filter(dataset=phase.dataset).values_list("label", flat=True))
    negatives, positives = labels.count("0"), labels.count("1")
    assert negatives and positives and negatives + positives == 120
    html = _page(phase)
    balance = _section(html, "class-balance")
    assert '<td>test</td><td class="num">120</td>' in balance
    assert f"{negatives} ({100 * negatives / 120:.1f} %)" in balance
    assert f"{positives} ({100 * positives / 120:.1f} %)" in balance
    assert "Cases and labels" not in html
    card = _section(html, phase.slug)
    assert "Decision threshold:</strong> 0.35" in card
    # "Always negative" is right on every negative case and on no positive one.
    assert f"scores {negatives / 120:.4f} on accuracy" in card
    for name in phase.metrics:
        info = CLASSIFICATION_METRICS[name]
        row = _metric_row(card, name)
        assert "<td>none</td>" in row
        assert ("higher is better" if info.higher_is_better else "lower is better") in row
    assert "primary" in _metric_row(card, "accuracy")


@pytest.mark.django_db
def test_a_constant_score_has_auc_one_half(tmp_path):
    phase, _ = classification_phase(tmp_path, n_cases=50)
    assert "scores 0.5000 on auc_roc over the whole test split" in _section(
        _page(phase), phase.slug
    )


def test_leaderboard_headers_carry_the_unit_of_distance_metrics(start_worker, tmp_path):
    phase, archive = segmentation_phase(tmp_path)
    start_worker(queues="cpu")
    client = APIClient()
    client.force_authenticate(UserFactory())
    upload = io.BytesIO(archive.read_bytes())
    upload.name = "masks.zip"
    response = client.post(
        f"/api/phases/{phase.pk}/submissions/", {"file": upload}, format="multipart"
    )
    assert response.status_code == 201, response.content
    evaluation = final_evaluation(response.json()["id"])
    assert evaluation.state == "succeeded", evaluation.message
    wait_for(lambda: phase.leaderboard.filter(part="public").exists())
    html = Client().get(phase.get_absolute_url()).content.decode()
    header = re.search(r"<thead>(.*?)</thead>", html, re.S)
    assert header, html
    assert "<th>hd95 (mm)</th>" in header.group(1)
    assert "dice [95 % interval]" in header.group(1)
    assert "<th>nsd</th>" in header.group(1)


# --- measured at import: grid, foreground, what an empty mask scores -----------------------------

D, X = "\u2013", "\u00d7"  # en dash and multiplication sign, as the card writes ranges
ALL_SEGMENTATION = ["dice", "iou", "sensitivity", "specificity", "hd95", "hd", "assd", "nsd"]


def _measured_bundle(folder: Path) -> dict[str, tuple]:
    """Two labels; train and test cases on different grids; one test case without any
    foreground (the both-empty conventions). Returns case id -> (split, mask, spacing)."""
    (folder / "labels").mkdir(parents=True)
    rng = np.random.default_rng(5)
    grids = {
        "tr0": ("train", (16, 12, 6), (0.8, 0.8, 2.5)),
        "tr1": ("train", (20, 12, 8), (0.7, 0.8, 3.0)),
        "te0": ("test", (18, 14, 6), (0.9, 0.9, 2.0)),
        "te1": ("test", (18, 16, 6), (0.9, 0.9, 2.0)),
        "te2": ("test", (18, 14, 6), (0.9, 0.9, 2.0)),
    }
    cases = {}
    for case_id, (split, shape, spacing) in grids.items():
        mask = np.zeros(shape, dtype=np.uint8)
        if case_id != "te2":
            x = int(rng.integers(2, 6))
            mask[x : x + 6, 3:9, 1:4] = 1
            mask[x + 1 : x + 3, 4:6, 2:3] = 2
        write_nifti(folder / "labels" / f"{case_id}.nii.gz", mask, spacing)
        cases[case_id] = (split, mask, spacing)
    (folder / "cases.csv").write_text(
        "case_id,split\n" + "".join(f"{c},{s}\n" for c, (s, _, _) in cases.items())
    )
    manifest = {
        "slug": "measured", "title": "Measured", "summary": "Organs.", "task": "segmentation",
        "classes": ["organ", "lesion"], "licence": "CC0 1.0", "attribution": "Generated.",
        "dataset": {"cases": "cases.csv", "labels": "labels"},
        "phases": [
            {"slug": "open", "title": "Open", "metrics": ALL_SEGMENTATION, "nsd_tolerance_mm": 1.5}
        ],
    }  # fmt: skip
    (folder / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    return cases


@pytest.fixture
def measured(db, settings, tmp_path):
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"
    cases = _measured_bundle(tmp_path / "bundle")
    challenge = _published(challenge_import_bundle(path=tmp_path / "bundle")).challenge
    return challenge.phases.get(), cases


def _pct(x: float) -> str:
    return f"{100 * x:.3g} %"


def test_segmentation_card_shows_size_and_spacing_ranges_per_split_in_mm(measured):
    phase, _ = measured
    grid = re.search(r'<table id="image-grid">(.*?)</table>', _page(phase), re.S)
    assert grid, "no image grid table"
    table = grid.group(1)
    assert "size (voxels per axis)" in table and "voxel spacing (mm per axis)" in table
    assert re.search(
        rf'<td class="stick">train</td><td class="num">2</td><td>16{D}20 {X} 12 {X} 6{D}8</td>'
        rf"<td>0.7{D}0.8 {X} 0.8 {X} 2.5{D}3 mm</td>",
        table,
    )
    assert re.search(
        rf'<td class="stick">test</td><td class="num">3</td><td>18 {X} 14{D}16 {X} 6</td>'
        rf"<td>0.9 {X} 0.9 {X} 2 mm</td>",
        table,
    )


def test_segmentation_card_shows_foreground_fraction_per_label_as_split_aggregates(measured):
    phase, cases = measured
    html = _page(phase)
    table = re.search(r'<table id="foreground">(.*?)</table>', html, re.S)
    assert table, "no foreground table"
    for label, name in ((1, "organ"), (2, "lesion")):
        row = re.search(rf'<tr data-label="{label}">(.*?)</tr>', table.group(1), re.S)
        assert row and f"{label}: {name}" in row.group(1)
        for split in ("train", "test"):
            fractions = [
                np.count_nonzero(mask == label) / mask.size
                for s, mask, _ in cases.values()
                if s == split
            ]
            mean, lo, hi = np.mean(fractions), min(fractions), max(fractions)
            cells = row.group(1)
            assert f'<td class="num" data-split="{split}">{_pct(mean)}</td>' in cells
            assert f'<td class="num">{_pct(lo)} {D} {_pct(hi)}</td>' in cells
    # The test split is described only as a whole: no test case id on the page.
    assert not any(c in html for c, (s, _, _) in cases.items() if s == "test")


def test_empty_mask_scores_are_what_submitting_empty_masks_scores(measured, tmp_path):
    phase, cases = measured
    # Submit an empty mask for every test case, on the reference's grid, to the evaluator.
    empty = tmp_path / "empty-masks"
    empty.mkdir()
    for case_id, (split, mask, spacing) in cases.items():
        if split == "test":
            write_nifti(empty / f"{case_id}.nii.gz", np.zeros_like(mask), spacing)
    label_file = Case.objects.filter(dataset=phase.dataset, split="test").first().label_file
    reference = Path(settings.SCANBENCH_PRIVATE_ROOT) / Path(label_file).parent
    report = score(
        "segmentation",
        reference,
        empty,
        options=ScoreOptions(
            labels=[1, 2], metrics=phase.metrics, nsd_tolerance=phase.nsd_tolerance_mm,
            bootstrap=1000,
        ),
    )  # fmt: skip
    stored = phase.dataset.summary["empty_mask"]
    assert stored["cases"] == 3
    for name in ALL_SEGMENTATION:
        assert stored["metrics"][name] == pytest.approx(report.aggregates[name], abs=1e-12), name
    # worst values for distances (the reference diagonal), 0 overlap, 1 where both are empty
    assert report.aggregates["dice"] == pytest.approx(1 / 3)
    assert report.aggregates["hd95"] > 0
    card = _section(_page(phase), phase.slug)
    line = re.search(r'<p class="empty-mask">(.*?)</p>', card, re.S)
    assert line and "3 test cases" in line.group(1)
    for name in ALL_SEGMENTATION:
        value = f"{report.aggregates[name]:.4f}"
        unit = " mm" if SEGMENTATION_METRICS[name].unit == "mm" else ""
        assert f"<code>{name}</code> {value}{unit}</span>" in line.group(1), name


@pytest.mark.django_db
def test_factory_phases_are_measured_too(tmp_path):
    phase, _ = segmentation_phase(tmp_path, n_cases=4, shape=(24, 20, 10))
    html = _page(phase)
    assert f"<td>24 {X} 20 {X} 10</td><td>0.8 {X} 0.8 {X} 2.5 mm</td>" in html
    assert '<p class="empty-mask">' in _section(html, phase.slug)


@pytest.mark.django_db
def test_data_imported_before_summaries_shows_the_card_without_the_measured_rows(tmp_path):
    phase, _ = segmentation_phase(tmp_path, n_cases=4, shape=(24, 20, 10))
    Dataset.objects.filter(pk=phase.dataset_id).update(summary={})
    html = _page(phase)
    cases = _section(html, "cases-and-labels")
    assert re.search(r"<td>test</td><td class=\"num\">4</td>", cases)
    assert 'id="image-grid"' not in html and 'id="foreground"' not in html
    assert 'class="empty-mask"' not in html
