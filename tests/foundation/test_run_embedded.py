"""The README's first command: scripts/run-embedded sets everything up on the embedded defaults
(SQLite, file-system broker), serves the demo challenges, scores the baselines with its own
worker, and Ctrl-C stops the web server and the worker."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return None


def _free_port() -> str:
    """A port nothing listens on now (a fixed one can be held by another run's server)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_run_embedded_serves_demo_challenges_and_stops_on_ctrl_c(tmp_path):
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update({"SCANBENCH_VAR_DIR": str(tmp_path / "var"), "PORT": port})
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "run-embedded")],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a terminal's Ctrl-C reaches the whole process group
    )
    try:
        home = wait_for(lambda: _get(f"http://127.0.0.1:{port}/"), timeout=300, interval=1)
        assert 'data-challenge="breast-cancer-wdbc"' in home
        assert 'data-challenge="synthetic-lesions"' in home
        output = (tmp_path / "run.log").read_text()
        assert re.search(r"username 'organizer', password '\S+'", output)
        # The embedded worker scores the baselines through the file-system broker.
        board = f"http://127.0.0.1:{port}/challenges/breast-cancer-wdbc/open/leaderboard/"
        wait_for(lambda: "Always negative" in (_get(board) or ""), timeout=120, interval=1)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)
    assert _get(f"http://127.0.0.1:{port}/healthz") is None

    def group_gone() -> bool:
        try:
            os.killpg(proc.pid, 0)  # any process of the group (web, worker, beat) still alive?
        except ProcessLookupError:
            return True
        return False

    wait_for(group_gone, timeout=30)
