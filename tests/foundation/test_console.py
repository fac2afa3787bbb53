"""The organizer console: every page and action answers only the organizers of that challenge
(404 to everyone else, the site's superuser included), each action changes what it says and is
logged, the CSV exports are complete and safe to open in a spreadsheet, and a challenge that
requires approval keeps its data and submissions closed until an organizer approves."""

from __future__ import annotations

import csv
import io

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from challenges.models import (
    Announcement,
    ChallengeMembership,
    EntryExclusion,
    Evaluation,
    OrganizerAction,
    Phase,
    Submission,
    Team,
    TeamMembership,
)
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import SubmissionRefused, submission_create
from tests.factories import PhaseFactory, UserFactory, classification_phase
from tests.foundation.test_data_downloads import SLUG, lesions, storage  # noqa: F401


def _scored(phase, preds, user):
    submission = submission_create(
        user=user, phase=phase, file=SimpleUploadedFile("my preds.csv", preds.read_bytes())
    )
    evaluation_score(evaluation_id=submission.evaluations.get().pk)
    return submission


@pytest.fixture
def world(db, tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=40, private_release="manual")
    org = UserFactory(username="org")
    phase.challenge.organizers.add(org)
    alice = UserFactory(username="alice")
    carol = UserFactory(username="carol")
    team = Team.objects.create(challenge=phase.challenge, name="=HYPERLINK(evil)", slug="evil")
    TeamMembership.objects.create(team=team, user=carol, challenge=phase.challenge)
    submission = _scored(phase, preds, alice)
    team_submission = _scored(phase, preds, carol)
    pending = ChallengeMembership.objects.create(
        challenge=phase.challenge, user=UserFactory(username="waiting"), status="pending"
    )
    other = PhaseFactory()
    other_org = UserFactory(username="other_org")
    other.challenge.organizers.add(other_org)
    return {
        "phase": phase,
        "challenge": phase.challenge,
        "org": org,
        "alice": alice,
        "carol": carol,
        "team": team,
        "submission": submission,
        "team_submission": team_submission,
        "pending": pending,
        "other_org": other_org,
    }


def _client(user=None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def _urls(w) -> dict[str, list[dict[str, str]]]:
    """Every console URL, with the POSTs it takes (one valid form each)."""
    slug, phase = w["challenge"].slug, w["phase"]
    base = f"/challenges/{slug}/console/"
    return {
        base: [
            {"action": "unpublish"},
            {"action": "organizer_add", "username": "alice"},
            {"action": "phase_close", "phase": str(phase.pk)},
            {"action": "phase_update", "phase": str(phase.pk), "daily_limit": "3"},
            {"action": "phase_reevaluate", "phase": str(phase.pk)},
            {"action": "phase_baselines", "phase": str(phase.pk)},
            {"action": "private_publish", "phase": str(phase.pk)},
        ],
        f"{base}submissions/": [],
        f"{base}submissions/{w['submission'].pk}/": [
            {"action": "reevaluate"},
            {"action": "hide", "reason": "copied"},
            {"action": "disqualify", "reason": "two accounts"},
        ],
        f"{base}participants/": [
            {"action": "requires_approval", "required": "on"},
            {"action": "approve", "membership": str(w["pending"].pk)},
        ],
        f"{base}announce/": [{"subject": "Hello", "body": "Text"}],
        f"{base}results.csv": [],
        f"{base}cases.csv": [],
    }


def test_anonymous_visitors_are_sent_to_log_in_on_every_console_url(world):
    client = _client()
    for url, posts in [("/organize/", []), *_urls(world).items()]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/login/?next="), url
        for data in posts:
            assert client.post(url, data).status_code == 302, (url, data)
    assert not OrganizerAction.objects.exists()


@pytest.mark.parametrize("who", ["participant", "other_org", "superuser"])
def test_everyone_but_the_organizers_gets_404_on_every_console_url_and_action(world, who):
    intruder = {
        "participant": world["alice"],
        "other_org": world["other_org"],
        "superuser": UserFactory(username="root", is_staff=True, is_superuser=True),
    }[who]
    client = _client(intruder)
    for url, posts in _urls(world).items():
        assert client.get(url).status_code == 404, url
        for data in posts:
            assert client.post(url, data).status_code == 404, (url, data)
    assert not OrganizerAction.objects.filter(challenge=world["challenge"]).exists()
    assert not Announcement.objects.exists() and not EntryExclusion.objects.exists()
    world["challenge"].refresh_from_db()
    assert world["challenge"].is_published
    # "Your challenges" lists only the challenges one organizes (404 for a mere participant).
    listing = client.get("/organize/")
    if who == "participant":
        assert listing.status_code == 404
    else:
        assert listing.status_code == 200
        assert world["challenge"].title not in listing.content.decode()


def test_organizer_sees_every_console_page(world):
    client = _client(world["org"])
    for url in _urls(world):
        response = client.get(url)
        assert response.status_code == 200, url
    home = client.get("/organize/").content.decode()
    assert world["challenge"].title in home
    assert f"/challenges/{world['challenge'].slug}/console/" in home
    # the header links the console for organizers only
    assert 'id="organize-link"' in client.get("/").content.decode()
    assert 'id="organize-link"' not in _client(world["alice"]).get("/").content.decode()


def test_an_unpublished_challenge_stays_in_its_organizers_console(world):
    world["challenge"].is_published = False
    world["challenge"].save()
    client = _client(world["org"])
    assert client.get(f"/challenges/{world['challenge'].slug}/console/").status_code == 200
    assert "unpublished" in client.get("/organize/").content.decode()
    assert _client(world["alice"]).get(f"/challenges/{world['challenge'].slug}/").status_code == 404


def test_console_posts_need_the_csrf_token(world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["org"])
    url = f"/challenges/{world['challenge'].slug}/console/"
    assert client.post(url, {"action": "unpublish"}).status_code == 403
    world["challenge"].refresh_from_db()
    assert world["challenge"].is_published


def _post(client, url, data):
    response = client.post(url, data, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain and response.redirect_chain[0][1] == 302
    return response.content.decode()


def _last_action() -> str:
    return OrganizerAction.objects.order_by("-pk").values_list("action", flat=True).first() or ""


def test_overview_actions_change_the_challenge_and_are_logged(world):
    client, phase, challenge = _client(world["org"]), world["phase"], world["challenge"]
    url = f"/challenges/{challenge.slug}/console/"

    page = _post(client, url, {"action": "unpublish"})
    challenge.refresh_from_db()
    assert not challenge.is_published and _last_action() == "unpublish"
    assert "only its organizers see it" in page
    _post(client, url, {"action": "publish"})
    challenge.refresh_from_db()
    assert challenge.is_published and _last_action() == "publish"

    _post(client, url, {"action": "organizer_add", "username": "alice"})
    assert challenge.organizers.filter(username="alice").exists()
    page = _post(client, url, {"action": "organizer_add", "username": "nobody"})
    assert "No user named &#x27;nobody&#x27;" in page and 'class="card error' in page
    _post(client, url, {"action": "organizer_remove", "username": "alice"})
    assert not challenge.organizers.filter(username="alice").exists()
    assert _last_action() == "organizer_remove"

    page = _post(
        client,
        url,
        {"action": "phase_update", "phase": phase.pk, "daily_limit": "7", "total_limit": "70"},
    )
    phase.refresh_from_db()
    assert (phase.daily_limit, phase.total_limit) == (7, 70) and _last_action() == "phase_update"
    page = _post(client, url, {"action": "phase_update", "phase": phase.pk, "daily_limit": "99"})
    assert "cannot be above the total limit" in page
    phase.refresh_from_db()
    assert phase.daily_limit == 7
    page = _post(
        client, url, {"action": "phase_update", "phase": phase.pk, "opens_at": "not a date"}
    )
    assert "was not changed" in page

    n_attempts = Evaluation.objects.filter(submission__phase=phase).count()
    page = _post(client, url, {"action": "phase_reevaluate", "phase": phase.pk})
    assert "2 submission(s)" in page and _last_action() == "reevaluate_all"
    assert Evaluation.objects.filter(submission__phase=phase).count() == n_attempts + 2

    page = _post(client, url, {"action": "phase_baselines", "phase": phase.pk})
    assert "No baseline can be trained" in page and "no train cases" in page

    page = _post(client, url, {"action": "private_publish", "phase": phase.pk})
    assert "Close the phase before publishing" in page
    assert "Publish the private leaderboard" not in page  # offered only once closed
    _post(client, url, {"action": "phase_close", "phase": phase.pk})
    phase.refresh_from_db()
    assert phase.is_closed() and _last_action() == "phase_update"
    page = _post(client, url, {"action": "private_publish", "phase": phase.pk})
    phase.refresh_from_db()
    assert phase.private_published_at is not None and _last_action() == "private_publish"
    _post(client, url, {"action": "phase_open", "phase": phase.pk})
    phase.refresh_from_db()
    assert phase.is_open()

    # the audit log shows who did what
    page = client.get(url).content.decode()
    assert page.count('data-action="') == OrganizerAction.objects.count()
    assert "Published the private leaderboard" in page and ">org<" in page


def test_submission_pages_show_attempts_and_actions_are_logged(world):
    client, phase = _client(world["org"]), world["phase"]
    submission, team_submission = world["submission"], world["team_submission"]
    Evaluation.objects.filter(submission=submission).update(logs="x" * 30_000 + "LAST LINE")
    base = f"/challenges/{world['challenge'].slug}/console/submissions/"
    listing = client.get(base).content.decode()
    assert "my preds.csv" in listing and submission.file.name.split("/")[-1] not in listing
    assert "=HYPERLINK(evil)" in listing and "alice" in listing
    assert client.get(base, {"q": "alic"}).content.decode().count("data-submission=") == 1
    assert client.get(base, {"failures": "on"}).content.decode().count("data-submission=") == 0

    url = f"{base}{submission.pk}/"
    page = client.get(url).content.decode()
    assert "LAST LINE" in page and "x" * 20_001 not in page  # a bounded tail
    assert "public part" in page and "private part" in page

    _post(client, url, {"action": "reevaluate"})
    assert submission.evaluations.count() == 2 and _last_action() == "reevaluate"
    page = _post(client, url, {"action": "hide", "reason": "  "})
    assert "Give a reason" in page
    _post(client, url, {"action": "hide", "reason": "Used the test labels"})
    hidden = EntryExclusion.objects.get(submission=submission)
    assert hidden.reason == "Used the test labels" and _last_action() == "hide"
    assert '<span class="pill">hidden</span>' in client.get(base).content.decode()

    team_url = f"{base}{team_submission.pk}/"
    _post(client, team_url, {"action": "disqualify", "reason": "Two accounts"})
    dq = EntryExclusion.objects.get(kind="disqualified")
    assert dq.team == world["team"] and dq.participant is None and _last_action() == "disqualify"
    _post(client, team_url, {"action": "lift", "exclusion": dq.pk})
    dq.refresh_from_db()
    assert dq.lifted_at is not None and _last_action() == "lift"

    # the participant sees the reason on their submission list and on the submission's page
    alice = _client(world["alice"])
    submit = alice.get(f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/").content
    assert "Hidden by the organizers: Used the test labels" in submit.decode()
    own = alice.get(f"/submissions/{submission.pk}/").content.decode()
    assert "Hidden by the organizers: Used the test labels" in own


def test_a_disqualified_participant_is_told_why_on_the_submit_page(world):
    client, phase = _client(world["org"]), world["phase"]
    url = f"/challenges/{world['challenge'].slug}/console/submissions/{world['submission'].pk}/"
    _post(client, url, {"action": "disqualify", "reason": "Shared the labels"})
    page = _client(world["alice"]).get(f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/")
    assert f"Disqualified from {phase.title}:</strong> Shared the labels" in page.content.decode()


def test_participants_page_decides_memberships_and_the_approval_toggle_is_logged(world):
    client, challenge, pending = _client(world["org"]), world["challenge"], world["pending"]
    url = f"/challenges/{challenge.slug}/console/participants/"
    page = client.get(url).content.decode()
    assert "waiting" in page and "1 member waiting" in page
    _post(client, url, {"action": "requires_approval", "required": "on"})
    challenge.refresh_from_db()
    assert challenge.requires_approval and _last_action() == "requires_approval"
    _post(client, url, {"action": "approve", "membership": pending.pk})
    pending.refresh_from_db()
    assert pending.status == "approved" and pending.decided_by == world["org"]
    assert _last_action() == "approve"
    _post(client, url, {"action": "reject", "membership": pending.pk})
    pending.refresh_from_db()
    assert pending.status == "rejected" and _last_action() == "reject"
    _post(client, url, {"action": "requires_approval"})
    challenge.refresh_from_db()
    assert not challenge.requires_approval and _last_action() == "open_joining"


def test_announcements_are_mailed_listed_and_shown_on_the_challenge_page(world):
    client, challenge = _client(world["org"]), world["challenge"]
    ChallengeMembership.objects.create(challenge=challenge, user=world["alice"])
    url = f"/challenges/{challenge.slug}/console/announce/"
    page = _post(client, url, {"subject": "Deadline moved", "body": "One more week."})
    assert "sent to 1 participant(s)" in page and "Deadline moved" in page
    assert _last_action() == "announce"
    assert [m.to for m in mail.outbox] == [["alice@example.org"]]
    page = _post(client, url, {"subject": "", "body": "x"})
    assert "An announcement needs a subject and a text" in page
    detail = _client().get(f"/challenges/{challenge.slug}/").content.decode()
    assert 'id="announcements"' in detail and "One more week." in detail


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


def test_results_and_cases_exports_are_complete_and_neutralize_formulas(world):
    client, phase = _client(world["org"]), world["phase"]
    base = f"/challenges/{world['challenge'].slug}/console/"
    rows = _csv(client.get(f"{base}results.csv"))
    metrics = set(phase.metrics)
    for submission in (world["submission"], world["team_submission"]):
        mine = [r for r in rows if r["submission"] == str(submission.pk)]
        assert {r["part"] for r in mine} == {"public", "private"}
        assert metrics <= {r["metric"] for r in mine}
        assert all(r["attempt"] == "1" and r["state"] == "succeeded" for r in mine)
    team_rows = [r for r in rows if r["submission"] == str(world["team_submission"].pk)]
    assert {r["entrant"] for r in team_rows} == {"'=HYPERLINK(evil)"}
    auc = next(r for r in rows if r["metric"] == "auc_roc" and r["part"] == "public")
    result = world["submission"].evaluations.get().results.get(part="public")
    assert float(auc["value"]) == result.aggregates["auc_roc"]

    cases = _csv(client.get(f"{base}cases.csv"))
    assert set(cases[0]) == {"submission", "attempt", "part", "case_id", "metric", "value"}
    stored = sum(
        len(values)
        for r in world["submission"].evaluations.get().results.all()
        for values in r.cases.values()
    )
    assert len([c for c in cases if c["submission"] == str(world["submission"].pk)]) == stored


# --- approval ------------------------------------------------------------------------------------


def test_a_pending_member_can_neither_download_nor_submit_until_approved(lesions):  # noqa: F811
    lesions.requires_approval = True
    lesions.save()
    org = UserFactory(username="lesion_org")
    lesions.organizers.add(org)
    user = UserFactory(username="hopeful")
    client = _client(user)
    assert (
        "needs the organizers' approval" in client.get(f"/challenges/{SLUG}/join/").content.decode()
    )
    client.post(f"/challenges/{SLUG}/join/", {"accept_terms": "on"})
    membership = ChallengeMembership.objects.get(challenge=lesions, user=user)
    assert membership.status == "pending"
    data = client.get(f"/challenges/{SLUG}/data/").content.decode()
    assert "waiting for the organizers&#x27; approval" in data
    response = client.get(f"/challenges/{SLUG}/data/train.csv")
    assert response.status_code == 403
    assert "waiting for the organizers&#x27; approval" in response.content.decode()

    phase = Phase.objects.filter(challenge=lesions).first()
    assert phase is not None
    phase.opens_at = timezone.now() - timezone.timedelta(days=1)
    phase.closes_at = None
    phase.save()
    with pytest.raises(SubmissionRefused, match="waiting for the organizers' approval") as exc:
        submission_create(user=user, phase=phase, file=SimpleUploadedFile("p.csv", b"x\n"))
    assert exc.value.code == "not_approved" and exc.value.status == 403
    page = client.post(
        f"/challenges/{SLUG}/{phase.slug}/submit/",
        {"file": SimpleUploadedFile("p.csv", b"case_id,score\n")},
    )
    assert page.status_code == 403 and "approval" in page.content.decode()
    submit_page = client.get(f"/challenges/{SLUG}/{phase.slug}/submit/").content.decode()
    assert 'id="waiting"' in submit_page
    assert not Submission.objects.filter(participant=user).exists()

    _client(org).post(
        f"/challenges/{SLUG}/console/participants/",
        {"action": "approve", "membership": membership.pk},
    )
    membership.refresh_from_db()
    assert membership.status == "approved"
    assert client.get(f"/challenges/{SLUG}/data/train.csv").status_code == 200
    submission_create(user=user, phase=phase, file=SimpleUploadedFile("p.csv", b"case_id,score\n"))
    assert Submission.objects.filter(participant=user).count() == 1


def test_a_member_without_approval_rule_joins_approved(lesions):  # noqa: F811
    user = UserFactory()
    _client(user).post(f"/challenges/{SLUG}/join/", {"accept_terms": "on"})
    assert ChallengeMembership.objects.get(user=user).status == "approved"
