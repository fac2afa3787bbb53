"""The importer refuses imaging data that cannot be scored, listing every problem (each naming
the case and both values) and changing nothing; a re-import keeps one copy of the data; new
challenges start unpublished; the dry run of an upload writes only its record."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from challenges.models import BundleUpload, Case, Challenge, Dataset, OrganizerAction, Phase
from challenges.services.bundle_uploads import BundleUploadRefused, bundle_upload_check
from challenges.services.bundles import MAX_PROBLEMS, BundleError, challenge_import_bundle
from evaluator.synthetic import write_nifti
from tests.factories import UserFactory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "synthetic-lesions"
SHAPE = (12, 10, 6)
SPACING = (0.8, 0.8, 2.5)


@pytest.fixture
def storage(settings, tmp_path: Path) -> Path:
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"
    return tmp_path / "var"


def seg_bundle(
    folder: Path,
    *,
    slug: str = "lesion-seg",
    n: int = 4,
    classes: tuple[str, ...] = ("liver", "tumour"),
    **manifest_extra: Any,
) -> Path:
    """A small segmentation bundle: a NIfTI image and mask per case, on the same grid."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    rng = np.random.default_rng(5)
    rows = ["case_id,split"]
    for i in range(n):
        case_id = f"lesion_{i:03d}"
        rows.append(f"{case_id},{'train' if i < n // 2 else 'test'}")
        image = rng.normal(size=SHAPE).astype(np.float32)
        mask = np.zeros(SHAPE, dtype=np.uint8)
        mask[3:7, 2:6, 1:4] = 1
        mask[4:5, 3:4, 2:3] = len(classes)
        write_nifti(folder / "images" / f"{case_id}.nii.gz", image, SPACING)
        write_nifti(folder / "labels" / f"{case_id}.nii.gz", mask, SPACING)
    (folder / "cases.csv").write_text("\n".join(rows) + "\n")
    manifest = {
        "slug": slug, "title": "Lesions", "summary": "Find them.", "task": "segmentation",
        "classes": list(classes), "licence": "CC0 1.0", "attribution": "Generated.",
        "dataset": {"cases": "cases.csv", "inputs": "images", "labels": "labels"},
        "phases": [{"slug": "open", "title": "Open", "metrics": ["dice", "hd95"]}],
        **manifest_extra,
    }  # fmt: skip
    (folder / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    return folder


def _mask(bundle: Path, case_id: str, data: np.ndarray, spacing=SPACING, affine=None) -> None:
    path = bundle / "labels" / f"{case_id}.nii.gz"
    if affine is None:
        write_nifti(path, data, spacing)
    else:
        import nibabel as nib

        nib.save(nib.Nifti1Image(data, affine), str(path))


def _box(shape=SHAPE, label: int = 1) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    mask[3:7, 2:6, 1:4] = label
    return mask


def _state(storage: Path) -> tuple:
    """Every row the import writes and every file under the storage roots."""
    files = (
        sorted(str(p.relative_to(storage)) for p in storage.rglob("*")) if storage.exists() else []
    )
    return (
        sorted(Challenge.objects.values_list("slug", "title", "is_published")),
        sorted(Dataset.objects.values_list("slug", "input_table", "starting_kit")),
        sorted(Phase.objects.values_list("slug", "title")),
        sorted(Case.objects.values_list("case_id", "split", "input_file", "label_file")),
        BundleUpload.objects.count(),
        files,
    )


def _other_shape(b: Path) -> None:
    _mask(b, "lesion_003", _box((12, 10, 5)))


def _other_spacing(b: Path) -> None:
    _mask(b, "lesion_001", _box(), spacing=(0.8, 0.8, 3.0))


def _other_orientation(b: Path) -> None:
    affine = np.diag([-0.8, 0.8, 2.5, 1.0])
    _mask(b, "lesion_002", _box(), affine=affine)


def _undeclared_label(b: Path) -> None:
    _mask(b, "lesion_000", _box(label=3))


def _missing_image(b: Path) -> None:
    (b / "images" / "lesion_002.nii.gz").unlink()


def _duplicated_id(b: Path) -> None:
    with (b / "cases.csv").open("a") as fh:
        fh.write("lesion_001,test\n")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("spoil", "expected"),
    [
        (_other_shape, "case lesion_003: mask shape 12x10x5 differs from image shape 12x10x6"),
        (
            _other_spacing,
            "case lesion_001: mask spacing (0.8, 0.8, 3) mm differs from image spacing "
            "(0.8, 0.8, 2.5) mm",
        ),
        (
            _other_orientation,
            "case lesion_002: mask orientation LAS differs from image orientation RAS",
        ),
        (
            _undeclared_label,
            "case lesion_000: mask holds label 3, the bundle declares labels 0..2 "
            "(background, liver, tumour)",
        ),
        (_missing_image, "case 'lesion_002': no image in images/"),
        (
            _duplicated_id,
            "cases.csv: line 6: duplicate case_id 'lesion_001' (first listed on line 3)",
        ),
    ],
    ids=["shape", "spacing", "orientation", "label", "missing-image", "duplicate-id"],
)  # fmt: skip
def test_unscorable_data_is_refused_naming_case_and_both_values(
    storage, tmp_path, spoil: Callable[[Path], None], expected: str
):
    challenge_import_bundle(path=seg_bundle(tmp_path / "other", slug="other"))  # must survive
    before = _state(storage)
    bundle = seg_bundle(tmp_path / "bundle")
    spoil(bundle)
    with pytest.raises(BundleError) as err:
        challenge_import_bundle(path=bundle)
    assert err.value.problems == [expected]
    assert str(err.value) == expected
    assert _state(storage) == before


@pytest.mark.django_db
def test_every_problem_is_listed_not_only_the_first(storage, tmp_path):
    bundle = seg_bundle(tmp_path / "bundle")
    for spoil in (_other_shape, _other_spacing, _undeclared_label, _missing_image):
        spoil(bundle)
    with pytest.raises(BundleError) as err:
        challenge_import_bundle(path=bundle)
    problems = err.value.problems
    assert len(problems) == 4
    assert [p.split(":")[0] for p in problems] == [
        "case 'lesion_002'", "case lesion_000", "case lesion_001", "case lesion_003",
    ]  # fmt: skip
    assert str(err.value).startswith("4 problems:\n")
    assert Challenge.objects.count() == 0


@pytest.mark.django_db
def test_problems_are_capped(storage, tmp_path):
    bundle = seg_bundle(tmp_path / "bundle", n=MAX_PROBLEMS + 6)
    for p in (bundle / "images").iterdir():
        p.unlink()
    with pytest.raises(BundleError) as err:
        challenge_import_bundle(path=bundle)
    assert len(err.value.problems) == MAX_PROBLEMS + 1
    assert err.value.problems[-1] == "... and 6 more problem(s) not listed"


@pytest.mark.django_db
def test_classification_cases_are_checked_together(storage, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(EXAMPLE, bundle)
    lines = (bundle / "cases.csv").read_text().splitlines()
    first, second = lines[1].split(",")[0], lines[2].split(",")[0]
    lines[2] = f"{second},test,5"
    lines.append(f"{first},train,0")
    lines.append("ghost,test,1")
    (bundle / "cases.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(BundleError) as err:
        challenge_import_bundle(path=bundle)
    n = len(lines)
    assert err.value.problems == [
        f"cases.csv: line 3: case '{second}': label '5' is not a class index 0..1 "
        "(no lesion, lesion)",
        f"cases.csv: line {n - 1}: duplicate case_id '{first}' (first listed on line 2)",
        "features.csv: case 'ghost': no input row",
    ]
    assert Challenge.objects.count() == 0


def _copies(root: Path, slug: str) -> list[str]:
    folder = root / "challenges" / slug / "main"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.django_db
def test_reimport_keeps_exactly_one_copy_of_the_data(
    storage, tmp_path, settings, django_capture_on_commit_callbacks
):
    bundle = seg_bundle(tmp_path / "bundle")
    for title in ("First", "Second", "Third"):
        manifest = yaml.safe_load((bundle / "challenge.yaml").read_text())
        manifest["title"] = title
        (bundle / "challenge.yaml").write_text(yaml.safe_dump(manifest))
        with django_capture_on_commit_callbacks(execute=True):
            challenge_import_bundle(path=bundle)
        media = _copies(Path(settings.MEDIA_ROOT), "lesion-seg")
        private = _copies(Path(settings.SCANBENCH_PRIVATE_ROOT), "lesion-seg")
        assert len(media) == 1 and media == private
    # the rows point at the one copy, and its files are there
    case = Case.objects.get(case_id="lesion_003")
    assert media[0] in case.label_file
    assert (Path(settings.SCANBENCH_PRIVATE_ROOT) / case.label_file).is_file()
    assert (Path(settings.MEDIA_ROOT) / case.input_file).is_file()
    # importing the same bundle again leaves the copy as it is
    with django_capture_on_commit_callbacks(execute=True):
        challenge_import_bundle(path=bundle)
    assert _copies(Path(settings.MEDIA_ROOT), "lesion-seg") == media


@pytest.mark.django_db
def test_new_challenges_start_unpublished_and_reimport_keeps_the_state(storage, tmp_path):
    bundle = seg_bundle(tmp_path / "bundle")
    challenge = challenge_import_bundle(path=bundle).challenge
    assert challenge.is_published is False
    Challenge.objects.filter(pk=challenge.pk).update(is_published=True)
    challenge_import_bundle(path=bundle)
    assert Challenge.objects.get().is_published is True  # the organizer's choice stays
    manifest = yaml.safe_load((bundle / "challenge.yaml").read_text())
    manifest["published"] = False
    (bundle / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    challenge_import_bundle(path=bundle)
    assert Challenge.objects.get().is_published is False  # unless the bundle says


@pytest.mark.django_db
def test_bundle_published_true_publishes_a_new_challenge(storage, tmp_path):
    bundle = seg_bundle(tmp_path / "bundle", published=True)
    assert challenge_import_bundle(path=bundle).challenge.is_published is True


# --- the dry run of an upload --------------------------------------------------------------


def zipped(folder: Path, dest: Path) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{folder.name}/{p.relative_to(folder).as_posix()}")
    return dest


def _upload_file(path: Path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes(), content_type="application/zip")


def creator():  # type: ignore[no-untyped-def]
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="add_challenge"))
    return type(user).objects.get(pk=user.pk)


@pytest.mark.django_db
def test_dry_run_writes_only_the_upload_record(storage, tmp_path, settings):
    user = creator()
    archive = zipped(seg_bundle(tmp_path / "lesion-seg"), tmp_path / "lesions.zip")
    before = _state(storage)
    upload = bundle_upload_check(user=user, file=_upload_file(archive))
    assert upload.state == "checked" and upload.slug == "lesion-seg"
    report = upload.report
    assert report["cases"] == {"train": 2, "test": 2}
    assert report["task"] == "segmentation" and report["exists"] is False
    assert report["summary"]["splits"]["test"]["shape"] == {"min": list(SHAPE), "max": list(SHAPE)}
    assert report["summary"]["splits"]["test"]["spacing_mm"]["min"] == pytest.approx(SPACING)
    assert [p["slug"] for p in report["phases"]] == ["open"] and report["problems"] == []
    after = _state(storage)
    assert after[:4] == before[:4] and after[4] == before[4] + 1
    stored = f"private/bundle-uploads/{upload.sha256}.zip"
    assert stored in after[5]
    assert set(after[5]) - set(before[5]) <= {"private", "private/bundle-uploads", stored}
    assert upload.path == stored.removeprefix("private/")


@pytest.mark.django_db
def test_dry_run_of_a_bad_bundle_is_refused_with_every_problem(storage, tmp_path):
    user = creator()
    bundle = seg_bundle(tmp_path / "lesion-seg")
    _other_spacing(bundle)
    _undeclared_label(bundle)
    upload = bundle_upload_check(user=user, file=_upload_file(zipped(bundle, tmp_path / "b.zip")))
    assert upload.state == "refused"
    assert len(upload.report["problems"]) == 2
    assert Challenge.objects.count() == 0
    assert not (storage / "private" / upload.path).exists()  # the refused zip is not kept


@pytest.mark.django_db
def test_unsafe_zip_is_refused_clearly(storage, tmp_path):
    archive = zipped(seg_bundle(tmp_path / "lesion-seg"), tmp_path / "evil.zip")
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../../evil.txt", "x")
    upload = bundle_upload_check(user=creator(), file=_upload_file(archive))
    assert upload.state == "refused"
    assert upload.report["problems"] == ["evil.zip: zip entry '../../evil.txt': '..' in the path"]


@pytest.mark.django_db
def test_without_add_challenge_a_user_cannot_create(storage, tmp_path):
    archive = zipped(seg_bundle(tmp_path / "lesion-seg"), tmp_path / "b.zip")
    with pytest.raises(BundleUploadRefused):
        bundle_upload_check(user=UserFactory(), file=_upload_file(archive))
    assert BundleUpload.objects.count() == 0


@pytest.mark.django_db
def test_the_organizer_of_another_challenge_cannot_update_this_one(storage, tmp_path):
    challenge_import_bundle(path=seg_bundle(tmp_path / "lesion-seg"))
    other = challenge_import_bundle(path=seg_bundle(tmp_path / "other", slug="other")).challenge
    intruder = creator()
    other.organizers.add(intruder)
    archive = zipped(tmp_path / "lesion-seg", tmp_path / "b.zip")
    upload = bundle_upload_check(user=intruder, file=_upload_file(archive))
    assert upload.state == "refused"
    assert upload.report["problems"] == [
        "challenge 'lesion-seg' exists and you are not one of its organizers"
    ]
    # nor through the update of their own challenge
    upload = bundle_upload_check(user=intruder, file=_upload_file(archive), challenge=other)
    assert upload.state == "refused"
    assert (
        "the bundle is for 'lesion-seg', but it was uploaded to update 'other'"
        in (upload.report["problems"][0])
    )
    assert OrganizerAction.objects.count() == 0
