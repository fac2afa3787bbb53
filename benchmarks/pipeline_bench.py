"""Benchmark of the submission pipeline on the real stack of this machine.

Drives gunicorn, PostgreSQL, Redis and two Celery cpu workers (concurrency 1, prefetch 1) with
CSV predictions of 10,000 cases, and prints:

* latency from the end of the upload to the row on the leaderboard (p50, p95);
* sustained throughput of scored submissions per second with 2 cpu workers;
* leaderboard reads with 100,000 evaluations of 2,000 participants in the database, through the
  selector and through the HTTP endpoint (p50, p95), side by side with computing the leaderboard
  at read time from the stored results (what a platform without materialized rows does).

Usage (PostgreSQL on 127.0.0.1:5432 and Redis on 6379, as scripts/services-up starts them):

    .venv/bin/python benchmarks/pipeline_bench.py [--quick]

It uses its own database (scanbench_bench, dropped and created) and Redis database 14.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = "scanbench_bench"
PORT = 8765
TOKENS: dict[str, str] = {}
VAR = Path(tempfile.mkdtemp(prefix="scanbench-bench-"))
ENV = {
    **os.environ,
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/14",
    "SCANBENCH_VAR_DIR": str(VAR),
    "DEBUG": "true",
    "LOG_LEVEL": "WARNING",
    "SCANBENCH_NOTIFY_BY_EMAIL": "false",
}
os.environ.update(ENV)
os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def fmt_ms(values: list[float]) -> str:
    return f"p50 {pct(values, 50) * 1000:7.1f} ms   p95 {pct(values, 95) * 1000:7.1f} ms"


def setup_database() -> None:
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", DB], check=True)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", DB], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=ENV, check=True)
    import redis

    redis.Redis.from_url(ENV["CELERY_BROKER_URL"]).flushdb()


def start_stack(n_workers: int) -> list[subprocess.Popen[bytes]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{PORT}", "--workers", "2", "--threads", "4",
             "config.wsgi:application"],
            cwd=ROOT, env={**ENV, "GUNICORN_WORKERS": "2"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
    ]  # fmt: skip
    for i in range(n_workers):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "cpu",
                 "--concurrency", "1", "--prefetch-multiplier", "1", "--loglevel", "WARNING",
                 "--without-gossip", "--without-mingle", "--hostname", f"bench{i}@%h"],
                cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
    import requests

    for _ in range(100):
        try:
            requests.get(f"http://127.0.0.1:{PORT}/healthz", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.2)
    time.sleep(3)  # workers connect
    return procs


def make_phase(n_cases: int):
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.utils import timezone

    from challenges.models import Case, Challenge, Dataset, Phase
    from challenges.services.bundles import draw_leaderboard_parts
    from evaluator.synthetic import write_classification

    ref, preds = write_classification(VAR / "cls", n_cases=n_cases, seed=1)
    challenge = Challenge.objects.create(
        slug="bench", title="Bench", summary="b", task_type="classification",
        classes=["neg", "pos"], data_licence="CC0", data_attribution="generated", is_published=True,
    )  # fmt: skip
    dataset = Dataset.objects.create(challenge=challenge, slug="main", split_seed=3)
    phase = Phase.objects.create(
        challenge=challenge, dataset=dataset, slug="open", title="Open",
        opens_at=timezone.now() - timedelta(days=1), daily_limit=100_000, total_limit=100_000,
        metrics=["auc_roc", "sensitivity", "specificity", "brier"], primary_metric="auc_roc",
    )  # fmt: skip
    rows = [line.split(",") for line in ref.read_text().splitlines()[1:]]
    parts = draw_leaderboard_parts([r[0] for r in rows], 0.3, 3)
    Case.objects.bulk_create(
        [Case(dataset=dataset, case_id=c, split="test", leaderboard_part=parts[c], label=lab)
         for c, lab in rows],
        batch_size=5000,
    )  # fmt: skip
    users = [User(username=f"u{i}") for i in range(400)]
    for u in users:
        u.set_unusable_password()
    User.objects.bulk_create(users)
    from django.contrib.auth.hashers import make_password

    User.objects.filter(username__startswith="u").update(password=make_password("pw"))
    from rest_framework.authtoken.models import Token

    for u in User.objects.filter(username__startswith="u"):
        TOKENS[u.username] = Token.objects.create(user=u).key
    return phase, preds


def upload(phase_id: int, user: str, body: bytes) -> int:
    import requests

    r = requests.post(
        f"http://127.0.0.1:{PORT}/api/phases/{phase_id}/submissions/",
        files={"file": ("p.csv", body)},
        headers={"Authorization": f"Token {TOKENS[user]}"},
        timeout=120,
    )
    r.raise_for_status()
    return int(r.json()["id"])


def on_board(submission_id: int) -> bool:
    from challenges.models import LeaderboardEntry

    return LeaderboardEntry.objects.filter(submission_id=submission_id, part="public").exists()


def measure_latency(phase, body: bytes, n: int, first_user: int = 0) -> list[float]:
    from django.db import connection

    out = []
    for i in range(first_user, first_user + n):
        sid = upload(phase.pk, f"u{i}", body)
        t0 = time.perf_counter()  # the upload has ended: the response is here
        while not on_board(sid):
            time.sleep(0.005)
        out.append(time.perf_counter() - t0)
    connection.close()
    return out


def _cpu_by_process() -> dict[str, int]:
    """CPU ticks used so far by each process of the stack, grouped (Linux /proc)."""
    out: dict[str, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        group = next(
            (name for key, name in (("celery", "celery workers"), ("gunicorn", "gunicorn"),
             ("postgres", "PostgreSQL"), ("redis", "Redis"), ("pipeline_bench", "this client"),
             ("_zygote_main", "decoding zygote"))
             if key in cmd),
            # kernel threads have no command line; anything else is another program of the
            # machine (other services, the tool that runs this benchmark)
            "kernel threads" if not cmd else "other programs",
        )  # fmt: skip
        if group:
            # own user + system time, and that of children already waited for
            ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
            out[group] = out.get(group, 0) + ticks
    return out


def _busy_ticks() -> int:
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # all but idle and iowait


def measure_throughput(phase, body: bytes, n: int, offset: int) -> tuple[float, list[int]]:
    from challenges.models import Evaluation

    before, busy = _cpu_by_process(), _busy_ticks()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        ids = list(pool.map(lambda i: upload(phase.pk, f"u{offset + i}", body), range(n)))
    print(f"  ({n} uploads accepted in {time.perf_counter() - t0:.1f} s)")
    while Evaluation.objects.filter(submission_id__in=ids, state="succeeded").count() < n:
        time.sleep(0.05)
    rate = n / (time.perf_counter() - t0)
    after, busy = _cpu_by_process(), _busy_ticks() - busy
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    print("  CPU per scored submission over this run, by process (ms):")
    named = 0.0
    for group in sorted(after, key=lambda g: -(after[g] - before.get(g, 0))):
        ms = (after[group] - before.get(group, 0)) * tick_ms / n
        named += ms
        print(f"    {group:<16} {ms:7.1f}")
    print(f"    {'the rest':<16} {busy * tick_ms / n - named:7.1f}   (decoding children, which the "
          "kernel reaps without charging a live process; ended processes; interrupts)")  # fmt: skip
    print(f"    {'all':<16} {busy * tick_ms / n:7.1f}   (two cores allow {2000 / rate:.0f} ms "
          "per submission at this rate)")  # fmt: skip
    return rate, ids


def stage_profile(submission_ids: list[int]) -> None:
    """Where a scored submission's time goes, from what the worker recorded per evaluation
    (``Evaluation.timings``) and when its row reached the board (medians, ms)."""
    import json
    import statistics

    from django.db import connection

    from challenges.models import Evaluation, LeaderboardEntry, Result

    evs = list(Evaluation.objects.filter(submission_id__in=submission_ids, state="succeeded"))
    stages: dict[str, list[float]] = {}
    for ev in evs:
        for k, v in (ev.timings or {}).items():
            stages.setdefault(k, []).append(float(v))
    finished = {ev.submission_id: ev.finished_at for ev in evs}
    board = [
        (row.updated_at - finished[row.submission_id]).total_seconds()
        for row in LeaderboardEntry.objects.filter(submission_id__in=submission_ids, part="public")
        if finished.get(row.submission_id)
    ]
    order = ["queued_s", "reference_s", "score_public_s", "score_private_s", "store_s"]
    print("  per-stage profile (median ms over these submissions; the worker's own clock):")
    for k in order + sorted(set(stages) - set(order)):
        if k in stages:
            print(f"    {k.removesuffix('_s'):<16} {statistics.median(stages[k]) * 1000:8.1f}")
    if board:
        print(f"    {'result -> row':<16} {statistics.median(board) * 1000:8.1f}"
              "   (leaderboard task: queue wait + the entrant's row + re-rank)")  # fmt: skip
    results = Result.objects.filter(evaluation__in=evs)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT avg(octet_length(case_values)) FROM challenges_result"
            " WHERE evaluation_id = ANY(%s)",
            [[ev.pk for ev in evs]],
        )
        stored = float(cursor.fetchone()[0] or 0)
    one = results.first()
    as_json = len(json.dumps(one.cases.to_dict())) if one else 0
    print(f"  per-case values stored: {stored / 1024:.0f} KiB per result (binary columns); "
          f"the same values as JSON text: {as_json / 1024:.0f} KiB")  # fmt: skip


def seed_big_leaderboard(n_participants: int, n_evaluations: int):
    """A second phase with many evaluations written directly (no scoring)."""
    import random

    from django.contrib.auth.models import User
    from django.utils import timezone

    from challenges.models import Evaluation, Phase, Result, Submission

    base = Phase.objects.get(slug="open")
    phase = Phase.objects.create(
        challenge=base.challenge, dataset=base.dataset, slug="big", title="Big",
        opens_at=base.opens_at, metrics=base.metrics, primary_metric="auc_roc",
        daily_limit=100_000, total_limit=100_000,
    )  # fmt: skip
    users = [User(username=f"big{i}") for i in range(n_participants)]
    User.objects.bulk_create(users, batch_size=2000)
    users = list(User.objects.filter(username__startswith="big"))
    rng = random.Random(0)
    now = timezone.now()
    subs = [
        Submission(phase=phase, participant=users[i % n_participants], kind="predictions",
                   file="x.csv", sha256="0" * 64)
        for i in range(n_evaluations)
    ]  # fmt: skip
    Submission.objects.bulk_create(subs, batch_size=5000)
    evs = [
        Evaluation(submission=s, state="succeeded", enqueued_at=now, finished_at=now) for s in subs
    ]
    Evaluation.objects.bulk_create(evs, batch_size=5000)
    results = []
    for ev in evs:
        for part in ("public", "private"):
            auc = rng.random()
            results.append(
                Result(evaluation=ev, part=part,
                       aggregates={"auc_roc": auc, "sensitivity": rng.random(),
                                   "specificity": rng.random(), "brier": rng.random()},
                       meta={"intervals": {"auc_roc": {"low": auc - 0.05, "high": auc + 0.05}}})
            )  # fmt: skip
    Result.objects.bulk_create(results, batch_size=5000)
    return phase


def read_at_request_time(phase) -> list[tuple[int, float]]:
    """What a leaderboard without materialized rows does on every read."""
    from challenges.models import Result

    best: dict[int, float] = {}
    for uid, agg in Result.objects.filter(
        evaluation__submission__phase=phase, part="public", evaluation__state="succeeded"
    ).values_list("evaluation__submission__participant_id", "aggregates__auc_roc"):
        if agg is not None and agg > best.get(uid, -1):
            best[uid] = agg
    ranked = sorted(best.items(), key=lambda kv: -kv[1])
    return ranked[:50]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer submissions and rows")
    args = parser.parse_args()
    n_lat, n_thr = (10, 40) if args.quick else (30, 200)
    n_part, n_eval = (500, 10_000) if args.quick else (2000, 100_000)
    setup_database()
    phase, preds = make_phase(10_000)
    body = preds.read_bytes()
    procs = start_stack(n_workers=2)
    try:
        print(f"Scanbench pipeline benchmark ({os.cpu_count()} cores), CSV of 10,000 cases")
        upload(phase.pk, "u399", body)  # warm up both workers' imports
        upload(phase.pk, "u398", body)
        time.sleep(3)
        lat = measure_latency(phase, body, n_lat)
        print(f"upload end -> leaderboard row ({n_lat} sequential): {fmt_ms(lat)}"
              "   target p50 < 1000 ms, p95 < 2000 ms")  # fmt: skip
        thr, thr_ids = measure_throughput(phase, body, n_thr, offset=n_lat)
        print(f"throughput, 2 cpu workers, {n_thr} submissions: {thr:6.1f} scored/s"
              "   target >= 20/s")  # fmt: skip
        stage_profile(thr_ids)
        from challenges.selectors import leaderboard_for_phase
        from challenges.services.leaderboards import leaderboard_update

        t0 = time.perf_counter()
        big = seed_big_leaderboard(n_part, n_eval)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # what autovacuum does after a bulk load like this one
        took = time.perf_counter() - t0
        print(f"seeded {n_eval} evaluations of {n_part} participants in {took:.1f} s")
        t0 = time.perf_counter()
        leaderboard_update(phase_id=big.pk)
        first = time.perf_counter() - t0
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # autovacuum's, after 4,000 new rows: the reads below
        again = []
        for _ in range(3):
            t0 = time.perf_counter()
            leaderboard_update(phase_id=big.pk)
            again.append(time.perf_counter() - t0)
        print(f"leaderboard_update, full recomputation of both parts: first (empty board, "
              f"{2 * n_part} rows written) {first:.2f} s; again (board stored) "
              f"{min(again):.2f} s best of 3   target < 2 s")  # fmt: skip
        lat_big = measure_latency(big, body, 10, first_user=300)
        print(f"upload end -> leaderboard row, phase with {n_eval} evaluations: {fmt_ms(lat_big)}")
        from django.contrib.auth.models import AnonymousUser

        sel, naive, http = [], [], []
        for i in range(200):
            t0 = time.perf_counter()
            rows = leaderboard_for_phase(phase=big, part="public", user=AnonymousUser())
            list(rows[(i % 40) * 50 : (i % 40) * 50 + 50])
            rows.count()
            sel.append(time.perf_counter() - t0)
        for _ in range(20):
            t0 = time.perf_counter()
            read_at_request_time(big)
            naive.append(time.perf_counter() - t0)
        import requests

        session = requests.Session()
        for i in range(200):
            t0 = time.perf_counter()
            r = session.get(
                f"http://127.0.0.1:{PORT}/api/phases/{big.pk}/leaderboard/",
                params={"offset": (i % 40) * 50, "limit": 50},
                timeout=30,
            )
            r.raise_for_status()
            http.append(time.perf_counter() - t0)
        print(f"leaderboard page of 50, selector (materialized):   {fmt_ms(sel)}")
        print(f"leaderboard page of 50, HTTP endpoint:             {fmt_ms(http)}", end="")
        print("   target p95 < 50 ms")
        print(f"leaderboard computed at read time (no rows kept):  {fmt_ms(naive)}")
        print(f"ratio, read-time computation / materialized selector (p50): "
              f"{pct(naive, 50) / pct(sel, 50):.0f}x")  # fmt: skip
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
