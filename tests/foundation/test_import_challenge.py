"""`python manage.py import_challenge`: a good bundle creates everything, a bad one changes
nothing and names the file and the field."""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command

from challenges.models import Case, Challenge, Phase

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "synthetic-lesions"


def _snapshot() -> tuple:
    return (
        sorted(Challenge.objects.values_list("slug", "title", "updated_at")),
        sorted(Phase.objects.values_list("slug", "daily_limit", "opens_at")),
        sorted(Case.objects.values_list("case_id", "split", "leaderboard_part", "label")),
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(EXAMPLE, dest)
    return dest


def _edit_manifest(bundle: Path, edit) -> None:
    path = bundle / "challenge.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))


def _import(path: Path) -> None:
    call_command("import_challenge", str(path))


@pytest.mark.django_db
def test_example_bundle_creates_challenge_phases_and_cases(bundle):
    _import(bundle)
    challenge = Challenge.objects.get(slug="synthetic-lesions")
    assert challenge.task_type == "classification"
    assert challenge.classes == ["no lesion", "lesion"]
    assert challenge.is_published is False  # new challenges start unpublished
    phase = challenge.phases.get()
    assert phase.primary_metric == "auc_roc" and phase.primary_direction == "higher"
    cases = Case.objects.filter(dataset__challenge=challenge)
    assert cases.filter(split="train").count() == 120
    test = cases.filter(split="test")
    assert test.count() == 80
    assert test.filter(leaderboard_part="public").count() == 24  # 30 % of 80
    assert not cases.filter(split="train").exclude(leaderboard_part="").exists()


@pytest.mark.django_db
def test_reimport_updates_in_place_and_keeps_the_drawn_parts(bundle):
    _import(bundle)
    parts = dict(Case.objects.filter(split="test").values_list("case_id", "leaderboard_part"))
    # An organizer fixes the title and changes the seed: the parts, once drawn, stay.
    _edit_manifest(bundle, lambda d: d.update(title="Fixed title") or d["dataset"].update(seed=99))
    _import(bundle)
    assert Challenge.objects.count() == 1 and Phase.objects.count() == 1
    assert Challenge.objects.get().title == "Fixed title"
    assert Case.objects.count() == 200
    assert (
        dict(Case.objects.filter(split="test").values_list("case_id", "leaderboard_part")) == parts
    )


@pytest.mark.django_db
def test_zipped_bundle_imports_like_a_folder(bundle, tmp_path):
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(bundle.rglob("*")):
            if p.is_file():
                zf.write(p, f"synthetic-lesions/{p.relative_to(bundle).as_posix()}")
    _import(archive)
    assert Case.objects.count() == 200


def _missing_title(d):
    del d["title"]


def _bad_date(d):
    d["phases"][0]["opens"] = "31/01/2026"


def _closes_before_opening(d):
    d["phases"][0]["closes"] = "2025-01-01"


def _unknown_metric(d):
    d["phases"][0]["metrics"] = ["auc_roc", "dice"]


def _bad_task(d):
    d["task"] = "detection"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_missing_title, "challenge.yaml: title: missing required field"),
        (_bad_date, "challenge.yaml: phases[0].opens: '31/01/2026' is not a date"),
        (_closes_before_opening, "challenge.yaml: phases[0].closes: the phase closes before"),
        (
            _unknown_metric,
            "challenge.yaml: phases[0].metrics[1]: unknown classification metric 'dice'",
        ),
        (_bad_task, "challenge.yaml: task: 'detection' is not one of classification, segmentation"),
    ],
)
def test_broken_manifest_names_file_and_field_and_changes_nothing(bundle, edit, expected):
    _import(EXAMPLE)  # something already stored that must survive
    before = _snapshot()
    _edit_manifest(bundle, lambda d: d.update(title="Changed") or edit(d))
    with pytest.raises(CommandError) as err:
        _import(bundle)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)
    assert _snapshot() == before


@pytest.mark.django_db
def test_bad_label_in_cases_file_names_line_and_case(bundle):
    text = (bundle / "cases.csv").read_text().splitlines()
    case_id = text[5].split(",")[0]
    text[5] = f"{case_id},test,7"
    (bundle / "cases.csv").write_text("\n".join(text) + "\n")
    with pytest.raises(CommandError, match=rf"cases.csv: line 6: case '{case_id}': label '7'"):
        _import(bundle)
    assert Challenge.objects.count() == 0


def _zip_with(tmp_path: Path, name: str, add) -> Path:
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in EXAMPLE.iterdir():
            zf.write(p, p.name)
        add(zf)
    return archive


def _symlink_entry(zf: zipfile.ZipFile) -> None:
    info = zipfile.ZipInfo("features_link.csv")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, "/etc/passwd")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("add", "expected"),
    [
        (lambda zf: zf.writestr("/etc/evil.csv", "x"), "'/etc/evil.csv': absolute path"),
        (lambda zf: zf.writestr("../../evil.csv", "x"), "'../../evil.csv': '..' in the path"),
        (_symlink_entry, "'features_link.csv': symbolic links are not allowed"),
        (
            lambda zf: zf.writestr("padding.bin", b"\0" * (3 * 1024 * 1024)),
            "'padding.bin': uncompressed size 3145728 bytes is over the limit",
        ),
    ],
    ids=["absolute", "dotdot", "symlink", "too-large"],
)
def test_unsafe_zip_is_refused_before_extraction(tmp_path, settings, add, expected):
    settings.SCANBENCH_MAX_UNZIPPED_BYTES = 2 * 1024 * 1024
    archive = _zip_with(tmp_path, "evil.zip", add)
    with pytest.raises(CommandError, match=re.escape(expected)) as err:
        _import(archive)
    assert "evil.zip" in str(err.value)
    assert Challenge.objects.count() == 0
    assert not (tmp_path.parent / "evil.csv").exists()


@pytest.mark.django_db
def test_not_a_bundle_is_refused_clearly(tmp_path):
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    with pytest.raises(CommandError, match="neither a folder nor a zip archive"):
        _import(junk)
    with pytest.raises(CommandError, match="no such file or folder"):
        _import(tmp_path / "missing")


def test_command_exits_non_zero_with_one_line(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "challenge.yaml").write_text("slug: x\n")
    proc = subprocess.run(
        [sys.executable, "manage.py", "import_challenge", str(tmp_path)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        env={**os.environ},
    )
    assert proc.returncode != 0
    assert "challenge.yaml: task: missing required field" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- the starting kit and the measured summary ---------------------------------------------------


@pytest.mark.django_db
def test_example_bundle_stores_its_starting_kit_and_class_counts(bundle, settings):
    _import(bundle)
    dataset = Challenge.objects.get(slug="synthetic-lesions").datasets.get()
    kit = Path(settings.MEDIA_ROOT) / dataset.starting_kit
    assert sorted(p.name for p in kit.iterdir()) == ["README.md", "make_submission.py"]
    summary = dataset.summary
    assert summary["task"] == "classification"
    assert summary["splits"]["train"]["cases"] == 120
    assert summary["splits"]["test"]["cases"] == 80
    labels = list(
        Case.objects.filter(dataset=dataset, split="test").values_list("label", flat=True)
    )
    assert summary["splits"]["test"]["classes"] == {"0": labels.count("0"), "1": labels.count("1")}


def _kit_outside(bundle: Path) -> str:
    (bundle.parent / "elsewhere").mkdir()
    (bundle.parent / "elsewhere" / "x.py").write_text("print(1)\n")
    return "../elsewhere"


def _kit_with_link(bundle: Path) -> str:
    (bundle / "starting-kit" / "secrets").symlink_to("/etc/passwd")
    return "starting-kit"


def _kit_too_large(bundle: Path) -> str:
    (bundle / "starting-kit" / "weights.bin").write_bytes(b"\0" * 40_000)
    return "starting-kit"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_kit_outside, "starting_kit: ../elsewhere: not a folder inside the bundle"),
        (lambda b: "nothing-here", "starting_kit: nothing-here: no such folder in the bundle"),
        (lambda b: ".", "starting_kit: .: the kit cannot be the whole bundle"),
        (_kit_with_link, "starting-kit/secrets: links are not allowed in a bundle"),
        (_kit_too_large, "starting_kit: starting-kit: larger than 30000 bytes"),
    ],
    ids=["outside", "missing", "whole-bundle", "symlink", "too-large"],
)
def test_a_bad_starting_kit_is_refused_naming_the_field(bundle, settings, make, expected):
    settings.SCANBENCH_MAX_STARTING_KIT_BYTES = 30_000
    name = make(bundle)
    _edit_manifest(bundle, lambda d: d.update(starting_kit=name))
    with pytest.raises(CommandError, match=re.escape(expected)):
        _import(bundle)
    assert Challenge.objects.count() == 0


@pytest.mark.django_db
def test_a_starting_kit_holding_the_test_data_is_refused(bundle):
    (bundle / "kit").mkdir()
    shutil.move(bundle / "cases.csv", bundle / "kit" / "cases.csv")
    _edit_manifest(bundle, lambda d: d.update(starting_kit="kit") or d["dataset"].update(
        cases="kit/cases.csv"
    ))  # fmt: skip
    with pytest.raises(CommandError, match=r"starting_kit: kit: overlaps kit/cases.csv"):
        _import(bundle)
    assert Challenge.objects.count() == 0


def _segmentation_bundle(folder: Path) -> Path:
    import numpy as np

    from evaluator.synthetic import write_nifti

    (folder / "labels").mkdir(parents=True)
    rows = ["case_id,split"]
    for i in range(4):
        case_id = f"seg{i}"
        rows.append(f"{case_id},{'train' if i < 2 else 'test'}")
        mask = np.zeros((10, 8, 4), dtype=np.uint8)
        mask[2:5, 2:4, 1:3] = 1
        write_nifti(folder / "labels" / f"{case_id}.nii.gz", mask, (1.0, 1.0, 2.0))
    (folder / "cases.csv").write_text("\n".join(rows) + "\n")
    manifest = {
        "slug": "seg-measured", "title": "Seg", "summary": "Boxes.", "task": "segmentation",
        "classes": ["box"], "licence": "CC0 1.0", "attribution": "Generated.",
        "dataset": {"cases": "cases.csv", "labels": "labels"},
        "phases": [{"slug": "open", "title": "Open", "metrics": ["dice", "hd95"]}],
    }  # fmt: skip
    (folder / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    return folder


@pytest.mark.django_db
def test_an_unreadable_mask_is_refused_at_import_naming_file_and_case(tmp_path):
    bundle = _segmentation_bundle(tmp_path / "seg")
    (bundle / "labels" / "seg3.nii.gz").write_bytes(b"not a nifti file")
    with pytest.raises(CommandError, match=r"seg3.nii.gz: case 'seg3': .*\(label mask\)"):
        _import(bundle)
    assert Challenge.objects.count() == 0


@pytest.mark.django_db
def test_dataset_summary_command_measures_data_imported_without_one(tmp_path):
    _import(_segmentation_bundle(tmp_path / "seg"))
    dataset = Challenge.objects.get(slug="seg-measured").datasets.get()
    measured = dataset.summary
    assert measured["splits"]["test"]["shape"] == {"min": [10, 8, 4], "max": [10, 8, 4]}
    dataset.summary = {}
    dataset.save()
    call_command("dataset_summary", "seg-measured")
    dataset.refresh_from_db()
    assert dataset.summary == measured
    with pytest.raises(CommandError, match="no challenge 'nope'"):
        call_command("dataset_summary", "nope")


@pytest.mark.django_db
def test_command_lists_every_problem_of_the_data_one_per_line(tmp_path):
    bundle = _segmentation_bundle(tmp_path / "seg")
    (bundle / "labels" / "seg3.nii.gz").write_bytes(b"not a nifti file")
    (bundle / "labels" / "seg1.nii.gz").unlink()
    with pytest.raises(CommandError) as err:
        _import(bundle)
    lines = str(err.value).splitlines()
    assert lines[0].endswith("2 problems:")
    assert lines[1] == "case 'seg1': no label mask in labels/"
    assert lines[2].startswith("seg3.nii.gz: case 'seg3': ")
    assert Challenge.objects.count() == 0
