"""`python manage.py export_challenge`: an exported bundle imports back into the same challenge,
data set, cases (with the bytes of every file) and phases; without test labels it holds none."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import CommandError, call_command

from challenges.models import Case, CaseSplit, Challenge, Dataset, Phase
from challenges.services.bundle_export import (
    BundleExportError,
    bundle_export_losses,
    challenge_export_bundle,
    challenge_export_zip,
)
from challenges.services.bundles import draw_leaderboard_parts

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "synthetic-lesions"


@pytest.fixture(autouse=True)
def storage(settings: Any, tmp_path: Path) -> None:
    """The test's own storage roots, so that what an export reads and writes is its own."""
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha(p) for p in folder.rglob("*") if p.is_file()}


def _stored(root: Path, rel: str) -> str:
    return _sha(root / rel) if rel else ""


def _fields(obj: Any, leave_out: set[str]) -> dict[str, Any]:
    return {
        f.name: getattr(obj, f.attname)
        for f in type(obj)._meta.concrete_fields
        if f.name not in leave_out
    }


def _state(slug: str) -> dict[str, Any]:
    """Everything an import writes, with stored files as their sha256 (their paths hold the
    bundle's digest, which differs between the original and the export)."""
    media = Path(settings.MEDIA_ROOT)
    private = Path(settings.SCANBENCH_PRIVATE_ROOT)
    challenge = Challenge.objects.get(slug=slug)
    dataset = Dataset.objects.get(challenge=challenge)
    ds = _fields(dataset, {"id", "challenge", "input_table", "starting_kit"})
    ds["input_table"] = _stored(media, dataset.input_table)
    ds["starting_kit"] = _tree(media / dataset.starting_kit) if dataset.starting_kit else {}
    cases = [
        (
            c.case_id,
            c.split,
            c.leaderboard_part,
            c.label,
            _stored(media, c.input_file),
            _stored(private if c.split == CaseSplit.TEST else media, c.label_file),
        )
        for c in Case.objects.filter(dataset=dataset).order_by("case_id")
    ]
    phases = {
        p.slug: {
            **_fields(p, {"id", "challenge", "dataset", "scoring_program", "reference_data"}),
            "scoring_program": _tree(private / p.scoring_program) if p.scoring_program else {},
            "reference_data": _tree(private / p.reference_data) if p.reference_data else {},
        }
        for p in Phase.objects.filter(challenge=challenge)
    }
    return {
        "challenge": _fields(challenge, {"id", "created_at", "updated_at"}),
        "dataset": ds,
        "cases": cases,
        "phases": phases,
    }


def _every_phase_field(bundle: Path) -> None:
    """Add to the bundle a second phase with every field away from its default, terms, a
    data-set description and the published state, so the round trip carries them all."""
    path = bundle / "challenge.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    metrics = list(data["phases"][0]["metrics"])
    data["terms"] = "Use the data only for this challenge.\nDo not redistribute it."
    data["published"] = True
    data["dataset"]["description"] = "All cases, one data set."
    data["phases"].append(
        {
            "slug": "final",
            "title": "Final phase",
            "description": "Models only.\n\nScored once.",
            "submission_kind": "model",
            "opens": "2026-03-01T12:30:00Z",
            "closes": "2026-04-01",
            "daily_limit": 2,
            "total_limit": 7,
            "metrics": metrics[:2],
            "primary_metric": metrics[1],
            "direction": "lower",
            "ranking": "rank_then_aggregate",
            "entry_selection": "latest",
            "ladder": True,
            "threshold": 0.35,
            "nsd_tolerance_mm": 1.25,
            "time_limit_s": 120,
            "memory_limit_mb": 1024,
            "gpus": 1,
            "input_spec": {"size": [16, 16], "channels": 1, "scaling": "zscore"},
            "show_case_results": False,
        }
    )
    # a phase scored by the organizers' own program (reference: the test labels by default)
    data["phases"].append(
        {
            "slug": "program",
            "title": "Scored by a program",
            "opens": "2026-05-01T00:00:00Z",
            "scoring_program": "scorer",
            "metrics": ["quality", "seconds"],
            "columns": [
                {"key": "quality", "title": "Quality", "sorting": "desc", "precision": 2},
                {"key": "seconds", "title": "Run time", "sorting": "asc", "hidden": True},
            ],
        }
    )
    (bundle / "scorer").mkdir()
    (bundle / "scorer" / "metadata.yaml").write_text("command: python3 $program/s.py\n")
    (bundle / "scorer" / "s.py").write_text("print('scores')\n")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")


def _synthetic(tmp_path: Path, task: str, shape: str) -> Path:
    slug = f"rt-{task}"
    call_command(
        "make_synthetic_challenge",
        "--task", task, "--cases", "12", "--shape", shape, "--slug", slug, "--seed", "3",
        "--out", str(tmp_path / "made"),
        stdout=io.StringIO(),
    )  # fmt: skip
    return tmp_path / "made" / slug


def _bundle(tmp_path: Path, kind: str) -> Path:
    if kind == "example":
        dest = tmp_path / "original"
        shutil.copytree(EXAMPLE, dest)
    elif kind == "classification-images":
        dest = _synthetic(tmp_path, "classification", "8x8")
    elif kind == "segmentation-2d":
        dest = _synthetic(tmp_path, "segmentation2d", "16x16")
    else:
        dest = _synthetic(tmp_path, "segmentation3d", "12x10x6")
    _every_phase_field(dest)
    return dest


def _slug(bundle: Path) -> str:
    return str(yaml.safe_load((bundle / "challenge.yaml").read_text(encoding="utf-8"))["slug"])


def _forget(slug: str) -> None:
    """Delete the challenge and its rows (phases first: they protect their data set)."""
    Phase.objects.filter(challenge__slug=slug).delete()
    Challenge.objects.filter(slug=slug).delete()


def _import(path: Path) -> None:
    call_command("import_challenge", str(path), stdout=io.StringIO())


KINDS = ["example", "classification-images", "segmentation-2d", "segmentation-3d"]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", KINDS)
def test_an_exported_bundle_imports_back_into_the_same_challenge(tmp_path, kind):
    bundle = _bundle(tmp_path, kind)
    _import(bundle)
    slug = _slug(bundle)
    before = _state(slug)
    challenge = Challenge.objects.get(slug=slug)
    assert bundle_export_losses(challenge=challenge) == []

    out = challenge_export_bundle(challenge=challenge, out=tmp_path / "export")
    # A fresh state: the challenge and its rows are gone before the export is imported.
    _forget(slug)
    assert not Case.objects.exists() and not Phase.objects.exists()
    _import(out)

    after = _state(slug)
    assert after["challenge"] == before["challenge"]
    assert after["dataset"] == before["dataset"]
    assert after["cases"] == before["cases"]
    assert after["phases"] == before["phases"]
    assert len(before["phases"]) == 3 and len(before["cases"]) >= 12


@pytest.mark.django_db
def test_an_exported_zip_imports_back_like_the_folder(tmp_path):
    bundle = _bundle(tmp_path, "segmentation-3d")
    _import(bundle)
    slug = _slug(bundle)
    before = _state(slug)
    out = tmp_path / "export.zip"
    call_command("export_challenge", slug, str(out), "--zip", stdout=io.StringIO())
    _forget(slug)
    _import(out)
    assert _state(slug) == before


@pytest.mark.django_db
def test_the_manifest_lists_the_documented_keys_in_order(tmp_path):
    _import(_bundle(tmp_path, "example"))
    challenge = Challenge.objects.get(slug="synthetic-lesions")
    out = challenge_export_bundle(challenge=challenge, out=tmp_path / "export")
    data = yaml.safe_load((out / "challenge.yaml").read_text(encoding="utf-8"))
    assert list(data) == [
        "slug", "title", "summary", "task", "classes", "input", "output", "licence",
        "attribution", "published", "requires_approval", "terms", "starting_kit", "dataset",
        "phases",
    ]  # fmt: skip
    assert list(data["dataset"]) == [
        "slug", "description", "cases", "inputs", "public_fraction", "seed",
    ]  # fmt: skip
    assert [p["slug"] for p in data["phases"]] == ["open", "final", "program"]
    assert data["phases"][1]["opens"] == "2026-03-01T12:30:00Z"
    assert data["phases"][1]["closes"] == "2026-04-01T00:00:00Z"
    assert sorted(p.name for p in out.iterdir()) == [
        "cases.csv", "challenge.yaml", "features.csv", "programs", "starting-kit",
    ]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["example", "segmentation-2d"])
def test_exporting_twice_gives_the_same_bytes(tmp_path, kind):
    bundle = _bundle(tmp_path, kind)
    _import(bundle)
    challenge = Challenge.objects.get(slug=_slug(bundle))
    first = challenge_export_bundle(challenge=challenge, out=tmp_path / "first")
    second = challenge_export_bundle(challenge=challenge, out=tmp_path / "second")
    assert (first / "challenge.yaml").read_bytes() == (second / "challenge.yaml").read_bytes()
    assert _tree(first) == _tree(second)
    zip_a = challenge_export_zip(challenge=challenge, out=tmp_path / "a.zip")
    zip_b = challenge_export_zip(challenge=challenge, out=tmp_path / "b.zip")
    assert zip_a.read_bytes() == zip_b.read_bytes()


@pytest.mark.django_db
def test_without_test_labels_no_classification_label_of_a_test_case_is_written(tmp_path):
    bundle = _bundle(tmp_path, "example")
    _import(bundle)
    out = tmp_path / "shared"
    stdout = io.StringIO()
    call_command(
        "export_challenge", "synthetic-lesions", str(out), "--without-test-labels", stdout=stdout
    )
    assert "test labels left out" in stdout.getvalue()
    with (out / "cases.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    test = [r for r in rows if r["split"] == "test"]
    assert len(test) == 80 and all(r["label"] == "" for r in test)
    assert all(r["label"] in {"0", "1"} for r in rows if r["split"] == "train")
    with (out / "features.csv").open(newline="", encoding="utf-8") as fh:
        assert "label" not in (csv.DictReader(fh).fieldnames or [])
    # The importer refuses it, naming the cases without a label.
    _forget("synthetic-lesions")
    with pytest.raises(CommandError, match=r"label '' is not a class index"):
        _import(out)
    assert not Challenge.objects.exists()


@pytest.mark.django_db
def test_without_test_labels_no_test_mask_is_written(tmp_path):
    bundle = _bundle(tmp_path, "segmentation-3d")
    _import(bundle)
    slug = _slug(bundle)
    media = Path(settings.MEDIA_ROOT)
    train_masks = {
        f"{c.case_id}.nii.gz": _sha(media / c.label_file)
        for c in Case.objects.filter(split=CaseSplit.TRAIN)
    }
    test_ids = set(Case.objects.filter(split=CaseSplit.TEST).values_list("case_id", flat=True))
    assert train_masks and test_ids
    out = challenge_export_zip(
        challenge=Challenge.objects.get(slug=slug),
        out=tmp_path / "shared.zip",
        include_test_labels=False,
    )
    unpacked = tmp_path / "unpacked"
    shutil.unpack_archive(out, unpacked)
    # The masks written are exactly the train masks; a test case has its image only.
    assert _tree(unpacked / "labels") == train_masks
    named = {p.name.split(".")[0] for p in unpacked.rglob("*") if p.is_file()}
    assert {
        p.relative_to(unpacked).parts[0]
        for p in unpacked.rglob("*")
        if p.is_file() and p.name.split(".")[0] in test_ids
    } == {"inputs"}
    assert test_ids <= named
    # the program-scored phase's reference (the test masks by default) is left out too
    reference = unpacked / "programs" / "program" / "reference"
    assert not reference.exists() or not any(reference.rglob("*"))
    assert (unpacked / "programs" / "program" / "program" / "metadata.yaml").is_file()
    _forget(slug)
    with pytest.raises(CommandError, match=r"no label mask in labels/"):
        _import(out)


@pytest.mark.django_db
def test_parts_approval_and_release_come_back_though_the_draw_would_differ(tmp_path):
    bundle = _bundle(tmp_path, "example")
    _import(bundle)
    challenge = Challenge.objects.get(slug="synthetic-lesions")
    dataset = Dataset.objects.get(challenge=challenge)
    # An organizer re-imported with another seed: the drawn parts stayed, the seed changed, so
    # the seeded draw no longer gives the stored parts.
    Dataset.objects.filter(pk=dataset.pk).update(split_seed=99)
    Phase.objects.filter(slug="final").update(private_release="manual")
    Challenge.objects.filter(pk=challenge.pk).update(requires_approval=True)
    parts = dict(
        Case.objects.filter(dataset=dataset, split="test").values_list(
            "case_id", "leaderboard_part"
        )
    )
    drawn = draw_leaderboard_parts(sorted(parts), dataset.public_fraction, 99)
    assert drawn != parts
    challenge.refresh_from_db()
    assert bundle_export_losses(challenge=challenge) == []
    out = tmp_path / "x"
    stdout = io.StringIO()
    call_command("export_challenge", "synthetic-lesions", str(out), stdout=stdout)
    assert "not carried by the bundle" not in stdout.getvalue()
    _forget("synthetic-lesions")
    _import(out)
    again = Challenge.objects.get(slug="synthetic-lesions")
    assert again.requires_approval is True
    assert Phase.objects.get(challenge=again, slug="final").private_release == "manual"
    assert (
        dict(
            Case.objects.filter(dataset__challenge=again, split="test").values_list(
                "case_id", "leaderboard_part"
            )
        )
        == parts
    )


@pytest.mark.django_db
def test_an_explicit_part_on_a_train_case_is_refused(tmp_path):
    bundle = _bundle(tmp_path, "example")
    cases = bundle / "cases.csv"
    lines = cases.read_text().splitlines()
    lines[0] += ",leaderboard_part"
    lines[1:] = [f"{line},public" if ",train," in line + "," else line + "," for line in lines[1:]]
    cases.write_text("\n".join(lines) + "\n")
    with pytest.raises(CommandError, match="leaderboard_part 'public' must be public or private"):
        _import(bundle)


@pytest.mark.django_db
def test_export_never_overwrites(tmp_path):
    _import(_bundle(tmp_path, "example"))
    challenge = Challenge.objects.get(slug="synthetic-lesions")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(BundleExportError, match="not overwritten"):
        challenge_export_bundle(challenge=challenge, out=tmp_path / "busy")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with pytest.raises(CommandError, match="no challenge 'nope'"):
        call_command("export_challenge", "nope", str(tmp_path / "y"))
