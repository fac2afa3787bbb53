"""Limits without races, private leaderboards, re-evaluation with history."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.db.models import Count, Q
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from challenges.models import Evaluation, LeaderboardEntry, LeaderboardSnapshot, Phase, Submission
from challenges.selectors import LeaderboardHidden, leaderboard_for_phase
from challenges.services.evaluations import evaluation_fail, submission_reevaluate
from challenges.services.leaderboards import leaderboard_update
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import SubmissionRefused, limits_for, submission_create
from tests.factories import DatasetFactory, PhaseFactory, UserFactory, classification_phase
from tests.helpers import compute_rank_ranges


def test_fifty_concurrent_uploads_with_a_daily_limit_of_five_accept_exactly_five(
    live_server, transactional_db, tmp_path
):
    phase, preds = classification_phase(tmp_path, daily_limit=5)
    token = Token.objects.create(user=UserFactory(username="racer")).key
    body = preds.read_bytes()

    def upload(i: int) -> requests.Response:
        return requests.post(
            f"{live_server.url}/api/phases/{phase.pk}/submissions/",
            files={"file": (f"p{i}.csv", body)},
            headers={"Authorization": f"Token {token}"},
            timeout=60,
        )

    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(upload, range(50)))
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 5, codes
    assert codes.count(429) == 45, codes
    refused = [r.json() for r in responses if r.status_code == 429]
    assert all(r["code"] == "daily_limit" for r in refused)
    assert "today's 5 submissions" in refused[0]["detail"]
    assert Submission.objects.filter(phase=phase).count() == 5


def _scored(phase, preds, user) -> Submission:
    submission = submission_create(
        user=user, phase=phase, file=SimpleUploadedFile("p.csv", preds.read_bytes())
    )
    evaluation_score(evaluation_id=submission.evaluations.get().pk)
    return submission


@pytest.mark.django_db
def test_limits_are_shown_before_submitting_and_platform_failures_do_not_count(tmp_path):
    phase, preds = classification_phase(tmp_path, daily_limit=2)
    user = UserFactory()
    client = APIClient()
    client.force_authenticate(user)
    assert client.get(f"/api/phases/{phase.pk}/limits/").json()["remaining"] == 2
    first = submission_create(user=user, phase=phase, file=SimpleUploadedFile("p.csv", b"x,y\n"))
    evaluation_fail(
        evaluation_id=first.evaluations.get().pk, message="worker lost", platform_fault=True
    )
    assert limits_for(user=user, phase=phase).daily_used == 0
    _scored(phase, preds, user)
    _scored(phase, preds, user)
    assert client.get(f"/api/phases/{phase.pk}/limits/").json()["remaining"] == 0
    with pytest.raises(SubmissionRefused, match="today's 2 submissions"):
        _scored(phase, preds, user)


def _counted_by_orm(phase, user, team):
    """The submissions that count against the limits, in the ORM: the entrant's, except
    baselines and those whose latest attempt failed through the platform's fault (alone, the
    user's in the phase, those made for a team they left included)."""
    from django.db.models import Exists, OuterRef

    platform_failed = Evaluation.objects.filter(
        submission=OuterRef("pk"), state="failed", platform_fault=True
    )
    # a later attempt of the same submission (the failed attempt's own submission)
    newer = Evaluation.objects.filter(
        submission=OuterRef("submission"), attempt__gt=OuterRef("attempt")
    )
    failed_last = Exists(platform_failed.exclude(Exists(newer)))
    who = Q(team=team) if team is not None else Q(participant_id=user.pk)
    return Submission.objects.filter(who, phase=phase, is_baseline=False).exclude(failed_last)


@pytest.mark.django_db
def test_limits_count_what_the_orm_definition_counts(tmp_path):
    """The hand-written count of the limits equals the ORM's definition on every kind of
    submission: baselines, other phases, other entrants, a team's, yesterday's, platform
    failures, and a platform failure re-evaluated afterwards (its new attempt counts)."""
    from challenges.models import Team

    phase, _ = classification_phase(tmp_path, daily_limit=100, total_limit=100)
    other_phase = PhaseFactory(challenge=phase.challenge, dataset=phase.dataset, slug="other")
    me, you = UserFactory(), UserFactory()
    team = Team.objects.create(challenge=phase.challenge, name="Team A", slug="team-a")
    now = timezone.now()
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)

    def make(user, *, team=None, phase=phase, baseline=False, age=timedelta(0), states=()):
        s = Submission.objects.create(
            phase=phase, participant=user, team=team, kind="predictions",
            file="x.csv", sha256="0" * 64, is_baseline=baseline,
            baseline_name="knn" if baseline else "",
        )  # fmt: skip
        Submission.objects.filter(pk=s.pk).update(created_at=now - age)
        for attempt, (state, fault) in enumerate(states, start=1):
            Evaluation.objects.create(
                submission=s, attempt=attempt, state=state, platform_fault=fault
            )
        return s

    make(me)
    make(me, age=timedelta(days=2))  # counts in all, not today
    make(me, baseline=True)
    make(me, phase=other_phase)
    make(you)
    make(me, team=team)
    make(you, team=team, age=timedelta(days=1))
    make(me, states=[("failed", True)])  # the platform's fault: free
    make(me, states=[("failed", False)])  # the participant's: counts
    make(me, states=[("failed", True), ("succeeded", False)])  # re-evaluated: counts
    make(me, team=team, states=[("failed", True)])
    make(me, states=[("succeeded", False), ("failed", True)])  # latest failed: free
    for user, entrant in ((me, None), (you, None), (me, team), (UserFactory(), None)):
        want = _counted_by_orm(phase, user, entrant).aggregate(
            total=Count("pk"), daily=Count("pk", filter=Q(created_at__gte=day_start))
        )
        got = limits_for(user=user, phase=phase, now=now, entrant=("x", entrant))
        assert (got.total_used, got.daily_used) == (want["total"], want["daily"]), user
    mine = limits_for(user=me, phase=phase, now=now, entrant=("x", None))
    assert (mine.total_used, mine.daily_used) == (5, 4)


@pytest.mark.django_db
def test_private_leaderboard_hidden_until_the_phase_closes(tmp_path):
    phase, preds = classification_phase(tmp_path)
    participant = UserFactory()
    organizer = UserFactory()
    phase.challenge.organizers.add(organizer)
    _scored(phase, preds, participant)
    leaderboard_update(phase_id=phase.pk)
    client = APIClient()
    client.force_authenticate(participant)
    url = f"/api/phases/{phase.pk}/leaderboard/"

    assert leaderboard_for_phase(phase=phase, part="public", user=participant).count() == 1
    with pytest.raises(LeaderboardHidden):
        leaderboard_for_phase(phase=phase, part="private", user=participant)
    assert client.get(url, {"part": "private"}).status_code == 403
    assert APIClient().get(url, {"part": "private"}).status_code == 403
    assert leaderboard_for_phase(phase=phase, part="private", user=organizer).count() == 1

    phase.opens_at = timezone.now() - timedelta(days=10)
    phase.closes_at = timezone.now() - timedelta(minutes=1)
    phase.save()
    rows = leaderboard_for_phase(phase=phase, part="private", user=participant)
    assert rows.count() == 1
    response = client.get(url, {"part": "private"})
    assert response.status_code == 200
    assert response.json()["results"][0]["display_name"] == participant.username


@pytest.mark.django_db
def test_private_board_stays_hidden_while_another_phase_on_the_same_cases_is_open(tmp_path):
    """Two phases scored on one data set: the private part of the closed one would tell the
    participants of the open one how they do on the hidden cases that decide the final."""
    first, preds = classification_phase(tmp_path)
    second = PhaseFactory(challenge=first.challenge, dataset=first.dataset)
    participant, organizer = UserFactory(), UserFactory()
    first.challenge.organizers.add(organizer)
    _scored(first, preds, participant)
    leaderboard_update(phase_id=first.pk)
    now = timezone.now()
    Phase.objects.filter(pk=first.pk).update(
        opens_at=now - timedelta(days=10), closes_at=now - timedelta(minutes=1)
    )
    first.refresh_from_db()
    api = f"/api/phases/{first.pk}/leaderboard/"
    page = f"/challenges/{first.challenge.slug}/{first.slug}/leaderboard/"

    def participant_sees_private() -> bool:
        client = APIClient()
        client.force_authenticate(participant)
        response = client.get(api, {"part": "private"})
        anonymous = APIClient().get(api, {"part": "private"})
        browser = Client()
        browser.force_login(participant)
        html = browser.get(page, {"part": "private"})
        assert html.status_code == 200
        shown = 'id="leaderboard"' in html.content.decode()
        assert shown == (response.status_code == 200) == (anonymous.status_code == 200)
        assert shown or 'id="hidden"' in html.content.decode()
        return shown

    def organizer_sees_private() -> bool:
        client = APIClient()
        client.force_authenticate(organizer)
        response = client.get(api, {"part": "private"})
        browser = Client()
        browser.force_login(organizer)
        html = browser.get(page, {"part": "private"})
        return response.status_code == 200 and 'id="leaderboard"' in html.content.decode()

    # The second phase is open.
    assert not participant_sees_private()
    with pytest.raises(LeaderboardHidden, match="every other phase"):
        leaderboard_for_phase(phase=first, part="private", user=participant)
    assert organizer_sees_private()
    # It has not opened yet: still hidden.
    Phase.objects.filter(pk=second.pk).update(
        opens_at=now + timedelta(days=1), closes_at=now + timedelta(days=30)
    )
    assert not participant_sees_private()
    # It never closes: hidden for good (until an organizer sets a closing date).
    Phase.objects.filter(pk=second.pk).update(opens_at=now - timedelta(days=1), closes_at=None)
    assert not participant_sees_private()
    # Both closed: the final standings are public.
    Phase.objects.filter(pk=second.pk).update(
        opens_at=now - timedelta(days=10), closes_at=now - timedelta(seconds=1)
    )
    assert participant_sees_private()
    rows = leaderboard_for_phase(phase=first, part="private", user=participant)
    assert [r.display_name for r in rows] == [participant.username]
    # A phase on another data set of the same challenge does not hold the board back.
    PhaseFactory(
        challenge=first.challenge,
        dataset=DatasetFactory(challenge=first.challenge, slug="extra"),
    )
    assert participant_sees_private()


@pytest.mark.django_db
def test_best_submission_per_entrant_ties_share_rank_and_baselines_are_marked(tmp_path):
    phase, preds = classification_phase(tmp_path)
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    _scored(phase, preds, alice)
    _scored(phase, preds, bob)
    # A worse second submission of alice's does not replace her best.
    lines = preds.read_text().splitlines()
    worse = tmp_path / "worse.csv"
    worse.write_text("\n".join([lines[0], *(f"{ln.split(',')[0]},0.5" for ln in lines[1:])]))
    _scored(phase, worse, alice)
    baseline = submission_create(
        user=UserFactory(username="platform"),
        phase=phase,
        file=SimpleUploadedFile("p.csv", worse.read_bytes()),
    )
    Submission.objects.filter(pk=baseline.pk).update(
        is_baseline=True, baseline_name="always 0.5", comment="predicts 0.5 for every case"
    )
    Submission.objects.filter(participant=alice).update(comment="alice's own note")
    evaluation_score(evaluation_id=baseline.evaluations.get().pk)
    leaderboard_update(phase_id=phase.pk)
    rows = {r.display_name: r for r in LeaderboardEntry.objects.filter(phase=phase, part="public")}
    assert rows["alice"].rank == rows["bob"].rank == 1  # same predictions: a tie, rank 1, 1
    assert rows["alice"].n_submissions == 2
    assert rows["always 0.5"].is_baseline
    assert rows["always 0.5"].rank == 3
    assert rows["always 0.5"].score == 0.5
    # the page's rows: a baseline carries its description, a participant's comment stays theirs
    board = leaderboard_for_phase(phase=phase, part="public", user=alice)
    shown = {r.display_name: r.baseline_description for r in board}
    assert shown == {"alice": "", "bob": "", "always 0.5": "predicts 0.5 for every case"}
    with CaptureQueriesContext(connection) as queries:
        assert leaderboard_for_phase(phase=phase, part="public", user=alice).count() == 3
    assert "JOIN" not in queries.captured_queries[-1]["sql"]  # the count reads the board only


@pytest.mark.django_db
def test_an_upload_stores_its_first_attempt_without_a_savepoint_or_a_read_back(
    tmp_path, django_capture_on_commit_callbacks
):
    """An upload writes its submission and first attempt in its own transaction: no savepoint
    of the attempt's own, no look-up of earlier attempts, and one task sent after commit, for
    the new attempt (from the rows in memory: the evaluation is not read back). A re-evaluation
    still numbers its attempt after the stored ones."""
    phase, preds = classification_phase(tmp_path, n_cases=20)
    user = UserFactory()
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks() as callbacks,
    ):
        submission = submission_create(
            user=user, phase=phase, file=SimpleUploadedFile("p.csv", preds.read_bytes())
        )
    sqls = [q["sql"] for q in queries.captured_queries]
    # the one savepoint is the upload's own block inside the test's transaction
    assert len([s for s in sqls if s.startswith("SAVEPOINT")]) == 1
    # no evaluation row is read (the limits statement only counts them)
    assert not any(s.startswith('SELECT "challenges_evaluation"."id"') for s in sqls)
    (evaluation,) = submission.evaluations.all()
    assert evaluation.attempt == 1 and evaluation.state == "queued" and len(callbacks) == 1
    assert submission_reevaluate(submission=submission).attempt == 2
    assert list(submission.evaluations.values_list("attempt", "state").order_by("attempt")) == [
        (1, "cancelled"),
        (2, "queued"),
    ]


@pytest.mark.django_db
def test_reevaluation_keeps_history_and_yields_one_entry(tmp_path):
    phase, preds = classification_phase(tmp_path)
    user = UserFactory()
    submission = _scored(phase, preds, user)
    leaderboard_update(phase_id=phase.pk)
    # The organizer fixes a reference label, then re-runs the submission.
    case = phase.dataset.cases.filter(leaderboard_part="public").first()
    case.label = "1" if case.label == "0" else "0"
    case.save()
    again = submission_reevaluate(submission=submission)
    assert again.attempt == 2
    evaluation_score(evaluation_id=again.pk)
    leaderboard_update(phase_id=phase.pk)
    attempts = Evaluation.objects.filter(submission=submission).order_by("attempt")
    assert [e.state for e in attempts] == ["succeeded", "succeeded"]
    assert [e.results.count() for e in attempts] == [2, 2]  # the old result stays
    row = LeaderboardEntry.objects.get(phase=phase, part="public")
    assert row.evaluation_id == again.pk
    old, new = (e.results.get(part="public").aggregates["auc_roc"] for e in attempts)
    assert old != new and row.score == new
    history = LeaderboardSnapshot.objects.filter(phase=phase, part="public").order_by("created_at")
    assert [h.rows[0]["score"] for h in history] == [old, new]


@pytest.mark.django_db
def test_participant_is_emailed_when_the_evaluation_ends(
    tmp_path, mailoutbox, django_capture_on_commit_callbacks
):
    phase, preds = classification_phase(tmp_path)
    user = UserFactory(email="researcher@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        submission = _scored(phase, preds, user)
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["researcher@example.org"]
    assert f"submission #{submission.pk} succeeded" in mail.subject
    assert phase.get_absolute_url() in mail.body


@pytest.mark.django_db
def test_ladder_moves_the_shown_score_only_for_a_real_improvement(tmp_path):
    import csv

    import numpy as np

    phase, preds = classification_phase(tmp_path, n_cases=400)
    phase.use_ladder = True
    phase.metrics = ["brier", "auc_roc"]
    phase.primary_metric = "brier"  # a mean over cases, so paired differences exist
    phase.primary_direction = "lower"
    phase.save()
    with (tmp_path / "cls" / "reference.csv").open() as fh:
        labels = {r["case_id"]: float(r["label"]) for r in csv.DictReader(fh)}
    with preds.open() as fh:
        scores = {r["case_id"]: float(r["score"]) for r in csv.DictReader(fh)}

    def write(name: str, values: dict[str, float]) -> Path:
        path = tmp_path / name
        path.write_text("case_id,score\n" + "".join(f"{c},{v:.6f}\n" for c, v in values.items()))
        return path

    # A hair better on average: one public case much better, another almost as much worse.
    a, b = phase.dataset.cases.filter(leaderboard_part="public").values_list("case_id", flat=True)[
        :2
    ]
    noise = dict(scores)
    noise[a] = scores[a] + 0.2 * (labels[a] - scores[a])
    gain = (scores[a] - labels[a]) ** 2 - (noise[a] - labels[a]) ** 2
    direction = 1.0 if scores[b] >= labels[b] else -1.0
    noise[b] = labels[b] + direction * np.sqrt(gain * 0.9 + (scores[b] - labels[b]) ** 2)
    perfect = {c: 0.9 * labels[c] + 0.05 for c in scores}
    user = UserFactory()
    first = _scored(phase, preds, user)
    second = _scored(phase, write("noise.csv", noise), user)
    leaderboard_update(phase_id=phase.pk)

    def public_brier(sub):
        return sub.evaluations.get().results.get(part="public").aggregates["brier"]

    assert public_brier(second) < public_brier(first)  # "best" alone would pick the noise
    row = LeaderboardEntry.objects.get(phase=phase, part="public")
    assert row.submission_id == first.pk  # the Ladder does not move for noise
    third = _scored(phase, write("perfect.csv", perfect), user)
    leaderboard_update(phase_id=phase.pk)
    row = LeaderboardEntry.objects.get(phase=phase, part="public")
    assert row.submission_id == third.pk and row.n_submissions == 3


@pytest.mark.django_db
def test_incremental_update_gives_the_same_board_as_a_full_recomputation(tmp_path):
    from challenges.services.leaderboards import leaderboard_apply_result

    phase, preds = classification_phase(tmp_path, n_cases=300)
    phase.metrics = ["brier", "auc_roc"]
    phase.primary_metric, phase.primary_direction = "brier", "lower"  # gets rank intervals
    phase.save()
    lines = preds.read_text().splitlines()
    users = [UserFactory() for _ in range(4)]
    for i, user in enumerate(users * 2):  # two submissions each, of varying quality
        path = tmp_path / f"v{i}.csv"
        rows = [lines[0]]
        for ln in lines[1:]:
            case, s = ln.split(",")
            rows.append(f"{case},{(float(s) * (1 - 0.1 * i) + 0.05 * i):.6f}")
        path.write_text("\n".join(rows) + "\n")
        submission = _scored(phase, path, user)
        leaderboard_apply_result(evaluation_id=submission.evaluations.get().pk)

    def board():
        return sorted(
            LeaderboardEntry.objects.filter(phase=phase).values_list(
                "part", "entrant", "rank", "score", "submission_id", "n_submissions",
                "rank_low", "rank_high", "tier",
            )
        )  # fmt: skip

    assert not any(row[6] is not None for row in board())  # ranges: off the scoring path
    phase.refresh_from_db()
    assert phase.ranges_pending_since is not None and phase.ranges_due_at is not None
    assert compute_rank_ranges(phase) is not None
    incremental = board()
    assert len(incremental) == 8  # 4 entrants x 2 parts
    assert any(row[6] is not None for row in incremental)  # rank intervals are there
    leaderboard_update(phase_id=phase.pk)
    assert board() == incremental
