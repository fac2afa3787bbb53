"""Structured logs (docs/operations.md, "Logs"): one JSON object per line, and the ids of the
submission and evaluation being processed on every line logged while it is processed.

Three parts, wired up by ``LOGGING`` in config/settings.py and the Celery signals of
config/celery.py:

* :func:`log_context` sets the ids (``submission_id``, ``evaluation_id``, ``challenge``,
  ``phase``...) in a :class:`~contextvars.ContextVar` for the block it wraps;
* :class:`LogContextFilter`, on the handler, copies them onto every record that passes, so
  every module's plain ``logger.info(...)`` (the evaluator package and the sandbox included)
  carries them without being changed;
* :class:`JsonFormatter` writes a record as one line of JSON.

The Celery handlers at the end open a context around every task that has an ``evaluation_id``
keyword (:func:`task_log_context_open` / :func:`task_log_context_close`).

Threads: a context variable is not inherited by a :class:`threading.Thread` (the lease renewer,
the evaluator's scoring pool, the sandbox's output pump). A context opened with
``process_wide=True`` (the worker's task handlers do) is therefore also lent to records of
other threads of the process that have no context of their own, as long as it is the only one
open in the process: true in a prefork or solo worker, which runs one task per process at a
time. Where several are open (a threads pool), such records get no ids rather than wrong ones.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

#: the fields a context may carry, in the order a JSON line shows them
CONTEXT_FIELDS = (
    "submission_id",
    "evaluation_id",
    "challenge",
    "phase",
    "task",
    "task_id",
    "worker",
)

_EMPTY: Mapping[str, Any] = {}
_context: ContextVar[Mapping[str, Any]] = ContextVar("scanbench_log_context", default=_EMPTY)

# Contexts opened with process_wide=True, by handle; lent to threads without a context of their
# own while exactly one is open (see the module's docstring).
_process_wide: dict[int, Mapping[str, Any]] = {}
_process_wide_lock = threading.Lock()

# The attributes every LogRecord has; anything else on a record came from ``extra=``.
# Django's server and request loggers add ``request`` (a socket or an HttpRequest: its text
# repeats the message) and ``server_time``; neither is worth a field.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request", "server_time"}
)
_HOST = socket.gethostname()

logger = logging.getLogger(__name__)


class LogContextHandle:
    """What :func:`log_context_open` returns and :func:`log_context_close` takes."""

    def __init__(self, token: Token[Mapping[str, Any]], fields: Mapping[str, Any]) -> None:
        self.token = token
        self.fields = fields


def log_context_open(*, process_wide: bool = False, **fields: Any) -> LogContextHandle:
    """Add ``fields`` (None values are left out) to the current log context until
    :func:`log_context_close` is called with the returned handle, in the same thread. Prefer
    :func:`log_context`; this pair serves callbacks that open and close in two calls (Celery's
    ``task_prerun`` and ``task_postrun``)."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise TypeError(f"unknown log context field(s): {', '.join(sorted(unknown))}")
    merged = {**_context.get(), **{k: v for k, v in fields.items() if v is not None}}
    handle = LogContextHandle(_context.set(merged), merged)
    if process_wide:
        with _process_wide_lock:
            _process_wide[id(handle)] = merged
    return handle


def log_context_close(handle: LogContextHandle) -> None:
    """Restore the context that was current when ``handle`` was opened."""
    with _process_wide_lock:
        _process_wide.pop(id(handle), None)
    try:
        _context.reset(handle.token)
    except ValueError:  # opened in another context (a callback run elsewhere): drop it anyway
        _context.set(
            handle.token.old_value if handle.token.old_value is not Token.MISSING else _EMPTY
        )


@contextmanager
def log_context(*, process_wide: bool = False, **fields: Any) -> Iterator[Mapping[str, Any]]:
    """Every record logged inside the block (by any logger, in this thread or task) carries
    ``fields``: ``submission_id``, ``evaluation_id``, ``challenge``, ``phase``, ``task``,
    ``task_id``, ``worker``. Nested blocks add to, and may override, the outer one's fields.

    ``process_wide``: also lend the fields to other threads of this process (see the module's
    docstring); only for worker processes that run one task at a time."""
    handle = log_context_open(process_wide=process_wide, **fields)
    try:
        yield handle.fields
    finally:
        log_context_close(handle)


def current_log_context() -> Mapping[str, Any]:
    """The fields a record logged here and now would carry."""
    fields = _context.get()
    if fields:
        return fields
    with _process_wide_lock:
        if len(_process_wide) == 1:
            return next(iter(_process_wide.values()))
    return _EMPTY


class LogContextFilter(logging.Filter):
    """Copies the current log context onto each record (never drops one). Put it on the
    handler: a filter on a logger does not see the records of its children. A field the call
    gave itself (``extra={"evaluation_id": ...}``) is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_log_context().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _jsonable(value: Any) -> Any:
    """``json.dumps``' fallback: what JSON cannot hold is written as its ``str``."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} that cannot be shown>"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages and tracebacks are
    escaped): ``ts`` (ISO 8601, UTC, milliseconds), ``level``, ``logger``, ``message``,
    ``host``, ``pid``, ``process`` and ``thread`` names, the context fields that are known,
    ``exc`` (the formatted traceback) and ``stack`` when there is one, and what the call gave in
    ``extra=`` under ``extra``. Non-ASCII text is escaped (``\\u00e9``), so a line stays valid
    JSON whatever encoding the stream has; values JSON cannot hold are written as text."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception as exc:  # arguments that do not fit the format: keep both
            message = f"{record.msg!r} % {record.args!r} ({type(exc).__name__}: {exc})"
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "host": _HOST,
            "pid": record.process if record.process is not None else os.getpid(),
            "process": record.processName,
            "thread": record.threadName,
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        extra = {
            k: v
            for k, v in vars(record).items()
            if k not in _RECORD_ATTRS and k not in CONTEXT_FIELDS and not k.startswith("_")
        }
        if extra:
            line["extra"] = extra
        try:
            return json.dumps(line, default=_jsonable)
        except (TypeError, ValueError):  # a circular structure, keys JSON cannot hold
            line["extra"] = {k: _jsonable(v) for k, v in extra.items()}
            return json.dumps(line, default=_jsonable)


# --- Celery --------------------------------------------------------------------------------------


def _evaluation_fields(evaluation_id: Any) -> dict[str, Any]:
    """The submission, challenge and phase of an evaluation; only what could be read (the
    database may be away: the task's own retry deals with that)."""
    from challenges.models import Evaluation

    try:
        row = (
            Evaluation.objects.filter(pk=evaluation_id)
            .values(
                "submission_id", "submission__phase__slug", "submission__phase__challenge__slug"
            )
            .first()
        )
    except Exception:
        return {}
    if row is None:
        return {}
    return {
        "submission_id": row["submission_id"],
        "challenge": row["submission__phase__challenge__slug"],
        "phase": row["submission__phase__slug"],
    }


_open_by_task: dict[str, LogContextHandle] = {}


def task_log_context_open(
    sender: Any = None, task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any
) -> None:
    """Celery ``task_prerun``: a task given an ``evaluation_id`` (or ``submission_id``) runs
    inside a log context with the ids, its challenge and phase, its name, id and worker. Lent
    process-wide (to the task's helper threads) in a worker, not when run eagerly in a web
    process that serves other requests on other threads."""
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    evaluation_id = kwargs.get("evaluation_id")
    submission_id = kwargs.get("submission_id")
    if (evaluation_id is None and submission_id is None) or task_id is None:
        return
    request = getattr(task, "request", None)
    fields: dict[str, Any] = {
        "submission_id": submission_id,
        "evaluation_id": evaluation_id,
        "task": getattr(task, "name", None),
        "task_id": task_id,
        "worker": getattr(request, "hostname", None),
    }
    if evaluation_id is not None:
        fields.update({k: v for k, v in _evaluation_fields(evaluation_id).items() if v is not None})
    eager = bool(getattr(request, "is_eager", False))
    _open_by_task[task_id] = log_context_open(process_wide=not eager, **fields)
    # Celery logs when a task was received (in the worker's main process) and when it ended;
    # this line marks when it began, in the process that runs it.
    ids = ", ".join(f"{k}={kwargs[k]}" for k in ("evaluation_id", "submission_id") if k in kwargs)
    logger.info("Task %s[%s] started (%s)", fields["task"], task_id, ids)


def task_log_context_close(sender: Any = None, task_id: str | None = None, **_: Any) -> None:
    """Celery ``task_postrun``: close what :func:`task_log_context_open` opened."""
    handle = _open_by_task.pop(task_id, None) if task_id is not None else None
    if handle is not None:
        log_context_close(handle)
