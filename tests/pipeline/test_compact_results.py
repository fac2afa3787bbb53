"""Per-case values are stored as binary columns, and rank ranges are computed off the scoring
path, once a board is quiet (issue 15). Real PostgreSQL; the tasks are called as a worker would."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from challenges.models import LeaderboardEntry, Phase, Result
from challenges.services.leaderboards import (
    _ranges_request,
    leaderboard_ranges,
    leaderboard_ranges_resend,
)
from evaluator import ScoreOptions, score
from evaluator.case_table import MAGIC
from tests.factories import UserFactory, classification_phase
from tests.helpers import submit_and_score


@pytest.mark.django_db
def test_stored_per_case_values_are_binary_and_equal_to_what_the_evaluator_computed(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=600, primary_metric="brier")
    evaluation = submit_and_score(phase, UserFactory(), preds.read_bytes())
    evaluation.refresh_from_db()
    assert evaluation.state == "succeeded"
    # the worker's own clock, per stage (shown on the submission page, used by the benchmark)
    assert {"score_public_s", "score_private_s", "store_s", "scoring_s"} <= set(evaluation.timings)
    result = evaluation.results.get(part="public")
    raw = bytes(result.case_values)
    assert raw.startswith(MAGIC)
    ids = sorted(result.cases)
    expected = score(
        "classification",
        _reference(phase),
        preds,
        options=ScoreOptions(bootstrap=0, case_ids=ids, seed=phase.pk, on_missing="worst"),
    )
    assert result.cases.to_dict() == expected.to_json()["cases"]
    as_json = json.dumps(result.cases.to_dict()).encode()
    assert len(raw) < len(as_json) / 3
    # the database holds the bytes, not a JSON document
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT octet_length(case_values) FROM challenges_result WHERE id = %s", [result.pk]
        )
        assert cursor.fetchone()[0] == len(raw)


def _reference(phase):
    from challenges.services.references import reference_for_phase

    return reference_for_phase(phase=phase).path


@pytest.mark.django_db(transaction=True)
def test_migration_moves_stored_json_values_to_columns_and_back(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=60, primary_metric="brier")
    evaluation = submit_and_score(phase, UserFactory(), preds.read_bytes())
    before = {r.part: r.cases.to_dict() for r in evaluation.results.all()}
    assert before["public"] and before["private"]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("challenges")
    try:
        executor.migrate([("challenges", "0012_phase_gpu_queue")])
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT part, cases FROM challenges_result WHERE evaluation_id = %s",
                [evaluation.pk],
            )
            as_json = {
                part: json.loads(cases) if isinstance(cases, str) else cases
                for part, cases in cursor.fetchall()
            }
        assert as_json == before  # what an installation before this change stored
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(latest)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes("challenges"))
    after = {r.part: r.cases.to_dict() for r in Result.objects.filter(evaluation=evaluation)}
    assert after == before


@pytest.mark.django_db
def test_rank_ranges_wait_for_a_quiet_board_and_never_past_the_cap(
    tmp_path, django_capture_on_commit_callbacks
):
    phase, preds = classification_phase(tmp_path, n_cases=300, primary_metric="brier")
    body = preds.read_bytes()
    for name in ("a", "b", "c"):
        submit_and_score(phase, UserFactory(username=name), body)
    assert not LeaderboardEntry.objects.filter(phase=phase, rank_low__isnull=False).exists()
    phase.refresh_from_db()
    quiet = timedelta(seconds=settings.SCANBENCH_RANGES_QUIET_S)
    cap = timedelta(seconds=settings.SCANBENCH_RANGES_MAX_WAIT_S)
    first = phase.ranges_pending_since
    assert first is not None and phase.ranges_due_at is not None

    # each new result pushes the computation back, never past the cap after the first
    with django_capture_on_commit_callbacks() as sent:
        _ranges_request(phase, now=first + quiet / 2)
    assert sent == []  # one task per pending computation: later requests only move its time
    phase.refresh_from_db()
    assert phase.ranges_due_at == first + quiet / 2 + quiet
    _ranges_request(phase, now=first + cap - quiet / 4)
    phase.refresh_from_db()
    assert phase.ranges_due_at == first + cap and phase.ranges_pending_since == first

    # the task, arriving early, waits for the new time instead of computing
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert leaderboard_ranges(phase_id=phase.pk, now=first + quiet) is None
    assert len(sent) == 1
    assert not LeaderboardEntry.objects.filter(phase=phase, rank_low__isnull=False).exists()

    # a lost task is sent again by the reaper once overdue
    late = first + cap + timedelta(minutes=10)
    assert leaderboard_ranges_resend(now=late) == 1

    # once due, it computes every row's range and tier, and nothing stays pending
    assert leaderboard_ranges(phase_id=phase.pk, now=first + cap) == {"public": 3, "private": 3}
    rows = LeaderboardEntry.objects.filter(phase=phase)
    assert all(r.rank_low is not None and r.tier is not None for r in rows)
    assert all(r.rank_low <= r.rank <= r.rank_high for r in rows)
    phase = Phase.objects.get(pk=phase.pk)
    assert phase.ranges_pending_since is None and phase.ranges_due_at is None
    assert leaderboard_ranges_resend(now=late) == 0
    assert leaderboard_ranges(phase_id=phase.pk, now=late) is None


@pytest.mark.django_db
def test_a_row_replaced_while_ranges_are_computed_is_left_for_the_next_computation(tmp_path):
    phase, preds = classification_phase(tmp_path, n_cases=300, primary_metric="brier")
    body = preds.read_bytes()
    users = [UserFactory() for _ in range(3)]
    for user in users:
        submit_and_score(phase, user, body)
    stale = list(LeaderboardEntry.objects.filter(phase=phase, part="public"))
    # a new result of the first entrant replaces its row (new primary key) ...
    submit_and_score(phase, users[0], body)
    replaced = LeaderboardEntry.objects.get(phase=phase, part="public", participant=users[0])
    assert replaced.pk not in {r.pk for r in stale}
    # ... so values computed for the old rows cannot land on it
    for r in stale:
        r.rank_low = r.rank_high = r.tier = 1
    LeaderboardEntry.objects.bulk_update(stale, ["rank_low", "rank_high", "tier"])
    replaced.refresh_from_db()
    assert replaced.rank_low is None
    later = timezone.now() + timedelta(seconds=settings.SCANBENCH_RANGES_MAX_WAIT_S + 1)
    assert leaderboard_ranges(phase_id=phase.pk, now=later) == {"public": 3, "private": 3}
    replaced.refresh_from_db()
    assert replaced.rank_low is not None


def _seed_board(phase, n_users: int, per_user: int, seed: int = 0):
    """Scored results written directly (no scoring), several per participant, some attempts
    re-run, some scores missing: what a full recomputation reads."""
    import random

    from django.contrib.auth.models import User

    from challenges.models import Evaluation, Submission

    rng = random.Random(seed)
    users = User.objects.bulk_create([User(username=f"seed{seed}-{i}") for i in range(n_users)])
    subs = Submission.objects.bulk_create(
        [
            Submission(phase=phase, participant=u, kind="predictions", file="x.csv", sha256="0")
            for u in users
            for _ in range(per_user)
        ]
    )
    now = timezone.now()
    evs, results = [], []
    for s in subs:
        for attempt in (1, 2) if rng.random() < 0.2 else (1,):
            ev = Evaluation(submission=s, attempt=attempt, state="succeeded", finished_at=now)
            evs.append(ev)
    Evaluation.objects.bulk_create(evs)
    for ev in evs:
        for part in ("public", "private"):
            score = None if rng.random() < 0.05 else round(rng.random(), 2)  # ties happen
            results.append(Result(evaluation=ev, part=part, aggregates={"brier": score}))
    Result.objects.bulk_create(results)
    return users


def _newest_attempts_in_order(phase):
    """(submission id, its newest successful evaluation), in submission order."""
    from challenges.models import Evaluation

    newest = {}
    for ev in Evaluation.objects.filter(submission__phase=phase, state="succeeded"):
        if ev.submission_id not in newest or ev.attempt > newest[ev.submission_id].attempt:
            newest[ev.submission_id] = ev
    return sorted(newest.items(), key=lambda kv: (kv[1].submission.created_at, kv[0]))


def _expected(phase, part):
    """The board by the rule docs/pipeline.md states, computed in Python from every result:
    newest attempt per submission; per participant the lowest Brier score, the earliest
    submission on a tie, a missing score last."""

    best = {}
    for sub_id, ev in _newest_attempts_in_order(phase):
        score = ev.results.get(part=part).aggregates.get("brier")
        uid = ev.submission.participant_id
        key = (score is None, score if score is not None else 0.0)
        if uid not in best or key < best[uid][0]:
            best[uid] = (key, sub_id, best.get(uid, (None, None, 0))[2] + 1)
        else:
            best[uid] = (best[uid][0], best[uid][1], best[uid][2] + 1)
    return {f"user:{uid}": (sub, n) for uid, (_key, sub, n) in best.items()}


@pytest.mark.django_db
@pytest.mark.parametrize("copy_from", [10**9, 1], ids=["insert", "copy"])
def test_full_recomputation_follows_the_rule_on_a_large_board(tmp_path, copy_from, monkeypatch):
    """Hundreds of entrants (the database chooses their rows; PostgreSQL's COPY writes them
    from 200 rows on): the same board as the rule computed in Python, and the same again when
    the stored board is already there (nothing rewritten)."""
    import challenges.services.leaderboards as boards

    monkeypatch.setattr(boards, "COPY_FROM_ROWS", copy_from)
    phase, _preds = classification_phase(tmp_path, n_cases=20, primary_metric="brier")
    phase.primary_direction = "lower"
    phase.save()
    _seed_board(phase, n_users=250, per_user=3)
    assert boards.leaderboard_update(phase_id=phase.pk) == {"public": 250, "private": 250}
    for part in ("public", "private"):
        rows = LeaderboardEntry.objects.filter(phase=phase, part=part)
        got = {r.entrant: (r.submission_id, r.n_submissions) for r in rows}
        assert got == _expected(phase, part)
        scores = [r.score for r in rows.order_by("rank")]
        present = [s for s in scores if s is not None]
        assert present == sorted(present) and scores[: len(present)] == present
        assert all(r.aggregates["brier"] == r.score for r in rows)
    before = list(LeaderboardEntry.objects.filter(phase=phase).values_list("pk", "updated_at"))
    boards.leaderboard_update(phase_id=phase.pk)
    assert list(LeaderboardEntry.objects.filter(phase=phase).values_list("pk", "updated_at")) == (
        before
    )


@pytest.mark.django_db
@pytest.mark.parametrize("snapshot_due", [False, True], ids=["no-snapshot", "snapshot"])
def test_applying_a_result_reads_the_phase_once_and_counts_nothing(
    tmp_path, settings, snapshot_due
):
    """The scoring path's board update (``leaderboard_apply_result``): the phase is read once
    (locked), and no row is counted only to be returned."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test.utils import CaptureQueriesContext

    from challenges.services.leaderboards import leaderboard_apply_result
    from challenges.services.scoring import evaluation_score
    from challenges.services.submissions import submission_create

    phase, preds = classification_phase(tmp_path, n_cases=50, primary_metric="brier")
    body = preds.read_bytes()
    users = [UserFactory() for _ in range(3)]
    for user in users:
        submit_and_score(phase, user, body)
    submission = submission_create(
        user=users[0], phase=phase, file=SimpleUploadedFile("p.csv", body)
    )
    evaluation = submission.evaluations.get()
    evaluation_score(evaluation_id=evaluation.pk)
    settings.SCANBENCH_SNAPSHOT_INTERVAL_S = 0 if snapshot_due else 3600
    with CaptureQueriesContext(connection) as queries:
        leaderboard_apply_result(evaluation_id=evaluation.pk)
    sqls = [q["sql"] for q in queries.captured_queries]
    phase_reads = [s for s in sqls if s.startswith("SELECT") and 'FROM "challenges_phase"' in s]
    # the phase's row alone is locked (not its challenge's, which other work locks)
    assert len(phase_reads) == 1 and phase_reads[0].endswith('FOR UPDATE OF "challenges_phase"')
    assert not any(s.startswith("SELECT COUNT(") for s in sqls)  # the board is not counted
    # the evaluation, the locked phase, the results waiting, clearing their marks, exclusions,
    # the entrants' rows (chosen, then hydrated); for both parts at once: delete, insert,
    # re-rank, the last snapshots' dates (per part when one is due: the board, the last
    # snapshot's rows, the new snapshot); the ranges request; savepoint and release
    assert len(sqls) == (20 if snapshot_due else 14)
    assert len([s for s in sqls if s.startswith("DELETE")]) == 1
    assert len([s for s in sqls if s.startswith('INSERT INTO "challenges_leaderboardentry')]) == 1
    first = LeaderboardEntry.objects.get(phase=phase, part="public", participant=users[0])
    assert first.n_submissions == 2 and first.submission_id != submission.pk  # a tie: the earliest


def _expected_ladder(phase, part):
    """A Ladder board by its rule, from every result: the newest attempt per submission, hidden
    submissions and disqualified participants left out; per participant, in submission order,
    the submission ``ranking.ladder`` shows last (the only one, when there is one)."""
    from challenges.models import EntryExclusion
    from evaluator import ranking

    exclusions = EntryExclusion.objects.filter(phase=phase, lifted_at__isnull=True)
    hidden = {e.submission_id for e in exclusions if e.submission_id}
    out_users = {e.participant_id for e in exclusions if e.participant_id}
    by_user = {}
    for sub_id, ev in _newest_attempts_in_order(phase):
        uid = ev.submission.participant_id
        if sub_id not in hidden and uid not in out_users:
            by_user.setdefault(uid, []).append(ev.results.get(part=part))
    expected = {}
    for uid, results in by_user.items():
        pick = results[0]
        if len(results) > 1:
            steps = ranking.ladder(
                [(str(r.pk), r.cases.column("brier")) for r in results], higher_is_better=False
            )
            if steps[-1].best:
                pick = next(r for r in results if str(r.pk) == steps[-1].best)
        expected[f"user:{uid}"] = (pick.evaluation.submission_id, len(results))
    return expected


@pytest.mark.django_db
def test_a_ladder_board_follows_the_rule_for_every_entrant(tmp_path):
    """Ladder boards take their candidates from the same query as the other boards (newest
    attempt, exclusions) and choose among them with the Ladder: many entrants, some with one
    submission, re-run attempts, a hidden submission and a disqualified participant."""
    import random

    from challenges.models import EntryExclusion, ExclusionKind
    from challenges.services.leaderboards import leaderboard_apply_result

    phase, _preds = classification_phase(tmp_path, n_cases=20, primary_metric="brier")
    phase.use_ladder, phase.primary_direction = True, "lower"
    phase.save()
    users = _seed_board(phase, n_users=40, per_user=4, seed=1)
    users += _seed_board(phase, n_users=5, per_user=1, seed=2)
    rng = random.Random(3)
    results = list(Result.objects.filter(evaluation__submission__phase=phase))
    for r in results:  # per-case values: some submissions much better, others a hair
        quality = rng.choice([0.2, 0.5, 0.52, 0.8])
        r.cases = {f"c{i}": {"brier": quality + rng.uniform(-0.1, 0.1)} for i in range(30)}
    Result.objects.bulk_update(results, ["case_values"])
    organizer = UserFactory()
    hidden = users[0].submissions.order_by("created_at", "pk").first()
    EntryExclusion.objects.create(
        phase=phase, kind=ExclusionKind.HIDDEN, submission=hidden, reason="x", created_by=organizer
    )
    EntryExclusion.objects.create(
        phase=phase, kind=ExclusionKind.DISQUALIFIED, participant=users[1], reason="x",
        created_by=organizer,
    )  # fmt: skip
    # from the scoring path, a Ladder board is recomputed whole (under the phase's one lock)
    leaderboard_apply_result(evaluation_id=results[0].evaluation_id)
    moved = 0
    for part in ("public", "private"):
        got = {
            r.entrant: (r.submission_id, r.n_submissions)
            for r in LeaderboardEntry.objects.filter(phase=phase, part=part)
        }
        expected = _expected_ladder(phase, part)
        assert got == expected
        assert len(got) == 44 and f"user:{users[1].pk}" not in got
        assert got[f"user:{users[0].pk}"][1] == 3
        firsts = {
            u.pk: u.submissions.exclude(pk=hidden.pk).order_by("created_at", "pk").first().pk
            for u in users
        }
        moved += sum(sub != firsts[int(e.split(":")[1])] for e, (sub, _n) in got.items())
    assert moved  # the Ladder did move for some entrants


@pytest.mark.django_db
def test_a_burst_of_results_is_applied_by_one_delivery_and_the_reaper_sends_a_lost_one(
    tmp_path, monkeypatch
):
    """Results waiting for their rows are applied together by the first delivery that takes the
    phase's lock; the deliveries after it find nothing to do. A result whose delivery was lost
    is sent again by the reaper once it has waited a minute, and then lands on the board."""
    from datetime import timedelta

    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from challenges import tasks
    from challenges.models import Evaluation
    from challenges.services.evaluations import evaluations_reap
    from challenges.services.leaderboards import leaderboard_apply_result
    from challenges.services.scoring import evaluation_score
    from challenges.services.submissions import submission_create

    phase, preds = classification_phase(tmp_path, n_cases=40, primary_metric="brier")
    body = preds.read_bytes()
    users = [UserFactory() for _ in range(4)]
    evaluations = []
    for user in users:  # scored, but no leaderboard task has run yet: a burst
        submission = submission_create(
            user=user, phase=phase, file=SimpleUploadedFile("p.csv", body)
        )
        evaluation = submission.evaluations.get()
        evaluation_score(evaluation_id=evaluation.pk)
        evaluations.append(evaluation)
    assert Evaluation.objects.filter(board_pending=True).count() == 4
    assert not LeaderboardEntry.objects.filter(phase=phase).exists()

    leaderboard_apply_result(evaluation_id=evaluations[2].pk)  # the first delivery to run
    assert set(
        LeaderboardEntry.objects.filter(phase=phase, part="public").values_list(
            "participant_id", flat=True
        )
    ) == {u.pk for u in users}
    assert not Evaluation.objects.filter(board_pending=True).exists()
    before = list(LeaderboardEntry.objects.filter(phase=phase).values_list("pk", "updated_at"))
    for evaluation in (evaluations[0], evaluations[1], evaluations[3]):
        with CaptureQueriesContext(connection) as queries:
            leaderboard_apply_result(evaluation_id=evaluation.pk)
        # the evaluation, the locked phase, the results waiting, its entrant's newer row
        assert len(queries.captured_queries) <= 6
    after = list(LeaderboardEntry.objects.filter(phase=phase).values_list("pk", "updated_at"))
    assert after == before  # nothing written again

    # a result whose leaderboard task was lost
    submission = submission_create(
        user=users[0], phase=phase, file=SimpleUploadedFile("p.csv", body.replace(b"0.", b"0.0"))
    )
    lost = submission.evaluations.get()
    evaluation_score(evaluation_id=lost.pk)
    sent = []
    monkeypatch.setattr(
        tasks.leaderboard_apply_result,
        "apply_async",
        lambda kwargs, **_: sent.append(kwargs["evaluation_id"]),
    )
    assert evaluations_reap()["board_resent"] == 0  # it has not waited long enough
    later = timezone.now() + timedelta(seconds=61)
    assert evaluations_reap(now=later)["board_resent"] == 1
    assert sent == [lost.pk]
    leaderboard_apply_result(evaluation_id=sent[0])
    row = LeaderboardEntry.objects.get(phase=phase, part="public", participant=users[0])
    assert row.n_submissions == 2
    assert not Evaluation.objects.filter(board_pending=True).exists()


@pytest.mark.django_db
def test_results_are_inserted_with_server_bound_parameters_and_the_default_comes_back(tmp_path):
    """The per-case values travel as a bound parameter (no hexadecimal in the SQL text), every
    byte value round-trips, and the connection's usual client-side binding is back after the
    block, an error in it included."""
    from django.test.utils import CaptureQueriesContext

    from challenges.dbtools import server_bound_parameters

    if connection.vendor != "postgresql":
        pytest.skip("server-side parameters are PostgreSQL's")
    phase, preds = classification_phase(tmp_path, n_cases=40)
    evaluation = submit_and_score(phase, UserFactory(), preds.read_bytes())
    connection.ensure_connection()
    default = connection.connection.cursor_factory
    blob = bytes(range(256)) * 300
    with CaptureQueriesContext(connection) as queries, server_bound_parameters():
        Result.objects.filter(evaluation=evaluation, part="public").update(case_values=blob)
    assert connection.connection.cursor_factory is default
    (sql,) = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert "\\x" not in sql and len(sql) < 1000, sql[:200]
    assert bytes(Result.objects.get(evaluation=evaluation, part="public").case_values) == blob
    with pytest.raises(RuntimeError), server_bound_parameters():
        raise RuntimeError("in the block")
    assert connection.connection.cursor_factory is default
    with CaptureQueriesContext(connection) as queries:
        Result.objects.filter(evaluation=evaluation, part="public").update(case_values=b"\x01")
    assert "\\x01" in queries.captured_queries[-1]["sql"]  # client-side again


@pytest.mark.django_db
def test_attempts_are_numbered_from_one(tmp_path):
    """The leaderboard finds a submission's newest attempt among second and later ones only; the
    database refuses an attempt numbered 0, which that rule would miss."""
    from django.db import IntegrityError, transaction

    from challenges.models import Evaluation

    phase, preds = classification_phase(tmp_path, n_cases=20)
    evaluation = submit_and_score(phase, UserFactory(), preds.read_bytes())
    with pytest.raises(IntegrityError), transaction.atomic():
        Evaluation.objects.create(submission=evaluation.submission, attempt=0)
    assert Evaluation.objects.filter(submission=evaluation.submission).count() == 1


@pytest.mark.django_db
def test_many_ids_match_the_same_rows_with_one_parameter(tmp_path):
    """A long id list filters as one array parameter on PostgreSQL (no placeholder per id in
    the SQL), a short one as the plain list; both match exactly the rows the list names."""
    from django.contrib.auth.models import User
    from django.test.utils import CaptureQueriesContext

    from challenges.dbtools import MANY_IDS, many_ids

    users = User.objects.bulk_create([User(username=f"ids{i}") for i in range(2 * MANY_IDS + 50)])
    wanted = [u.pk for u in users[::2]] + [10**9]  # one id that matches nothing
    assert len(wanted) >= MANY_IDS
    with CaptureQueriesContext(connection) as queries:
        got = sorted(User.objects.filter(pk__in=many_ids(wanted)).values_list("pk", flat=True))
    assert got == sorted(u.pk for u in users[::2])
    sql = queries.captured_queries[-1]["sql"]
    if connection.vendor == "postgresql":
        # the ids are one array literal, not a list of values written one by one
        assert "IN (SELECT unnest('{" in sql and f",{users[2].pk}," in sql, sql[:300]
        assert f"IN ({users[0].pk}," not in sql
    assert many_ids(wanted[:3]) == wanted[:3]
    assert list(User.objects.filter(pk__in=many_ids(iter([]))).values_list("pk")) == []
