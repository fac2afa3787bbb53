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
        for p in bundle.iterdir():
            zf.write(p, f"synthetic-lesions/{p.name}")
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
