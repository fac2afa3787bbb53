"""Start and stop the production stack (docker-compose.yml + docker-compose.local.yml) for the
tests in this folder and for benchmarks/stack_bench.py."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]


def why_not() -> str | None:
    if shutil.which("docker-compose") is None:
        return "docker-compose is not installed (scripts/test installs Debian's)"
    try:
        subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "no Docker engine answers"
    if os.geteuid() != 0:
        return "building the images needs root (debootstrap)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    project: str
    env_file: Path
    data: Path
    url: str
    http_url: str
    ca: Path

    def compose(self, *args: str, timeout: float = 600, check: bool = True) -> str:
        cmd = [
            "docker-compose", "--env-file", str(self.env_file), "-p", self.project,
            "-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.local.yml"),
            *args,
        ]  # fmt: skip
        env = {**os.environ, "SCANBENCH_ENV_FILE": str(self.env_file)}
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def manage(self, *args: str) -> str:
        return self.compose("exec", "-T", "web", "python", "manage.py", *args)

    def shell(self, code: str) -> Any:
        """Run Python in the web container (Django set up) and return what it prints as JSON."""
        out = self.manage("shell", "-c", code)
        return json.loads(out.strip().splitlines()[-1])

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = str(self.ca)
        return session


def make_tls(folder: Path) -> Path:
    """A self-made CA-less certificate for 127.0.0.1, mounted into the proxy like a real one."""
    folder.mkdir()
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(folder / "privkey.pem"), "-out", str(folder / "fullchain.pem"),
        ],
        check=True, capture_output=True,
    )  # fmt: skip
    for name in ("privkey.pem", "fullchain.pem"):
        (folder / name).chmod(0o644)  # read by nginx's www-data in the container; a test key
    folder.chmod(0o755)
    return folder / "fullchain.pem"


def wait_https(url: str, ca: Path, timeout: float = 300) -> None:
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/readyz", context=context, timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}/readyz did not answer 200 within {timeout} s")
        time.sleep(1)


def build_images() -> None:
    """platform/images/build.sh (cached by recipe hash: seconds when nothing changed)."""
    build = subprocess.run(
        [str(ROOT / "platform/images/build.sh")],
        cwd=ROOT, env={**os.environ, "PYTHON": str(ROOT / ".venv/bin/python")},
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-4000:]


def stack_prepare(base: Path, project: str, extra_env: list[str]) -> Stack:
    """Folders, a certificate and an env file for a stack under ``base`` (not started)."""
    # Under /var/tmp: every ancestor is searchable, as the sandbox user needs for its mounts.
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(mode=0o755)
    data = base / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)
    ca = make_tls(base / "tls")
    https_port, http_port = free_port(), free_port()
    env_file = base / ".env"
    env_file.write_text(
        "\n".join(
            [
                f"POSTGRES_PASSWORD={secrets.token_hex(16)}",
                f"SECRET_KEY={secrets.token_hex(32)}",
                "ALLOWED_HOSTS=127.0.0.1,localhost",
                f"DOCKER_GID={os.stat('/var/run/docker.sock').st_gid}",
                f"SCANBENCH_DATA_DIR={data}",
                f"SCANBENCH_TLS_DIR={ca.parent}",
                "SCANBENCH_PROXY_BIND=127.0.0.1",
                f"SCANBENCH_HTTPS_PORT={https_port}",
                f"SCANBENCH_HTTP_PORT={http_port}",
                "GUNICORN_WORKERS=2",
                *extra_env,
                "",
            ]
        )
    )
    env_file.chmod(0o600)
    stack = Stack(
        project=project,
        env_file=env_file,
        data=data,
        url=f"https://127.0.0.1:{https_port}",
        http_url=f"http://127.0.0.1:{http_port}",
        ca=ca,
    )
    return stack
