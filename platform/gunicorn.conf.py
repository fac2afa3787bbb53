"""gunicorn settings for the web process; every value can be overridden by environment."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# Uploads can be large; keep request bodies off the worker's memory where possible.
limit_request_line = 8190
accesslog = "-"
errorlog = "-"
