"""Structured logs: a real worker with SCANBENCH_LOG_FORMAT=json writes one JSON object per line,
and every line of an evaluation's task carries that evaluation's and submission's ids (threads
of the task included), never those of another one."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from challenges.log_format import (
    JsonFormatter,
    LogContextFilter,
    log_context,
    task_log_context_close,
    task_log_context_open,
)
from challenges.models import Evaluation
from tests.factories import classification_phase
from tests.helpers import final_evaluation, wait_for

STARTED = re.compile(r"^Task (\S+)\[([0-9a-f-]+)\] started \((.*)\)$")


def _user(name: str) -> User:
    return User.objects.create_user(username=name, email=f"{name}@example.org", password="x")


def _upload(user: User, phase: Any, data: bytes) -> int:
    client = APIClient()
    client.force_authenticate(user)
    f = io.BytesIO(data)
    f.name = "preds.csv"
    response = client.post(f"/api/phases/{phase.pk}/submissions/", {"file": f}, format="multipart")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def _lines_after_ready(output: str) -> list[dict[str, Any]]:
    """Every line the worker wrote once it was ready, each parsed as JSON (the start-up banner
    before it is Celery's own text)."""
    lines = output.splitlines()
    ready = next(i for i, line in enumerate(lines) if '"message": ' in line and "ready." in line)
    parsed = []
    for line in lines[ready:]:
        if not line.strip():
            continue
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"not a JSON line in the worker's output: {line!r}")
    return parsed


def _task_segments(
    records: list[dict[str, Any]],
) -> list[tuple[str, dict[str, str], list[dict[str, Any]]]]:
    """Each task the pool process ran: its name, the ids its start line names (from the task's
    arguments, not from the log context), and every line that process wrote from the start
    line to Celery's "succeeded"/"raised" line of the same task id."""
    segments = []
    open_task: tuple[str, str, dict[str, str], list[dict[str, Any]]] | None = None
    for rec in records:
        if rec["process"] == "MainProcess":
            continue  # the main process receives tasks; the pool process runs them
        started = STARTED.match(rec["message"])
        if started:
            assert open_task is None, f"a task began before the last one ended: {rec}"
            ids = dict(kv.split("=") for kv in started.group(3).split(", ") if kv)
            open_task = (started.group(1), started.group(2), ids, [])
        if open_task is None:
            continue
        open_task[3].append(rec)
        if f"[{open_task[1]}]" in rec["message"] and re.search(
            r"\] (succeeded|raised|retry)", rec["message"]
        ):
            segments.append((open_task[0], open_task[2], open_task[3]))
            open_task = None
    return segments


def test_worker_json_lines_carry_the_ids_of_the_evaluation_being_processed(
    start_worker: Any, tmp_path: Path
) -> None:
    phase, preds = classification_phase(tmp_path)
    worker = start_worker(
        queues="cpu",
        extra_env={"SCANBENCH_LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"},
    )
    first = _upload(_user("first"), phase, preds.read_bytes())
    assert final_evaluation(first).state == "succeeded"
    second = _upload(_user("second"), phase, preds.read_bytes())
    assert final_evaluation(second).state == "succeeded"
    expected = {
        e.pk: e.submission_id for e in Evaluation.objects.filter(submission__in=[first, second])
    }
    assert len(expected) == 2

    def ended() -> list[Any]:
        segments = _task_segments(_lines_after_ready(worker.output()))
        done = {
            int(ids["evaluation_id"])
            for name, ids, _ in segments
            if name == "challenges.tasks.leaderboard_apply_result"
        }
        return segments if done >= set(expected) else []

    segments = wait_for(ended, timeout=60)
    assert isinstance(segments, list)
    seen: dict[int, set[str]] = {}
    for name, ids, lines in segments:
        if "evaluation_id" not in ids:  # a task of no evaluation (leaderboard_update) leaks none
            assert all("evaluation_id" not in rec and "submission_id" not in rec for rec in lines)
            continue
        evaluation_id = int(ids["evaluation_id"])
        for rec in lines:
            assert rec["evaluation_id"] == evaluation_id, rec
            assert rec["submission_id"] == expected[evaluation_id], rec
            assert rec["challenge"] == phase.challenge.slug and rec["phase"] == phase.slug, rec
            assert rec["task"] == name and rec["ts"].endswith("Z"), rec
        seen.setdefault(evaluation_id, set()).add(name)
        assert lines[-1]["logger"] == "celery.app.trace"  # Celery's own "succeeded" line
        if name == "challenges.tasks.evaluation_score":  # a line of a service, and a printed one
            assert any(r["logger"] == "celery.redirected" for r in lines), lines
    assert seen == {
        e: {"challenges.tasks.evaluation_score", "challenges.tasks.leaderboard_apply_result"}
        for e in expected
    }


# --- the formatter alone ---------------------------------------------------------------------


def _format(record_args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LogContextFilter())
    log = logging.getLogger("tests.json_logs")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error(*record_args["args"], extra=extra or None, exc_info=record_args.get("exc_info"))
    finally:
        log.removeHandler(handler)
        log.propagate = True
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.isascii(), text
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def test_formatter_writes_the_traceback_unicode_and_context_on_one_line() -> None:
    try:
        raise ValueError("schlecht: Läsion ✗\nzweite Zeile")
    except ValueError:
        with log_context(submission_id=5, evaluation_id=9, challenge="lungs"):
            line = _format({"args": ("Fall %s fehlt — 肺", "ü-1"), "exc_info": True})
    assert line["message"] == "Fall ü-1 fehlt — 肺"
    assert line["level"] == "ERROR" and line["logger"] == "tests.json_logs"
    assert line["submission_id"] == 5 and line["evaluation_id"] == 9
    assert line["challenge"] == "lungs" and "phase" not in line
    assert "Traceback" in line["exc"] and "Läsion ✗\nzweite Zeile" in line["exc"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["ts"])
    assert line["host"] and isinstance(line["pid"], int)


def test_formatter_writes_what_json_cannot_hold_as_text() -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd-object"

    circular: list[Any] = []
    circular.append(circular)
    line = _format({"args": ("%s and %d", "too few")}, odd=Odd(), when={1, 2}, loop=circular)
    assert "too few" in line["message"]  # arguments that do not fit are kept, not lost
    assert line["extra"]["odd"] == "odd-object"
    assert line["extra"]["when"] in ("{1, 2}", "{2, 1}")
    assert "loop" in line["extra"]
    assert "evaluation_id" not in line  # no context open


def test_context_blocks_nest_and_end() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(LogContextFilter())
    log = logging.getLogger("tests.json_logs.nest")
    log.addHandler(handler)
    log.propagate = False
    try:
        with log_context(submission_id=1, evaluation_id=2):
            with log_context(evaluation_id=3):
                log.warning("inner")
            log.warning("outer")
        log.warning("none")
    finally:
        log.removeHandler(handler)
    inner, outer, none = (json.loads(x) for x in stream.getvalue().splitlines())
    assert (inner["submission_id"], inner["evaluation_id"]) == (1, 3)
    assert (outer["submission_id"], outer["evaluation_id"]) == (1, 2)
    assert "submission_id" not in none and "evaluation_id" not in none


def _records_of_a_thread(log: logging.Logger) -> list[logging.LogRecord]:
    """What a new thread (the lease renewer, a scoring pool's) logs, as the handler sees it."""
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = Keep()
    handler.addFilter(LogContextFilter())
    log.addHandler(handler)
    try:
        thread = threading.Thread(target=log.warning, args=("from a thread",))
        thread.start()
        thread.join()
    finally:
        log.removeHandler(handler)
    return seen


def _task(task_id: str, evaluation_id: int) -> dict[str, Any]:
    request = SimpleNamespace(hostname="w1@host", is_eager=False)
    task = SimpleNamespace(name="challenges.tasks.evaluation_score", request=request)
    return {"task_id": task_id, "task": task, "kwargs": {"evaluation_id": evaluation_id}}


@pytest.mark.django_db
def test_threads_of_a_task_carry_its_ids_and_a_second_task_makes_them_carry_none() -> None:
    log = logging.getLogger("tests.json_logs.threads")
    task_log_context_open(**_task("t1", 41))  # no such evaluation: the ids of the call only
    try:
        (record,) = _records_of_a_thread(log)
        assert (vars(record)["evaluation_id"], vars(record)["task_id"]) == (41, "t1")
        assert vars(record)["worker"] == "w1@host"
        task_log_context_open(**_task("t2", 42))
        (record,) = _records_of_a_thread(log)
        assert not hasattr(record, "evaluation_id")  # which task's thread? none rather than wrong
        task_log_context_close(task_id="t2")
    finally:
        task_log_context_close(task_id="t1")
    (record,) = _records_of_a_thread(log)
    assert not hasattr(record, "evaluation_id")
