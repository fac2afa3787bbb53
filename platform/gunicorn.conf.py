"""gunicorn settings for the web process; every value can be overridden by environment."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# Uploads can be large; keep request bodies off the worker's memory where possible.
limit_request_line = 8190
# gunicorn's control socket (gunicornc): in /tmp, since the image's home folder is read-only.
control_socket = os.environ.get("GUNICORN_CONTROL_SOCKET", "/tmp/scanbench-gunicorn.ctl")  # noqa: S108
accesslog = "-"
errorlog = "-"

# Proxy trust, as in Django's settings (docs/security.md): X-Forwarded-Proto and the other
# forwarding headers are believed only when SCANBENCH_BEHIND_PROXY says a TLS-terminating proxy
# fronts gunicorn, and then only from the proxy's addresses (FORWARDED_ALLOW_IPS, loopback by
# default). Otherwise no client can make a plain-HTTP request look like HTTPS.
BEHIND_PROXY = os.environ.get("SCANBENCH_BEHIND_PROXY", "").strip().lower() in {
    "1", "true", "yes", "y", "on", "ok",
}  # fmt: skip
if BEHIND_PROXY:
    forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
else:
    forwarded_allow_ips = ""
    secure_scheme_headers: dict[str, str] = {}
