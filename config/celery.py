"""The Celery application. Task conventions (acks_late, limits, queues): challenges.celery."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("scanbench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
