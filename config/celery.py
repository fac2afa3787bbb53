"""The Celery application. Task conventions (acks_late, limits, queues): challenges.celery.

Logs (docs/operations.md, "Logs"): every task given an ``evaluation_id`` runs inside a log
context with its ids (``task_prerun``/``task_postrun``), and with ``SCANBENCH_LOG_FORMAT=json``
the worker does not install Celery's own handlers on the root logger: it keeps Django's
``LOGGING`` (JSON lines), so its own lines ("ready", "Task ... succeeded") are JSON too."""

import logging.config
import os
from typing import Any

from celery import Celery, signals

from challenges.log_format import task_log_context_close, task_log_context_open

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("scanbench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def _connections_between_tasks(**kwargs: Any) -> None:
    """``task_prerun``/``task_postrun``: what Django does around each request. A connection
    older than ``CONN_MAX_AGE``, or left unusable by an error (the database restarted), is
    closed; a kept one is checked (``CONN_HEALTH_CHECKS``) before its next query. Celery's own
    fix-up would close every connection around every task (``CELERY_DB_REUSE_MAX`` in
    config/settings.py); eager tasks run inside a request, which has its own cycle."""
    task = kwargs.get("task") or kwargs.get("sender")
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


signals.task_prerun.connect(_connections_between_tasks, weak=False)
signals.task_postrun.connect(_connections_between_tasks, weak=False)
signals.task_prerun.connect(task_log_context_open, weak=False)
signals.task_postrun.connect(task_log_context_close, weak=False)


def _logging_from_settings(**kwargs: Any) -> None:
    """``setup_logging``: a receiver stops Celery from configuring logging itself; apply
    ``LOGGING`` instead (``--loglevel`` is then ignored: ``LOG_LEVEL`` sets the level). What
    the worker prints (the console e-mail backend, a stray ``print``) becomes log records of
    ``celery.redirected``, as Celery does with its own set-up, so that it is JSON too."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if app.conf.worker_redirect_stdouts:
        app.log.redirect_stdouts(app.conf.worker_redirect_stdouts_level)


def _choose_worker_logging(**kwargs: Any) -> None:
    """Before the worker sets up logging: keep Django's configuration when it writes JSON.
    Decided here, not at import, so that importing this module does not load the settings."""
    from django.conf import settings

    if settings.SCANBENCH_LOG_FORMAT == "json":
        signals.setup_logging.connect(_logging_from_settings, weak=False)


signals.celeryd_init.connect(_choose_worker_logging, weak=False)
