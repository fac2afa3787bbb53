"""Production differs from the embedded default only by environment variables."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'debug': s.DEBUG, 'engine': s.DATABASES['default']['ENGINE'], "
    "'broker': s.CELERY_BROKER_URL, 'hsts': getattr(s, 'SECURE_HSTS_SECONDS', 0), "
    "'secure_cookies': getattr(s, 'SESSION_COOKIE_SECURE', False), 'hosts': s.ALLOWED_HOSTS}))"
)


def _settings(env: dict[str, str]) -> dict:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG"}
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
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
