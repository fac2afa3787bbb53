"""Materialized leaderboards: recomputed after each result, read without computing metrics.

Per phase and part (public: live; private: kept up to date but shown to non-organizers only
once every phase on the same hidden test cases has closed, ``selectors.private_part_revealed``),
one row per entrant (a participant, a team, or a baseline), chosen as the phase says (best or
latest submission, or the Ladder), ranked on the stored full-precision primary metric, ties
sharing a rank. Rank intervals (bootstrap over cases) and significance tiers (Wilcoxon + Holm)
are added where the primary metric is a mean over cases. Every change is kept as a dated
snapshot.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case as DbCase
from django.db.models import (
    CharField,
    Exists,
    F,
    FloatField,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from challenges.dbtools import many_ids
from challenges.models import (
    Case,
    CaseSplit,
    EntryExclusion,
    Evaluation,
    EvaluationState,
    LeaderboardEntry,
    LeaderboardSnapshot,
    Phase,
    Result,
    Submission,
    TaskType,
)
from challenges.models.phase import Direction, EntrySelection, RankingScheme
from evaluator import ranking
from evaluator.case_table import CaseTable
from evaluator.metrics.classification import BINARY_METRIC_NAMES
from evaluator.metrics.registry import Task
from evaluator.ranking_sets import FAST_SET_METRICS, SetEntry, set_metric_bootstrap

logger = logging.getLogger(__name__)

PARTS = ("public", "private")
# Metrics whose aggregate is the mean of per-case values: only these get bootstrap rank
# intervals and Wilcoxon tiers over cases. Classification: only the Brier score (AUC,
# sensitivity, ... are computed over the whole set, not averaged over cases).
PER_CASE_MEAN = {
    "segmentation": {"dice", "iou", "hd", "hd95", "assd", "nsd", "sensitivity", "specificity"},
    "classification": {"brier"},
}


def _per_case_mean(phase: Phase) -> bool:
    return phase.primary_metric in PER_CASE_MEAN.get(phase.challenge.task_type, set())


def _set_level(phase: Phase) -> bool:
    """A classification metric of the whole set: rank intervals and tiers come from a paired
    bootstrap that scores every entry again on each resample (evaluator.ranking_sets)."""
    return (
        phase.challenge.task_type == TaskType.CLASSIFICATION
        and phase.primary_metric in BINARY_METRIC_NAMES
        and not _per_case_mean(phase)
    )


def stability_method(phase: Phase) -> str | None:
    """How the board's rank ranges and tiers are made: "wilcoxon" (a mean over cases),
    "paired_bootstrap" (a set-level metric) or None (neither applies)."""
    if _set_level(phase):
        return "paired_bootstrap"
    return "wilcoxon" if _per_case_mean(phase) else None


MAX_STABILITY_CELLS = 5_000_000  # entries x cases; beyond this the update stays O(entries)
# Set-level metrics: entries x cases x resamples. The vectorized metrics (confusion counts,
# AUC-ROC) cost about a second per 1e8 cells on one core; the others call the metric per
# resample and get a tenth of that. Fewer resamples are drawn to stay in budget, none below
# MIN_SET_RESAMPLES (the board then shows no ranges rather than unstable ones).
SET_LEVEL_CELLS = 100_000_000
SET_LEVEL_CELLS_SLOW = 10_000_000
MIN_SET_RESAMPLES = 200


def _set_level_resamples(phase: Phase, n_entries: int, n_cases: int) -> int:
    binary = len(phase.challenge.classes or []) <= 2
    fast = binary and phase.primary_metric in FAST_SET_METRICS
    budget = SET_LEVEL_CELLS if fast else SET_LEVEL_CELLS_SLOW
    n = min(settings.SCANBENCH_RANK_BOOTSTRAP, budget // max(1, n_entries * n_cases))
    return n if n >= MIN_SET_RESAMPLES else 0


@dataclass
class _Candidate:
    """A submission's newest successful result in one part. Built light for every submission
    (ids, entrant and the primary score, read from the database as text: no JSON document is
    parsed); the rest is filled in by :func:`_hydrate` only for the rows that make the board."""

    result_id: int
    evaluation_id: int
    submission_id: int
    entrant: str
    participant_id: int | None
    team_id: int | None
    is_baseline: bool
    primary: float | None
    created_at: datetime | None = None
    display_name: str = ""
    aggregates: dict[str, Any] | None = None
    meta_intervals: dict[str, Any] = field(default_factory=dict)
    worst_filled: int = 0

    def score(self, metric: str) -> float | None:
        if self.aggregates is None:
            return self.primary  # only the primary metric is known before _hydrate
        v = self.aggregates.get(metric)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _entrant(baseline: bool, baseline_name: str | None, team_id: int | None, user_id: Any) -> str:
    """The key a board groups submissions by: a baseline, a team, or a solo participant."""
    if baseline:
        return f"baseline:{baseline_name}"
    if team_id is not None:
        return f"team:{team_id}"
    return f"user:{user_id}"


def _newest_attempts(phase: Phase, only: Q | None = None) -> QuerySet[Any]:
    """The candidates of a board, unordered: per part, the newest successful attempt of every
    submission in the phase (of one entrant, with ``only``), submissions an organizer hid and
    entrants disqualified left out, as rows of ``part, r_part, id, r_ev, r_sub, r_attempt,
    r_created, r_uid, r_tid, r_baseline, r_solo, r_bname, r_score``. Both :func:`_chosen` (as a
    CTE) and :func:`_ladder` read it: the rule of which attempt counts lives here only."""
    hidden, out_users, out_teams = _exclusions(phase)
    sub = "evaluation__submission__"
    return (
        Result.objects.filter(
            evaluation__state=EvaluationState.SUCCEEDED, evaluation__submission__phase=phase
        )
        .filter(only or Q())
        .exclude(evaluation__submission_id__in=hidden)
        .exclude(Q(**{f"{sub}team__isnull": True, f"{sub}participant_id__in": out_users}))
        .exclude(**{f"{sub}team_id__in": out_teams})
        # only the newest successful attempt of a submission (with a result in the same part);
        # a newer attempt is a second one at least (attempts count from 1, a constraint), which
        # lets PostgreSQL look up the few re-evaluations instead of hashing every result again
        .exclude(
            Exists(
                Result.objects.filter(
                    part=OuterRef("part"),
                    evaluation__submission_id=OuterRef("evaluation__submission_id"),
                    evaluation__attempt__gt=OuterRef("evaluation__attempt"),
                    evaluation__attempt__gte=2,
                    evaluation__state=EvaluationState.SUCCEEDED,
                )
            )
        )
        .annotate(
            # the part as a number: text keys sort under the database's collation, slowly
            r_part=DbCase(
                When(part="public", then=Value(0)), default=Value(1), output_field=IntegerField()
            ),
            r_ev=F("evaluation_id"),
            r_sub=F("evaluation__submission_id"),
            r_attempt=F("evaluation__attempt"),
            r_created=F(f"{sub}created_at"),
            r_uid=F(f"{sub}participant_id"),
            r_tid=F(f"{sub}team_id"),
            r_baseline=F(f"{sub}is_baseline"),
            # the entrant as numbers and a name, not as text: sorting 100,000 strings under
            # the database's collation costs more than the rest of the query
            r_solo=DbCase(
                When(
                    **{f"{sub}is_baseline": False, f"{sub}team__isnull": True},
                    then=F(f"{sub}participant_id"),
                ),
                default=None,
            ),
            r_bname=DbCase(
                When(**{f"{sub}is_baseline": True}, then=F(f"{sub}baseline_name")),
                default=None,
                output_field=CharField(),
            ),
            r_score=Cast(KeyTextTransform(phase.primary_metric, "aggregates"), FloatField()),
        )
        .values_list(
            "part", "r_part", "id", "r_ev", "r_sub", "r_attempt", "r_created", "r_uid", "r_tid",
            "r_baseline", "r_solo", "r_bname", "r_score",
        )
        .order_by()
    )  # fmt: skip


def _chosen(phase: Phase, only: Q | None = None) -> dict[str, dict[str, tuple[_Candidate, int]]]:
    """One row per part and entrant, as the phase chooses, with how many submissions each
    entrant has: computed in the database (an anti-join and a grouped aggregate, PostgreSQL and
    SQLite alike), so that a phase with 100,000 evaluations sends back one row per entrant, not
    per submission. Ladder boards need every candidate's per-case values: :func:`_ladder`."""
    if phase.use_ladder and phase.entry_selection != EntrySelection.LATEST:
        return _ladder(phase, only)
    sql, params = _newest_attempts(phase, only).query.sql_with_params()
    latest = phase.entry_selection == EntrySelection.LATEST
    higher = phase.primary_direction == Direction.HIGHER
    # Grouping (hashed) rather than sorting 100,000 rows: the newest attempt of each submission,
    # then each entrant's best score (or latest date) and count; the rows that reach it come back
    # (one per entrant, more on a tie), and the earliest of a tie is taken below.
    key = "r_part, r_baseline, COALESCE(r_bname, ''), COALESCE(r_tid, -1), COALESCE(r_solo, -1)"
    target = "MAX(r_created)" if latest else ("MAX(r_score)" if higher else "MIN(r_score)")
    wanted = "c.r_created = g.target" if latest else "(c.r_score = g.target OR g.target IS NULL)"
    query = (
        f"WITH c AS ({sql}),"  # noqa: S608 (Django's own SQL and parameters; constants)
        " g AS (SELECT r_part AS g_part, r_baseline AS g_baseline,"
        "   COALESCE(r_bname, '') AS g_bname, COALESCE(r_tid, -1) AS g_tid,"
        f"   COALESCE(r_solo, -1) AS g_solo, {target} AS target, COUNT(*) AS n"
        f"   FROM c GROUP BY {key})"
        " SELECT c.part, c.id, c.r_ev, c.r_sub, c.r_uid, c.r_tid, c.r_baseline, c.r_bname,"
        "   c.r_score, g.n, c.r_created"
        " FROM c JOIN g ON c.r_part = g.g_part AND c.r_baseline = g.g_baseline"
        "   AND COALESCE(c.r_bname, '') = g.g_bname AND COALESCE(c.r_tid, -1) = g.g_tid"
        f"   AND COALESCE(c.r_solo, -1) = g.g_solo AND {wanted}"
    )
    out: dict[str, dict[str, tuple[_Candidate, int]]] = {part: {} for part in PARTS}
    order: dict[tuple[str, str], tuple[Any, ...]] = {}
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        for part, pk, ev, sid, uid, tid, baseline, bname, score, n, created in cursor.fetchall():
            baseline = bool(baseline)
            entrant = _entrant(baseline, bname, tid, uid)
            # a tie: the earliest submission (by date, then id) wins; for "latest", the last
            rank = (created, sid)
            seen = order.get((part, entrant))
            if seen is not None and (rank <= seen if latest else rank >= seen):
                continue
            order[(part, entrant)] = rank
            c = _Candidate(
                pk, ev, sid, entrant, None if baseline else uid, tid, baseline, _score(score)
            )
            out.setdefault(part, {})[entrant] = (c, int(n))
    _hydrate([c for rows in out.values() for c, _n in rows.values()])
    return out


def _ladder(phase: Phase, only: Q | None = None) -> dict[str, dict[str, tuple[_Candidate, int]]]:
    """:func:`_chosen` for a Ladder board (entry selection "best"): every candidate of
    :func:`_newest_attempts`, in submission order (created, then id); an entrant with several
    keeps the one ``ranking.ladder`` shows last over their per-case values of the primary metric
    (the first, when no submission has any), one with a single submission keeps it."""
    higher = phase.primary_direction == Direction.HIGHER
    metric = phase.primary_metric
    by_entrant: dict[str, dict[str, list[_Candidate]]] = {part: {} for part in PARTS}
    rows = _newest_attempts(phase, only).order_by("r_created", "r_sub")
    for part, _rp, pk, ev, sid, _at, _cr, uid, tid, baseline, _solo, bname, score in rows:
        baseline = bool(baseline)
        entrant = _entrant(baseline, bname, tid, uid)
        c = _Candidate(
            pk, ev, sid, entrant, None if baseline else uid, tid, baseline, _score(score)
        )
        by_entrant.setdefault(part, {}).setdefault(entrant, []).append(c)
    out: dict[str, dict[str, tuple[_Candidate, int]]] = {part: {} for part in PARTS}
    for part, entrants in by_entrant.items():
        for entrant, cs in entrants.items():
            pick = cs[0]
            if len(cs) > 1:
                per_case = _per_case([c.result_id for c in cs], metric)
                steps = ranking.ladder(
                    [(str(c.result_id), per_case.get(c.result_id, {})) for c in cs],
                    higher_is_better=higher,
                )
                if steps and steps[-1].best:
                    best_id = int(steps[-1].best)
                    pick = next(c for c in cs if c.result_id == best_id)
            out.setdefault(part, {})[entrant] = (pick, len(cs))
    _hydrate([c for chosen in out.values() for c, _n in chosen.values()])
    return out


def _score(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _hydrate(candidates: list[_Candidate]) -> None:
    """Fill in what a board row shows (name, aggregates, interval, worst-filled count, date)
    for the chosen candidates: one query, whatever the number of submissions."""
    by_pk = {c.result_id: c for c in candidates if c.aggregates is None}
    if not by_pk:
        return
    rows = Result.objects.filter(pk__in=many_ids(by_pk)).values_list(
        "pk", "evaluation__submission__created_at",
        "evaluation__submission__participant__username", "evaluation__submission__team__name",
        "evaluation__submission__baseline_name", "aggregates", "meta__intervals",
        "meta__worst_filled",
    )  # fmt: skip
    for pk, created, uname, tname, bname, agg, iv, wf in rows:
        c = by_pk[pk]
        c.created_at = created
        c.display_name = bname if c.is_baseline else (tname if c.team_id is not None else uname)
        c.aggregates = agg or {}
        c.meta_intervals = iv or {}
        c.worst_filled = max((int(v) for v in (wf or {}).values()), default=0)


def _exclusions(phase: Phase) -> tuple[set[int], set[int], set[int]]:
    """Submissions hidden and entrants (solo participants, teams) disqualified in the phase by
    its organizers, exclusions that were lifted left out."""
    hidden: set[int] = set()
    users: set[int] = set()
    teams: set[int] = set()
    for sub, uid, tid in EntryExclusion.objects.filter(
        phase=phase, lifted_at__isnull=True
    ).values_list("submission_id", "participant_id", "team_id"):
        if sub is not None:
            hidden.add(sub)
        elif tid is not None:
            teams.add(tid)
        elif uid is not None:
            users.add(uid)
    return hidden, users, teams


def _per_case(result_ids: list[int], metric: str) -> dict[int, dict[str, float | None]]:
    """Per-case values of one metric for the given results (reads the JSON documents)."""
    out: dict[int, dict[str, float | None]] = {}
    rows = Result.objects.filter(pk__in=many_ids(result_ids)).values_list("pk", "case_values")
    for pk, raw in rows:
        out[pk] = CaseTable.from_bytes(raw).column(metric) if raw else {}
    return out


def _rank(
    phase: Phase, chosen: dict[str, _Candidate]
) -> tuple[dict[str, int], dict[str, float | None]]:
    higher = phase.primary_direction == Direction.HIGHER
    if phase.ranking_scheme == RankingScheme.RANK_THEN_AGGREGATE and len(phase.metrics) > 1:
        from evaluator.metrics.registry import metric_info

        ids = {e: c.result_id for e, c in chosen.items()}
        by_metric: dict[str, Any] = {}
        directions: dict[str, bool] = {}
        for m in phase.metrics:
            per_case = _per_case(list(ids.values()), m)
            if not any(per_case.values()):
                continue  # not a per-case metric: ranked through the aggregate below
            by_metric[m] = {e: per_case.get(pk, {}) for e, pk in ids.items()}
            directions[m] = metric_info(cast(Task, phase.challenge.task_type), m).higher_is_better
        if by_metric:
            mean_rank, ranks = ranking.rank_then_aggregate(by_metric, higher_is_better=directions)
            return ranks, {e: mean_rank[e] for e in chosen}
    scores = {e: c.score(phase.primary_metric) for e, c in chosen.items()}
    return ranking.rank_scores(scores, higher_is_better=higher), scores


def _stability(phase: Phase, part: str, result_ids: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Rank intervals and tiers over cases of one part (``result_ids``: its results), for boards
    small enough to resample within a task: means over cases by the matrix bootstrap and
    Wilcoxon, set-level classification metrics by the paired bootstrap of
    :func:`_set_level_stability`."""
    metric = phase.primary_metric
    if len(result_ids) < 2:
        return {}
    if _set_level(phase):
        return _set_level_stability(phase, part, result_ids)
    if not _per_case_mean(phase):
        return {}
    per_case = _per_case(list(result_ids.values()), metric)
    values = {e: per_case.get(pk, {}) for e, pk in result_ids.items()}
    n_cases = max((len(v) for v in values.values()), default=0)
    if len(values) * n_cases > MAX_STABILITY_CELLS:
        return {}
    higher = phase.primary_direction == Direction.HIGHER
    stab = ranking.bootstrap_ranks(
        values,
        higher_is_better=higher,
        n_resamples=settings.SCANBENCH_RANK_BOOTSTRAP,
        seed=phase.pk,
    )
    tiers = ranking.significance_tiers(values, higher_is_better=higher)
    return {
        e: {"rank_low": stab.rank_low[e], "rank_high": stab.rank_high[e], "tier": tiers.tier[e]}
        for e in values
    }


def _set_level_stability(
    phase: Phase, part: str, result_ids: dict[str, int]
) -> dict[str, dict[str, Any]]:
    """Paired bootstrap of a set-level metric from the probabilities each result kept per case
    (``p/k``) and the part's reference labels. Nothing is shown (an empty answer) when a result
    predates those per-case probabilities or lacks a case, or the board is too large."""
    ids = set(result_ids.values())
    test = Case.objects.filter(dataset_id=phase.dataset_id, split=CaseSplit.TEST)
    # too large a board is known from a count, before the split's labels are read
    if not _set_level_resamples(phase, len(ids), test.filter(leaderboard_part=part).count()):
        return {}
    # One read of the test split: the part's labels, and the classes over both parts (as the
    # reference that scored the results has them).
    rows = test.values_list("case_id", "leaderboard_part", "label")
    try:
        every = [(c, p, int(v)) for c, p, v in rows]
    except ValueError:
        return {}
    labels = {c: v for c, p, v in every if p == part}
    y = np.array([labels[c] for c in sorted(labels)], dtype=np.int64)
    classes = sorted({v for _c, _p, v in every} | {0, 1})
    n_resamples = _set_level_resamples(phase, len(result_ids), y.size)
    if not y.size or not n_resamples:
        return {}
    # the per-case values are read only once the board is known to be small enough
    results = list(
        Result.objects.filter(pk__in=many_ids(ids), part=part).values_list(
            "pk", "part", "case_values", "meta"
        )
    )
    if len(results) != len(ids):
        return {}
    keys = ["p/1"] if len(classes) == 2 else [f"p/{k}" for k in classes]
    by_pk: dict[int, SetEntry] = {}
    wanted = sorted(labels)
    for pk, _part, raw, meta in results:
        table = CaseTable.from_bytes(raw) if raw else CaseTable([], {})
        index = {c: i for i, c in enumerate(table.ids)}
        columns = [table.column_array(k) for k in keys]
        where = [index.get(c, -1) for c in wanted]
        if any(col is None for col in columns) or min(where, default=0) < 0:
            return {}  # scored before per-case probabilities were kept, or a case is absent
        pos = np.asarray(where, dtype=np.intp)
        probs = np.stack([cast(np.ndarray, col)[pos] for col in columns], axis=1)
        if np.isnan(probs).any():
            return {}
        hard = (meta or {}).get("prediction_kind") == "label"
        by_pk[pk] = SetEntry(probs[:, 0] if len(keys) == 1 else probs, hard_labels=hard)
    stab, tiers = set_metric_bootstrap(
        y,
        {e: by_pk[pk] for e, pk in result_ids.items()},
        metric=phase.primary_metric,
        higher_is_better=phase.primary_direction == Direction.HIGHER,
        classes=classes,
        threshold=phase.decision_threshold,
        n_resamples=n_resamples,
        seed=phase.pk,
    )
    return {
        e: {"rank_low": stab.rank_low[e], "rank_high": stab.rank_high[e], "tier": tiers.tier[e]}
        for e in result_ids
    }


def _interval(c: _Candidate, metric: str) -> tuple[float | None, float | None]:
    iv = c.meta_intervals.get(metric) or {}
    return iv.get("low"), iv.get("high")


def leaderboard_update(
    *, phase_id: int, requested_at: datetime | None = None, reason: str = "new result"
) -> dict[str, int] | None:
    """Recompute and store the rows of both parts of a phase's leaderboard.

    ``requested_at`` is when the update was asked for (after the new result was committed). If
    a recomputation started after that, it already saw the result, and this one is skipped: under
    load, many results share one recomputation. Returns None when skipped."""
    counts: dict[str, int] = {}
    with transaction.atomic():
        # One recomputation of a phase at a time; a concurrent one waits and then sees all.
        phase = (
            Phase.objects.select_for_update(of=("self",))
            .select_related("challenge")
            .get(pk=phase_id)
        )
        if (
            requested_at is not None
            and phase.leaderboard_computed_at is not None
            and phase.leaderboard_computed_at >= requested_at
        ):
            return None
        _clear_pending(phase)  # this recomputation sees every result of the phase
        phase.leaderboard_computed_at = timezone.now()  # before reading: sees all committed
        # the rank ranges are computed here too: none stay pending
        phase.ranges_pending_since = phase.ranges_due_at = None
        phase.save(
            update_fields=["leaderboard_computed_at", "ranges_pending_since", "ranges_due_at"]
        )
        by_part = _chosen(phase)
        for part in PARTS:
            chosen_n = by_part[part]
            chosen = {e: cn[0] for e, cn in chosen_n.items()}
            ranks, scores = _rank(phase, chosen)
            extra = _stability(phase, part, {e: c.result_id for e, c in chosen.items()})
            rows = [
                _entry(phase, part, e, c, n=chosen_n[e][1], rank=ranks[e], score=scores[e],
                       extra=extra.get(e, {}))
                for e, c in chosen.items()
            ]  # fmt: skip
            _write_rows(phase, part, rows)
            _snapshot(phase, part, rows, reason)
            counts[part] = len(rows)
    return counts


_ROW_FIELDS = (
    "entrant", "display_name", "participant_id", "team_id", "submission_id", "evaluation_id",
    "is_baseline", "rank", "score", "score_ci_low", "score_ci_high", "rank_low", "rank_high",
    "tier", "aggregates", "n_submissions", "n_worst_filled", "submitted_at",
)  # fmt: skip


def _write_rows(phase: Phase, part: str, rows: list[LeaderboardEntry]) -> None:
    """Make the stored board equal to ``rows``, writing only what changed: a row whose every
    shown value is the same is left alone (a recomputation after one re-evaluation rewrites a
    few rows, not thousands); changed rows are replaced, vanished ones deleted."""
    stored = {
        values[0]: (pk, values)
        for pk, *values in LeaderboardEntry.objects.filter(phase=phase, part=part).values_list(
            "pk", *_ROW_FIELDS
        )
    }
    gone: list[int] = []
    new: list[LeaderboardEntry] = []
    for row in rows:
        old = stored.pop(row.entrant, None)
        if old is not None and tuple(old[1]) == tuple(getattr(row, f) for f in _ROW_FIELDS):
            continue
        if old is not None:
            gone.append(old[0])
        new.append(row)
    gone += [pk for pk, _values in stored.values()]
    for i in range(0, len(gone), 5000):
        LeaderboardEntry.objects.filter(pk__in=gone[i : i + 5000]).delete()
    _insert_rows(new)


def _insert_rows(rows: list[LeaderboardEntry]) -> None:
    """Insert new board rows. Thousands of them (a first computation, a re-evaluated phase) go
    to PostgreSQL through COPY, which takes a fraction of the time of building INSERT statements
    value by value; the values are prepared by each field exactly as ``bulk_create`` prepares
    them."""
    if connection.vendor != "postgresql" or len(rows) < COPY_FROM_ROWS:
        LeaderboardEntry.objects.bulk_create(rows, batch_size=1000)
        return
    fields = [f for f in LeaderboardEntry._meta.concrete_fields if not f.primary_key]
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    table = connection.ops.quote_name(LeaderboardEntry._meta.db_table)
    with connection.cursor() as cursor:
        # the connection itself, not the thread-local proxy: every field asks it (80,000 times
        # for 4,000 rows, a third of the Python time of the copy when asked through the proxy)
        db = cursor.db
        raw = cursor.cursor  # psycopg's own cursor, for COPY
        with raw.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([f.get_db_prep_save(f.pre_save(row, add=True), db) for f in fields])


COPY_FROM_ROWS = 200


def _entry(
    phase: Phase, part: str, e: str, c: _Candidate, *, n: int, rank: int,
    score: float | None, extra: dict[str, Any],
) -> LeaderboardEntry:  # fmt: skip
    low, high = _interval(c, phase.primary_metric)
    assert c.aggregates is not None and c.created_at is not None  # _hydrate filled it in
    return LeaderboardEntry(
        phase=phase, part=part, entrant=e, display_name=c.display_name,
        participant_id=c.participant_id, team_id=c.team_id,
        submission_id=c.submission_id, evaluation_id=c.evaluation_id,
        is_baseline=c.is_baseline, rank=rank, score=score,
        score_ci_low=low, score_ci_high=high,
        rank_low=extra.get("rank_low"), rank_high=extra.get("rank_high"), tier=extra.get("tier"),
        aggregates={m: c.aggregates.get(m) for m in phase.metrics},
        n_submissions=n, n_worst_filled=c.worst_filled, submitted_at=c.created_at,
    )  # fmt: skip


def _rerank(phase: Phase, *, higher_is_better: bool) -> None:
    """Rank the stored scores of both parts in the database (each part apart; ties share the
    best rank: SQL RANK()), writing only the rows whose rank changed; missing scores rank
    last."""
    table = LeaderboardEntry._meta.db_table
    order = "DESC" if higher_is_better else "ASC"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET rank = ranked.r FROM ("  # noqa: S608 (no user input)
            f"  SELECT id, RANK() OVER (PARTITION BY part ORDER BY score IS NULL, score {order})"
            f"  AS r FROM {table} WHERE phase_id = %s"
            f") AS ranked WHERE {table}.id = ranked.id AND {table}.rank <> ranked.r",
            [phase.pk],
        )


def _stability_affordable(phase: Phase, part: str) -> bool:
    if not (_per_case_mean(phase) or _set_level(phase)):
        return False
    n_entries = LeaderboardEntry.objects.filter(phase=phase, part=part).count()
    n_cases = Case.objects.filter(dataset_id=phase.dataset_id, leaderboard_part=part).count()
    if _set_level(phase):
        return _set_level_resamples(phase, n_entries, n_cases) > 0
    return n_entries * n_cases <= MAX_STABILITY_CELLS


def _snapshots_due(phase: Phase) -> list[str]:
    """The parts due a dated snapshot: on a busy board, at most one per part and
    SCANBENCH_SNAPSHOT_INTERVAL_S (the history has that resolution; the current state is always
    the board itself). One query for both parts."""
    last = dict(
        LeaderboardSnapshot.objects.filter(phase=phase)
        .values("part")
        .annotate(last=Max("created_at"))
        .values_list("part", "last")
        .order_by()
    )
    since = timezone.now() - timedelta(seconds=settings.SCANBENCH_SNAPSHOT_INTERVAL_S)
    return [p for p in PARTS if last.get(p) is None or last[p] <= since]


def _snapshot(phase: Phase, part: str, rows: list[LeaderboardEntry], reason: str) -> None:
    """Keep a dated copy of the board's state when it changed."""
    snapshot = sorted(
        ({"entrant": r.entrant, "rank": r.rank, "score": r.score} for r in rows),
        key=lambda r: (r["rank"], r["entrant"]),
    )
    last = (
        LeaderboardSnapshot.objects.filter(phase=phase, part=part)
        .values_list("rows", flat=True)
        .first()
    )
    if last != snapshot:
        LeaderboardSnapshot.objects.create(phase=phase, part=part, reason=reason, rows=snapshot)


def _entrant_filter(submission: Submission) -> Q:
    """The submissions of the same entrant as ``submission`` (as :func:`_entrant` groups them)."""
    sub = "evaluation__submission__"
    if submission.is_baseline:
        return Q(**{f"{sub}is_baseline": True, f"{sub}baseline_name": submission.baseline_name})
    if submission.team_id is not None:
        return Q(**{f"{sub}is_baseline": False, f"{sub}team_id": submission.team_id})
    return Q(
        **{
            f"{sub}is_baseline": False,
            f"{sub}team__isnull": True,
            f"{sub}participant_id": submission.participant_id,
        }
    )


def leaderboard_apply_result(*, evaluation_id: int) -> None:
    """Update a leaderboard for new results: the rows of the entrants with a result waiting
    (``Evaluation.board_pending``) are chosen again, then the board is re-ranked from the stored
    scores once, so the cost grows with neither the number of evaluations in the phase nor the
    size of a burst. Phases ranked per case (rank-then-aggregate) or with the Ladder fall back to
    the full recomputation.

    Every successful evaluation sends this task, but the first to take the phase's lock applies
    all results waiting in that phase: under a burst, later deliveries find nothing left to do
    and return after a few queries. Nothing is lost if a delivery fails: the waiting marks are
    cleared in the same transaction as the rows are written, and the reaper sends the task again
    for a phase whose results have waited too long (:func:`leaderboard_pending_resend`).

    Rank ranges and tiers (a bootstrap over every entry and case: seconds on a large board) are
    not computed here: the new rows show none until :func:`leaderboard_ranges` runs, off the
    scoring path, once the board has been quiet for a while (:func:`_ranges_request`)."""
    own = Evaluation.objects.select_related("submission").filter(pk=evaluation_id).first()
    if own is None:
        return
    with transaction.atomic():
        phase = (
            Phase.objects.select_for_update(of=("self",))
            .select_related("challenge")
            .get(pk=own.submission.phase_id)
        )
        pending = list(
            Submission.objects.filter(phase=phase, evaluations__board_pending=True).only(
                "pk", "is_baseline", "baseline_name", "team_id", "participant_id"
            )
        )
        if (
            not own.board_pending
            and own.state == EvaluationState.SUCCEEDED
            and own.finished_at is not None
            and not LeaderboardEntry.objects.filter(
                phase=phase,
                entrant=_entrant_key(own.submission),
                updated_at__gte=own.finished_at,
            ).exists()
        ):
            # Not marked (it succeeded before marks existed, or a caller names it directly) and
            # no row was written since it finished: apply it too.
            pending.append(own.submission)
        if not pending:
            return  # another delivery applied this result with others of the burst
        _clear_pending(phase)
        if phase.ranking_scheme == RankingScheme.RANK_THEN_AGGREGATE or phase.use_ladder:
            # under the lock already held: leaderboard_update's own takes no time
            leaderboard_update(phase_id=phase.pk, reason="new result")
            return
        higher = phase.primary_direction == Direction.HIGHER
        only = Q()
        for q in {_entrant_key(s): _entrant_filter(s) for s in pending}.values():
            only |= q
        by_part = _chosen(phase, only)
        # both parts at once: one statement each to delete, insert and re-rank the rows
        rows = [
            _entry(phase, part, e, c, n=n, rank=0, score=c.score(phase.primary_metric), extra={})
            for part in PARTS
            for e, (c, n) in by_part[part].items()
        ]
        replaced = Q(pk__in=[])
        for part in PARTS:
            if by_part[part]:
                replaced |= Q(part=part, entrant__in=list(by_part[part]))
        LeaderboardEntry.objects.filter(replaced, phase=phase).delete()
        LeaderboardEntry.objects.bulk_create(rows)
        _rerank(phase, higher_is_better=higher)
        ranges = _per_case_mean(phase) or _set_level(phase)
        for part in _snapshots_due(phase):
            shown = list(
                LeaderboardEntry.objects.filter(phase=phase, part=part).only(
                    "pk", "entrant", "rank", "score"
                )
            )
            _snapshot(phase, part, shown, "new result")
        if ranges:
            _ranges_request(phase)


def _clear_pending(phase: Phase) -> None:
    """No result of ``phase`` waits for its row any more (inside the caller's transaction)."""
    Evaluation.objects.filter(board_pending=True, submission__phase=phase).update(
        board_pending=False
    )


def send_board_update(evaluation_id: int) -> bool:
    """Send :func:`leaderboard_apply_result` for a stored result; False (logged) when the broker
    refuses it: the result keeps its mark, and the reaper sends it again."""
    from challenges import tasks

    try:
        tasks.leaderboard_apply_result.apply_async(kwargs={"evaluation_id": evaluation_id})
    except Exception:
        logger.exception("could not send the leaderboard update for %s", evaluation_id)
        return False
    return True


def _entrant_key(submission: Submission) -> str:
    return _entrant(
        submission.is_baseline,
        submission.baseline_name,
        submission.team_id,
        submission.participant_id,
    )


def leaderboard_pending_resend(*, now: datetime | None = None, older_than_s: float = 60.0) -> int:
    """Send the leaderboard task again for every phase with a result that has waited for its row
    longer than ``older_than_s`` (its task was lost, or failed for good); returns how many
    phases. Called by the reaper."""
    now = now or timezone.now()
    waiting = Evaluation.objects.filter(
        board_pending=True, finished_at__lt=now - timedelta(seconds=older_than_s)
    ).values_list("submission__phase_id", "pk")
    stale = {phase_id: pk for phase_id, pk in waiting.order_by("-pk")}.values()
    return sum(send_board_update(evaluation_id) for evaluation_id in stale)


def _ranges_request(phase: Phase, *, now: datetime | None = None) -> None:
    """Ask for the board's rank ranges to be computed again (inside the caller's transaction,
    which holds the phase's row). Each new result pushes the computation back by
    ``SCANBENCH_RANGES_QUIET_S``, never past ``SCANBENCH_RANGES_MAX_WAIT_S`` after the first
    result still waiting: a burst of submissions shares one computation. Only the first request
    sends a task; later ones move its due time."""
    now = now or timezone.now()
    quiet = timedelta(seconds=settings.SCANBENCH_RANGES_QUIET_S)
    first = phase.ranges_pending_since is None
    since = now if first else cast(datetime, phase.ranges_pending_since)
    due = min(now + quiet, since + timedelta(seconds=settings.SCANBENCH_RANGES_MAX_WAIT_S))
    Phase.objects.filter(pk=phase.pk).update(ranges_pending_since=since, ranges_due_at=due)
    phase.ranges_pending_since, phase.ranges_due_at = since, due
    if first:
        phase_id = phase.pk
        transaction.on_commit(lambda: _send_ranges(phase_id, settings.SCANBENCH_RANGES_QUIET_S))


def _send_ranges(phase_id: int, countdown: float) -> None:
    from challenges import tasks

    try:
        tasks.leaderboard_ranges.apply_async(
            kwargs={"phase_id": phase_id}, countdown=max(0.0, countdown)
        )
    except Exception:  # the reaper sends it again (leaderboard_ranges_resend)
        logger.exception("could not send the rank ranges of phase %s", phase_id)


def leaderboard_ranges(*, phase_id: int, now: datetime | None = None) -> dict[str, int] | None:
    """Compute the rank ranges and tiers of a phase's board (both parts), if they are due.

    Returns None when nothing was due (another delivery did it) or the due time was pushed back
    by newer results (then the task is sent again for the new time). The bootstrap runs without
    holding the phase's lock, on the rows of that moment; a row that a new result replaced in
    the meantime keeps no range until the next computation, which that result asked for."""
    now = now or timezone.now()
    with transaction.atomic():
        phase = (
            Phase.objects.select_for_update(of=("self",))
            .select_related("challenge")
            .get(pk=phase_id)
        )
        if phase.ranges_pending_since is None:
            return None
        due = phase.ranges_due_at or now
        if due > now:
            wait = (due - now).total_seconds()
            transaction.on_commit(lambda: _send_ranges(phase_id, wait))
            return None
        phase.ranges_pending_since = phase.ranges_due_at = None
        phase.save(update_fields=["ranges_pending_since", "ranges_due_at"])
    counts: dict[str, int] = {}
    for part in PARTS:
        rows = list(
            LeaderboardEntry.objects.filter(phase=phase, part=part).only(
                "pk", "entrant", "evaluation_id"
            )
        )
        extra: dict[str, dict[str, Any]] = {}
        if len(rows) > 1 and _stability_affordable(phase, part):
            result_ids = dict(
                Result.objects.filter(
                    part=part, evaluation_id__in=many_ids(r.evaluation_id for r in rows)
                ).values_list("evaluation_id", "pk")
            )
            extra = _stability(
                phase,
                part,
                {
                    r.entrant: result_ids[r.evaluation_id]
                    for r in rows
                    if r.evaluation_id in result_ids
                },
            )
        for r in rows:
            x = extra.get(r.entrant, {})
            r.rank_low, r.rank_high, r.tier = x.get("rank_low"), x.get("rank_high"), x.get("tier")
        # by primary key: a row replaced meanwhile has a new key and is left alone
        LeaderboardEntry.objects.bulk_update(
            rows, ["rank_low", "rank_high", "tier"], batch_size=500
        )
        counts[part] = len(extra)
    return counts


def leaderboard_ranges_resend(*, now: datetime | None = None) -> int:
    """For the reaper: send again the ranges of phases whose computation is overdue (its task
    was lost with a broker or a worker)."""
    now = now or timezone.now()
    grace = timedelta(seconds=max(60.0, 2 * settings.SCANBENCH_RANGES_QUIET_S))
    overdue = list(
        Phase.objects.filter(ranges_due_at__lt=now - grace).values_list("pk", flat=True)[:100]
    )
    for pk in overdue:
        _send_ranges(pk, 0.0)
    return len(overdue)
