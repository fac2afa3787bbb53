"""A submission's own page: its file, state, timings, every metric with interval and unit,
missing cases named, per-case results where the phase shows them; visible to its participant,
their team and the organizers only."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from challenges.models import Phase, Submission, Team, TeamMembership
from challenges.services.bundles import challenge_import_bundle
from challenges.services.charts import histogram_bins, histogram_svg
from challenges.services.evaluations import evaluation_fail
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import submission_create
from tests.factories import UserFactory, classification_phase, segmentation_phase

pytestmark = pytest.mark.django_db


def _scored(phase: Phase, data: bytes, user, name: str = "my predictions.csv") -> Submission:
    submission = submission_create(user=user, phase=phase, file=SimpleUploadedFile(name, data))
    evaluation_score(evaluation_id=submission.evaluations.get().pk)
    return submission


def _page(user, submission: Submission) -> tuple[int, str]:
    client = Client()
    if user is not None:
        client.force_login(user)
    response = client.get(f"/submissions/{submission.pk}/")
    return response.status_code, response.content.decode()


def test_owner_sees_file_state_timings_and_metrics_with_units_and_intervals(tmp_path, settings):
    settings.SCANBENCH_LIVE_BOOTSTRAP = 1000  # intervals on live scores (off by default)
    phase, preds = segmentation_phase(tmp_path, n_cases=6)
    owner = UserFactory()
    submission = _scored(phase, preds.read_bytes(), owner, name="lesions v2.zip")
    status, html = _page(owner, submission)
    assert status == 200
    assert "lesions v2.zip" in html
    stored = submission.file.name.rsplit("/", 1)[-1]
    assert stored != "lesions v2.zip" and stored not in html
    assert 'class="state state-succeeded">Succeeded' in html
    assert re.search(
        r"<th scope=\"row\">scoring in all</th><td class=\"num\">\d+\.\d\d s</td>", html
    )
    # the worker's steps, in the order they happen
    steps = re.findall(r"<th scope=\"row\">([^<]+)</th><td class=\"num\">", html)
    assert steps[-1] == "scoring in all" and "storing the results" in steps
    public = html.split('id="metrics-public"', 1)[1].split("</table>", 1)[0]
    for metric in ("dice", "hd95 (mm)", "nsd"):
        assert f'<td class="stick">{metric}</td>' in public
    # every metric has its bootstrap interval beside it
    assert public.count("[") == 3 and "bootstrap" in public.lower()


def test_other_participants_and_anonymous_visitors_get_404(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40)
    owner = UserFactory()
    submission = _scored(phase, preds.read_bytes(), owner)
    assert _page(UserFactory(), submission)[0] == 404
    assert _page(None, submission)[0] == 404
    assert Client().get("/submissions/999999/").status_code == 404


def test_team_members_see_the_page_too(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40)
    owner, mate = UserFactory(), UserFactory()
    team = Team.objects.create(challenge=phase.challenge, name="Lab", slug="lab")
    for user in (owner, mate):
        TeamMembership.objects.create(team=team, user=user, challenge=phase.challenge)
    submission = _scored(phase, preds.read_bytes(), owner)
    Submission.objects.filter(pk=submission.pk).update(team=team)
    assert _page(mate, submission)[0] == 200


def test_failure_reason_is_shown_and_logs_only_to_organizers(tmp_path):
    phase, _preds = classification_phase(tmp_path, n_cases=40, submission_kind="model")
    owner, organizer = UserFactory(), UserFactory()
    phase.challenge.organizers.add(organizer)
    submission = submission_create(
        user=owner, phase=phase, file=SimpleUploadedFile("model.onnx", b"not really onnx")
    )
    evaluation_fail(
        evaluation_id=submission.evaluations.get().pk,
        message="The model did not load: not an ONNX file.",
        logs="[sandbox backend: bwrap] failed in 0.4 s\nonnxruntime: INVALID_PROTOBUF",
    )
    status, html = _page(owner, submission)
    assert status == 200
    assert 'class="state state-failed">Failed' in html
    assert "The model did not load: not an ONNX file." in html
    assert "INVALID_PROTOBUF" not in html and 'id="logs"' not in html
    status, html = _page(organizer, submission)
    assert status == 200 and 'id="logs"' in html and "INVALID_PROTOBUF" in html


def test_missing_cases_are_counted_and_the_public_ones_listed(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=171)
    header, *rows = preds.read_text().splitlines()
    rows.sort()
    kept = rows[121:]
    owner = UserFactory()
    submission = _scored(phase, "\n".join([header, *kept]).encode(), owner)
    public = submission.evaluations.get().results.get(part="public")
    public_missing = public.meta["missing_cases"]
    assert public_missing
    status, html = _page(owner, submission)
    assert status == 200
    assert "121 of 171 cases were missing and got the worst value" in html
    listed = re.findall(r"<li><code>([^<]+)</code></li>", html.split('id="missing"', 1)[1])
    assert listed == sorted(public_missing)
    private = submission.evaluations.get().results.get(part="private")
    assert not set(private.meta["missing_cases"]) & set(listed)


def test_per_case_histogram_for_segmentation_by_default(tmp_path):
    phase, preds = segmentation_phase(tmp_path, n_cases=6)
    assert phase.show_case_results is None and phase.case_results_visible()
    owner = UserFactory()
    status, html = _page(owner, _scored(phase, preds.read_bytes(), owner, name="p.zip"))
    assert status == 200
    assert 'id="cases"' in html and html.count('<svg class="histogram"') == 3
    assert "<script" not in html.split('id="histograms"', 1)[1]
    assert "http" not in html.split('id="histograms"', 1)[1].split("</div>", 1)[0]


def test_no_per_case_results_for_classification_unless_the_phase_shows_them(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40)
    assert not phase.case_results_visible()
    owner = UserFactory()
    submission = _scored(phase, preds.read_bytes(), owner)
    status, html = _page(owner, submission)
    assert status == 200 and 'id="cases"' not in html and "<svg" not in html
    phase.show_case_results = True
    phase.save(update_fields=["show_case_results"])
    status, html = _page(owner, submission)
    assert status == 200 and 'id="cases"' in html and '<svg class="histogram"' in html


def test_private_part_hidden_while_the_phase_is_open_and_shown_once_revealed(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40)
    owner = UserFactory()
    submission = _scored(phase, preds.read_bytes(), owner)
    status, html = _page(owner, submission)
    assert status == 200 and 'id="metrics-public"' in html
    assert 'id="metrics-private"' not in html and 'id="private-hidden"' in html
    Phase.objects.filter(pk=phase.pk).update(
        opens_at=timezone.now() - timedelta(days=3), closes_at=timezone.now() - timedelta(days=1)
    )
    status, html = _page(owner, submission)
    assert status == 200
    assert 'id="metrics-private"' in html and 'id="private-hidden"' not in html


def test_submit_page_links_each_row_to_its_page(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40)
    owner = UserFactory()
    submission = _scored(phase, preds.read_bytes(), owner)
    client = Client()
    client.force_login(owner)
    html = client.get(f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/").content.decode()
    assert f'href="/submissions/{submission.pk}/">{submission.pk}</a>' in html


def test_histogram_bins_and_escaping():
    assert histogram_bins([0.0, 0.5, 1.0, None], bins=2, unit_interval=True) == (0.0, 1.0, [1, 2])
    assert histogram_bins([3.0, 3.0], bins=4) == (3.0, 3.0, [2])
    assert histogram_bins([None]) == (0.0, 0.0, [])
    svg = str(histogram_svg([1.0, 2.0, None], metric="<x>", unit="mm"))
    assert "<x>" not in svg and "&lt;x&gt; (mm)" in svg and "1 case without a value" in svg


def test_bundle_phase_key_show_case_results(tmp_path):
    import shutil
    from pathlib import Path

    import yaml

    src = Path(__file__).resolve().parents[2] / "examples/bundles/synthetic-lesions"
    bundle = tmp_path / "bundle"
    shutil.copytree(src, bundle)
    manifest = yaml.safe_load((bundle / "challenge.yaml").read_text())
    manifest["phases"][0]["show_case_results"] = False
    (bundle / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    challenge_import_bundle(path=bundle)
    phase = Phase.objects.get(challenge__slug=manifest["slug"], slug=manifest["phases"][0]["slug"])
    assert phase.show_case_results is False and not phase.case_results_visible()


def test_admin_phase_form_offers_the_setting_with_the_task_default(tmp_path):
    phase, _preds = classification_phase(tmp_path, n_cases=20)
    admin = UserFactory(username="root", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(admin)
    html = client.get(f"/admin/challenges/phase/{phase.pk}/change/").content.decode()
    field = html.split('name="show_case_results"', 1)[1].split("</select>", 1)[0]
    assert "By task: on for segmentation, off for classification" in field
    assert "Participants see their per-case results on the public part" in html
