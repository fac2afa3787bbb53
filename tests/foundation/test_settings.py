"""Production differs from the embedded default only by environment variables."""

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'debug': s.DEBUG, 'engine': s.DATABASES['default']['ENGINE'], "
    "'broker': s.CELERY_BROKER_URL, 'hsts': getattr(s, 'SECURE_HSTS_SECONDS', 0), "
    "'secure_cookies': getattr(s, 'SESSION_COOKIE_SECURE', False), 'hosts': s.ALLOWED_HOSTS}))"
)


def _settings(env: dict[str, str], probe: str = PROBE) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG"}
    }
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_embedded_default_needs_no_server(tmp_path):
    s = _settings({"SCANBENCH_VAR_DIR": str(tmp_path)})
    assert s["engine"] == "django.db.backends.sqlite3"
    assert s["broker"] == "filesystem://"
    assert s["debug"] is True


def test_production_environment_switches_database_broker_and_security(tmp_path):
    s = _settings(
        {
            "SCANBENCH_VAR_DIR": str(tmp_path),
            "DEBUG": "false",
            "DATABASE_URL": "postgres://u@db:5432/scanbench",
            "CELERY_BROKER_URL": "redis://redis:6379/0",
            "ALLOWED_HOSTS": "scanbench.example.org",
        }
    )
    assert s["engine"] == "django.db.backends.postgresql"
    assert s["broker"] == "redis://redis:6379/0"
    assert s["hsts"] >= 31536000 and s["secure_cookies"] is True
    assert s["hosts"] == ["scanbench.example.org"]


def test_deploy_check_refuses_the_embedded_secret_key_in_production(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    proc = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT,
        env={**env, "DEBUG": "false", "SCANBENCH_VAR_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "challenges.E001" in proc.stderr


# --- Web hardening (issue 8): plain-HTTP health check, proxy headers trusted only on request ---

PROXY_PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'proxy_header': s.SECURE_PROXY_SSL_HEADER, "
    "'exempt': s.SECURE_REDIRECT_EXEMPT, 'num_proxies': s.REST_FRAMEWORK['NUM_PROXIES'], "
    "'auth': s.REST_FRAMEWORK['DEFAULT_AUTHENTICATION_CLASSES']}))"
)


def test_proxy_headers_are_trusted_only_when_the_deployment_says_so(tmp_path):
    production = {"SCANBENCH_VAR_DIR": str(tmp_path), "DEBUG": "false"}
    direct = _settings(production, PROXY_PROBE)
    assert direct["proxy_header"] is None and direct["num_proxies"] == 0
    assert "^healthz$" in direct["exempt"]
    assert not any("Basic" in a for a in direct["auth"])
    proxied = _settings({**production, "SCANBENCH_BEHIND_PROXY": "true"}, PROXY_PROBE)
    assert proxied["proxy_header"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert proxied["num_proxies"] == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _gunicorn(tmp_path: Path, **env: str) -> Iterator[int]:
    """The production web process (platform/gunicorn.conf.py, DEBUG=false) on a free port."""
    port = _free_port()
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG", "SCANBENCH_BEHIND_PROXY"}
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "platform/gunicorn.conf.py",
         "config.wsgi:application"],
        cwd=ROOT,
        env={
            **clean, "DEBUG": "false", "SECRET_KEY": "test-" + "k" * 60,
            "ALLOWED_HOSTS": "scanbench.example.org", "SCANBENCH_VAR_DIR": str(tmp_path),
            "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1", **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "gunicorn exited at start"
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _get(port: int, path: str, headers: dict[str, str]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_health_check_answers_over_plain_http_in_production(tmp_path):
    with _gunicorn(tmp_path) as port:
        # What the compose health check sends: plain HTTP, Host 127.0.0.1 (not an allowed host).
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as r:
            assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
        # Any other page is still redirected to HTTPS.
        page = _get(port, "/accounts/login/", {"Host": "scanbench.example.org"})
        assert page.status == 301
        assert page.headers["Location"] == "https://scanbench.example.org/accounts/login/"


def test_x_forwarded_proto_is_ignored_unless_behind_a_proxy(tmp_path):
    claim_https = {"Host": "scanbench.example.org", "X-Forwarded-Proto": "https"}
    with _gunicorn(tmp_path / "direct") as port:
        # From 127.0.0.1, which gunicorn would trust by default: still plain HTTP.
        assert _get(port, "/accounts/login/", claim_https).status == 301
    with _gunicorn(tmp_path / "proxied", SCANBENCH_BEHIND_PROXY="true") as port:
        assert _get(port, "/accounts/login/", claim_https).status == 200
        plain = {"Host": "scanbench.example.org", "X-Forwarded-Proto": "http"}
        assert _get(port, "/accounts/login/", plain).status == 301
