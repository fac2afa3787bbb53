"""Participants download a challenge's public data from the browser: the Data page lists it,
joining with the terms accepted unlocks it, downloads resume with HTTP Range, and no URL reaches
a hidden part (test labels, reference masks, the private case list)."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from challenges.models import Case, ChallengeMembership, DataFile, Evaluation, EvaluationState
from challenges.services.bundles import challenge_import_bundle
from challenges.services.data import DEFAULT_TERMS, data_files_current
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import submission_create
from evaluator.synthetic import write_nifti
from tests.factories import UserFactory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "synthetic-lesions"
SLUG = "synthetic-lesions"


def _published(report):  # type: ignore[no-untyped-def]
    """New challenges start unpublished; these tests read its public pages, so publish it."""
    report.challenge.is_published = True
    report.challenge.save(update_fields=["is_published"])
    return report


@pytest.fixture
def storage(settings, tmp_path: Path) -> Path:
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"
    return tmp_path


@pytest.fixture
def lesions(db, storage: Path):
    """The committed synthetic classification bundle, imported (tabular inputs)."""
    return _published(challenge_import_bundle(path=EXAMPLE)).challenge


def _segmentation_bundle(folder: Path, *, terms: str | None = None) -> Path:
    """A small segmentation bundle: NIfTI inputs for every case, masks for every case."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    rng = np.random.default_rng(3)
    rows = ["case_id,split"]
    for i in range(8):
        case_id, split = f"seg{i:02d}", "train" if i < 4 else "test"
        rows.append(f"{case_id},{split}")
        image = rng.normal(size=(16, 12, 6)).astype(np.float32)
        mask = np.zeros((16, 12, 6), dtype=np.uint8)
        mask[4:9, 3:8, 1:4] = 1
        write_nifti(folder / "images" / f"{case_id}.nii.gz", image, (0.8, 0.8, 2.5))
        write_nifti(folder / "labels" / f"{case_id}.nii.gz", mask, (0.8, 0.8, 2.5))
    (folder / "cases.csv").write_text("\n".join(rows) + "\n")
    manifest = {
        "slug": "seg-demo",
        "title": "Segmentation demo",
        "summary": "Find the box.",
        "task": "segmentation",
        "classes": ["box"],
        "licence": "CC0 1.0",
        "attribution": "Generated.",
        "dataset": {"cases": "cases.csv", "inputs": "images", "labels": "labels"},
        "phases": [
            {"slug": "open", "title": "Open", "metrics": ["dice", "hd95"], "daily_limit": 5}
        ],
    }
    if terms is not None:
        manifest["terms"] = terms
    (folder / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    return folder


@pytest.fixture
def segmentation(db, storage: Path):
    bundle = _segmentation_bundle(storage / "seg-bundle", terms="Only for the box contest.")
    return _published(challenge_import_bundle(path=bundle)).challenge


def _member(challenge) -> Client:
    user = UserFactory()
    client = Client()
    client.force_login(user)
    response = client.post(f"/challenges/{challenge.slug}/join/", {"accept_terms": "on"})
    assert response.status_code == 302
    return client


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


# --- who may download ---------------------------------------------------------------------------


def test_anonymous_download_redirects_to_log_in(lesions):
    response = Client().get(f"/challenges/{SLUG}/data/train.csv")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_signed_in_participant_who_has_not_joined_gets_403_telling_them_to_join(lesions):
    client = Client()
    client.force_login(UserFactory())
    response = client.get(f"/challenges/{SLUG}/data/train.csv")
    assert response.status_code == 403
    text = response.content.decode()
    assert "Join" in text and "accept its terms" in text
    assert f"/challenges/{SLUG}/join/" in text


def test_joining_without_ticking_the_terms_box_is_refused_and_downloads_stay_closed(lesions):
    user = UserFactory()
    client = Client()
    client.force_login(user)
    response = client.post(f"/challenges/{SLUG}/join/", {})
    assert response.status_code == 400
    assert "Tick the box to accept" in response.content.decode()
    assert not ChallengeMembership.objects.filter(user=user).exists()
    # A membership row without accepted terms does not open the downloads either.
    ChallengeMembership.objects.create(challenge=lesions, user=user)
    assert client.get(f"/challenges/{SLUG}/data/train.csv").status_code == 403


def test_joined_member_downloads_the_listed_bytes_with_their_sha256(lesions):
    client = _member(lesions)
    page = client.get(f"/challenges/{SLUG}/data/")
    assert page.status_code == 200
    listed = {f.name: f for f in DataFile.objects.filter(challenge=lesions)}
    assert set(listed) == {
        "train.csv",
        "test-inputs.csv",
        "sample-submission.csv",
        "starting-kit.zip",
    }
    for f in listed.values():
        assert f.sha256 in page.content.decode()
        response = client.get(f"/challenges/{SLUG}/data/{f.name}")
        assert response.status_code == 200
        assert response["Accept-Ranges"] == "bytes"
        body = _body(response)
        assert len(body) == f.size == int(response["Content-Length"])
        assert hashlib.sha256(body).hexdigest() == f.sha256
    train = _body(client.get(f"/challenges/{SLUG}/data/train.csv")).decode()
    rows = list(csv.DictReader(io.StringIO(train)))
    labels = dict(
        Case.objects.filter(dataset__challenge=lesions, split="train").values_list(
            "case_id", "label"
        )
    )
    assert len(rows) == len(labels) == 120
    assert all(row["label"] == labels[row["case_id"]] for row in rows)


def test_test_inputs_carry_no_label_and_only_test_cases(lesions):
    client = _member(lesions)
    text = _body(client.get(f"/challenges/{SLUG}/data/test-inputs.csv")).decode()
    reader = csv.DictReader(io.StringIO(text))
    assert "label" not in (reader.fieldnames or [])
    ids = {row["case_id"] for row in reader}
    test_ids = set(
        Case.objects.filter(dataset__challenge=lesions, split="test").values_list(
            "case_id", flat=True
        )
    )
    assert ids == test_ids


def test_organizer_downloads_without_joining(lesions):
    organizer = UserFactory()
    lesions.organizers.add(organizer)
    client = Client()
    client.force_login(organizer)
    assert client.get(f"/challenges/{SLUG}/data/train.csv").status_code == 200


def test_changed_terms_must_be_accepted_again(segmentation, storage):
    client = _member(segmentation)
    assert client.get("/challenges/seg-demo/data/train.zip").status_code == 200
    bundle = storage / "seg-bundle"
    manifest = yaml.safe_load((bundle / "challenge.yaml").read_text())
    manifest["terms"] = "New terms: cite the box paper."
    (bundle / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    challenge_import_bundle(path=bundle)
    assert client.get("/challenges/seg-demo/data/train.zip").status_code == 403
    assert (
        "terms of this challenge changed"
        in client.get("/challenges/seg-demo/data/").content.decode()
    )
    client.post("/challenges/seg-demo/join/", {"accept_terms": "on"})
    assert client.get("/challenges/seg-demo/data/train.zip").status_code == 200


def test_terms_come_from_the_bundle_or_a_default_text(lesions, segmentation):
    assert segmentation.terms == "Only for the box contest."
    client = Client()
    client.force_login(UserFactory())
    assert "Only for the box contest." in client.get("/challenges/seg-demo/join/").content.decode()
    assert lesions.terms == ""
    page = client.get(f"/challenges/{SLUG}/join/").content.decode()
    assert DEFAULT_TERMS.split(".")[0] in page


# --- ranges, serving, hidden parts --------------------------------------------------------------


def test_range_requests_resume_a_download_and_refuse_unsatisfiable_ranges(lesions):
    client = _member(lesions)
    url = f"/challenges/{SLUG}/data/train.csv"
    whole = _body(client.get(url))
    size = len(whole)
    part = client.get(url, HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 100-199/{size}"
    assert _body(part) == whole[100:200]
    rest = client.get(url, HTTP_RANGE="bytes=100-")
    assert rest.status_code == 206 and _body(rest) == whole[100:]
    tail = client.get(url, HTTP_RANGE="bytes=-10")
    assert tail.status_code == 206 and _body(tail) == whole[-10:]
    beyond = client.get(url, HTTP_RANGE=f"bytes={size}-")
    assert beyond.status_code == 416
    assert beyond["Content-Range"] == f"bytes */{size}"
    # A stale validator gets the whole (new) file rather than a splice of two versions.
    stale = client.get(url, HTTP_RANGE="bytes=100-199", HTTP_IF_RANGE='"0000"')
    assert stale.status_code == 200 and _body(stale) == whole


@pytest.mark.parametrize(
    "name",
    [
        "labels",
        "reference.csv",
        "cases.csv",
        "seg04.nii.gz",
        "labels%2Fseg04.nii.gz",
        "..%2F..%2Fprivate",
        "%2E%2E",
        "..",
        "train.zip%00",
    ],
)
def test_hidden_names_and_path_traversal_are_not_found(segmentation, storage, name):
    client = _member(segmentation)
    assert client.get("/challenges/seg-demo/data/train.zip").status_code == 200
    response = client.get(f"/challenges/seg-demo/data/{name}")
    assert response.status_code == 404


def test_no_public_file_holds_a_hidden_label_mask(segmentation, storage):
    files = data_files_current(challenge=segmentation)
    hidden = {p.name for p in (storage / "var" / "private").rglob("*.nii.gz")}
    assert hidden == {f"seg{i:02d}.nii.gz" for i in range(4, 8)}
    for f in files:
        if f.name.endswith(".zip"):
            with zipfile.ZipFile(storage / "var" / "data" / f.path) as zf:
                names = zf.namelist()
            assert not [n for n in names if n.startswith("labels/") and Path(n).name in hidden]
    with zipfile.ZipFile(
        storage
        / "var"
        / "data"
        / DataFile.objects.get(challenge=segmentation, name="train.zip").path
    ) as zf:
        assert sorted(zf.namelist()) == sorted(
            [f"inputs/seg0{i}.nii.gz" for i in range(4)]
            + [f"labels/seg0{i}.nii.gz" for i in range(4)]
        )


def test_x_accel_serving_answers_with_the_header_and_no_body(lesions, settings):
    settings.SCANBENCH_DATA_SERVING = "x-accel"
    settings.SCANBENCH_DATA_ACCEL_PREFIX = "/protected-data/"
    client = _member(lesions)
    response = client.get(f"/challenges/{SLUG}/data/train.csv")
    assert response.status_code == 200
    f = DataFile.objects.get(challenge=lesions, name="train.csv")
    assert response["X-Accel-Redirect"] == f"/protected-data/{f.path}"
    assert response.content == b""


def test_public_files_are_generated_once_and_regenerated_when_the_data_changes(segmentation):
    first = {f.name: (f.pk, f.sha256) for f in data_files_current(challenge=segmentation)}
    again = {f.name: (f.pk, f.sha256) for f in data_files_current(challenge=segmentation)}
    assert first == again
    case = Case.objects.get(dataset__challenge=segmentation, case_id="seg07")
    case.split, case.leaderboard_part, case.label_file = "train", "", ""
    case.save()
    changed = {f.name: (f.pk, f.sha256) for f in data_files_current(challenge=segmentation)}
    assert changed["train.zip"][1] != first["train.zip"][1]
    assert all(changed[n][0] != first[n][0] for n in changed)


# --- the sample submission scores ---------------------------------------------------------------


def _submit_unchanged(client: Client, challenge, name: str):
    body = _body(client.get(f"/challenges/{challenge.slug}/data/{name}"))
    phase = challenge.phases.get()
    submission = submission_create(
        user=UserFactory(), phase=phase, file=SimpleUploadedFile(name, body)
    )
    evaluation = Evaluation.objects.get(submission=submission)
    evaluation_score(evaluation_id=evaluation.pk)  # what the worker does
    evaluation.refresh_from_db()
    return evaluation


def test_classification_sample_submission_scores_when_submitted_unchanged(lesions):
    client = _member(lesions)
    evaluation = _submit_unchanged(client, lesions, "sample-submission.csv")
    assert evaluation.state == EvaluationState.SUCCEEDED, evaluation.message
    public = evaluation.results.get(part="public")
    assert public.aggregates["auc_roc"] == pytest.approx(0.5)


def test_segmentation_sample_submission_scores_when_submitted_unchanged(segmentation):
    client = _member(segmentation)
    body = _body(client.get("/challenges/seg-demo/data/sample-submission.zip"))
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert sorted(zf.namelist()) == [f"seg{i:02d}.nii.gz" for i in range(4, 8)]
    evaluation = _submit_unchanged(client, segmentation, "sample-submission.zip")
    assert evaluation.state == EvaluationState.SUCCEEDED, evaluation.message
    assert evaluation.results.get(part="public").aggregates["dice"] == pytest.approx(0.0)


def test_data_page_lists_the_downloads_and_the_challenge_page_links_to_it(lesions):
    anonymous = Client()
    detail = anonymous.get(f"/challenges/{SLUG}/").content.decode()
    assert f"/challenges/{SLUG}/data/" in detail
    page = anonymous.get(f"/challenges/{SLUG}/data/").content.decode()
    for name in ("train.csv", "test-inputs.csv", "sample-submission.csv"):
        assert name in page
    assert "log in" in page
    assert f'href="/challenges/{SLUG}/data/train.csv"' not in page


# --- the starting kit ----------------------------------------------------------------------------


def test_starting_kit_is_listed_with_the_sha256_of_the_downloaded_bytes(lesions):
    client = _member(lesions)
    page = client.get(f"/challenges/{SLUG}/data/").content.decode()
    kit = DataFile.objects.get(challenge=lesions, name="starting-kit.zip")
    assert 'data-file="starting-kit.zip"' in page and kit.sha256 in page
    assert 'id="starting-kit"' in page
    response = client.get(f"/challenges/{SLUG}/data/starting-kit.zip")
    assert response.status_code == 200 and response["Accept-Ranges"] == "bytes"
    body = _body(response)
    assert len(body) == kit.size and hashlib.sha256(body).hexdigest() == kit.sha256
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert sorted(zf.namelist()) == [
            "starting-kit/README.md",
            "starting-kit/make_submission.py",
        ]
        assert (
            zf.read("starting-kit/README.md")
            == (EXAMPLE / "starting-kit" / "README.md").read_bytes()
        )
    part = client.get(f"/challenges/{SLUG}/data/starting-kit.zip", HTTP_RANGE="bytes=10-19")
    assert part.status_code == 206 and _body(part) == body[10:20]


def test_starting_kit_is_not_offered_to_a_non_member(lesions):
    stranger = Client()
    stranger.force_login(UserFactory())
    assert stranger.get(f"/challenges/{SLUG}/data/starting-kit.zip").status_code == 403
    page = stranger.get(f"/challenges/{SLUG}/data/").content.decode()
    assert f'href="/challenges/{SLUG}/data/starting-kit.zip"' not in page
    assert Client().get(f"/challenges/{SLUG}/data/starting-kit.zip").status_code == 302


def test_a_bundle_without_a_starting_kit_lists_none(segmentation):
    names = {f.name for f in data_files_current(challenge=segmentation)}
    assert "starting-kit.zip" not in names and "train.zip" in names


def test_starting_kit_script_writes_a_submission_that_scores(lesions, tmp_path):
    import subprocess
    import sys

    client = _member(lesions)
    for name in ("train.csv", "test-inputs.csv"):
        (tmp_path / name).write_bytes(_body(client.get(f"/challenges/{SLUG}/data/{name}")))
    with zipfile.ZipFile(
        io.BytesIO(_body(client.get(f"/challenges/{SLUG}/data/starting-kit.zip")))
    ) as zf:
        zf.extractall(tmp_path)
    subprocess.run(
        [sys.executable, "starting-kit/make_submission.py", "--out", "predictions.csv"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    phase = lesions.phases.get()
    submission = submission_create(
        user=UserFactory(),
        phase=phase,
        file=SimpleUploadedFile("predictions.csv", (tmp_path / "predictions.csv").read_bytes()),
    )
    evaluation = Evaluation.objects.get(submission=submission)
    evaluation_score(evaluation_id=evaluation.pk)
    evaluation.refresh_from_db()
    assert evaluation.state == EvaluationState.SUCCEEDED, evaluation.message
    assert evaluation.results.get(part="public").aggregates["auc_roc"] > 0.6  # beats chance


# --- in a real browser --------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def page():
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    import os

    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--no-first-run"]
        )
        context = browser.new_context(accept_downloads=True)
        yield context.new_page()
        browser.close()


AXE = Path(__file__).resolve().parents[1] / "vendor" / "axe-core" / "axe.min.js"


def _serious_violations(page) -> list[str]:
    """axe-core's serious and critical findings on the page (as test_accessibility does)."""
    page.evaluate(AXE.read_text())  # the page's CSP refuses an injected <script> tag
    return list(
        page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
            ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
            ".map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))"
        )
    )


@pytest.mark.browser
def test_participant_joins_in_the_browser_and_downloads_the_sample_submission(
    transactional_db, storage, live_server, page
):
    import re

    challenge = _published(challenge_import_bundle(path=EXAMPLE)).challenge
    UserFactory(username="remote")
    page.goto(live_server.url + challenge.get_absolute_url())
    page.get_by_role("link", name=re.compile("^Data:")).click()
    page.wait_for_url(re.compile(r"/data/$"))
    page.locator("#access").get_by_role("link", name="log in").click()
    page.fill("#id_username", "remote")
    page.fill("#id_password", "pw")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/data/$"))
    page.get_by_role("link", name=re.compile("Join it")).click()
    page.wait_for_url(re.compile(r"/join/$"))
    assert _serious_violations(page) == []
    page.get_by_role("button", name="Join the challenge").click()
    assert page.locator("input[name=accept_terms]:invalid").count() == 1  # the box is required
    page.get_by_label("I accept these terms.").check()
    page.get_by_role("button", name="Join the challenge").click()
    page.wait_for_url(re.compile(r"/data/$"))
    assert "You can download" in page.locator("#access").inner_text()
    assert _serious_violations(page) == []
    with page.expect_download() as info:
        page.get_by_role("link", name="sample-submission.csv").click()
    saved = Path(info.value.path())
    expected = DataFile.objects.get(challenge=challenge, name="sample-submission.csv")
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == expected.sha256


def test_organizers_see_memberships_in_the_admin_but_cannot_edit_them(lesions):
    _member(lesions)
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/challenges/challengemembership/")
    assert listing.status_code == 200 and SLUG in listing.content.decode()
    assert client.get("/admin/challenges/challengemembership/add/").status_code == 403
    membership = ChallengeMembership.objects.get(challenge=lesions)
    page = client.get(f"/admin/challenges/challengemembership/{membership.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
