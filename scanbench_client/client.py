"""The Python API of a Scanbench server (the contract is docs/api.md).

Use it from a notebook::

    from scanbench_client import Client
    sb = Client.login("https://scanbench.example.org", "alice", getpass())
    sb.join("breast-cancer-wdbc")
    sb.download("breast-cancer-wdbc", "sample-submission.csv", "data/")
    sub = sb.submit("breast-cancer-wdbc", "open", "data/sample-submission.csv")
    sb.wait(sub["id"])["evaluations"][-1]["results"]["public"]["aggregates"]

Every refusal of the server raises :class:`ScanbenchError` with the server's ``detail``,
``code`` and ``field``. The token and the site's address come from the arguments, else
``SCANBENCH_TOKEN`` / ``SCANBENCH_URL``, else the file :func:`config_path` that
:meth:`Client.login` writes (mode 0600).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urljoin

import requests

from scanbench_client._version import __version__

__all__ = ["FINAL_STATES", "Client", "ScanbenchError", "config_path", "load_config"]

DEFAULT_URL = "http://127.0.0.1:8000"
#: states after which a submission changes no more
FINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
CHUNK = 1 << 20
#: how often a read is retried after a 429, and the longest single wait (seconds)
READ_RETRIES = 5
MAX_RETRY_WAIT = 60.0
TIMEOUT = (10.0, 300.0)  # connect, read

Progress = Callable[[int, int | None], None]


class ScanbenchError(Exception):
    """A request the server refused (``status`` is its HTTP status) or that could not be made
    (``status`` None). ``detail`` is one sentence for a person, ``code`` one for a program."""

    def __init__(
        self,
        detail: str,
        code: str = "error",
        status: int | None = None,
        field: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.status = status
        self.field = field
        self.body = body or {}

    def __str__(self) -> str:
        return self.detail

    def __repr__(self) -> str:
        return f"ScanbenchError({self.detail!r}, code={self.code!r}, status={self.status!r})"


# --- configuration ----------------------------------------------------------------------------


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/scanbench/config.json`` (``~/.config/scanbench/config.json``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "scanbench" / "config.json"


def load_config() -> dict[str, Any]:
    """The saved settings (``url``, ``token``, ``username``), or ``{}`` when there are none."""
    try:
        data = json.loads(config_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_config(**values: Any) -> Path:
    """Write ``values`` over the saved settings, readable by the user only (mode 0600)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {**load_config(), **values}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


# --- streaming multipart upload -----------------------------------------------------------------


class _MultipartStream:
    """A multipart/form-data body read from disk in chunks as requests sends it: the length
    is known up front (so the request has a Content-Length, which every WSGI server accepts),
    the file is never whole in memory."""

    def __init__(
        self,
        fields: dict[str, str],
        file_field: str,
        path: Path,
        progress: Progress | None = None,
    ) -> None:
        self.boundary = f"scanbench-{uuid.uuid4().hex}"
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        head = b""
        for name, value in fields.items():
            head += (
                (
                    f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                ).encode()
                + value.encode("utf-8")
                + b"\r\n"
            )
        filename = (
            path.name.replace("\\", "_").replace('"', "_").replace("\r", "").replace("\n", "")
        )
        head += (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="{file_field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        self._head = head
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._size = path.stat().st_size
        self._length = len(head) + self._size + len(self._tail)
        self._fh: IO[bytes] = path.open("rb")
        self._stage = 0  # 0 head, 1 file, 2 tail, 3 done
        self._sent = 0
        self._progress = progress

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(CHUNK):
            yield chunk

    def _report(self, n: int) -> None:
        self._sent += n
        if self._progress is not None:
            self._progress(min(self._sent, self._size), self._size)

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size is None or size < 0 else size
        if self._stage == 0:
            self._stage = 1
            return self._head
        if self._stage == 1:
            chunk = self._fh.read(size)
            if chunk:
                self._report(len(chunk))
                return chunk
            self._fh.close()
            self._stage = 2
        if self._stage == 2:
            self._stage = 3
            return self._tail
        return b""

    def close(self) -> None:
        self._fh.close()


# --- the client ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _retry_after(response: requests.Response) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, min(float(value), MAX_RETRY_WAIT))
    except ValueError:
        return 1.0


def _error_from(response: requests.Response) -> ScanbenchError:
    """The server's ``{"detail", "code", "field"}`` as an exception (any other body: the HTTP
    status in words)."""
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        code = body.get("code")
        field = body.get("field")
        return ScanbenchError(
            " ".join(body["detail"].split()),
            code=code if isinstance(code, str) and code else f"http_{response.status_code}",
            status=response.status_code,
            field=field if isinstance(field, str) else None,
            body=body,
        )
    reason = response.reason or "error"
    codes = {401: "not_authenticated", 403: "permission_denied", 404: "not_found"}
    return ScanbenchError(
        f"the server answered {response.status_code} {reason} for {response.url}",
        code=codes.get(response.status_code, f"http_{response.status_code}"),
        status=response.status_code,
    )


class Client:
    """A session with one Scanbench server. ``url`` and ``token`` default to
    ``SCANBENCH_URL`` / ``SCANBENCH_TOKEN``, else to what :meth:`login` saved."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        saved = load_config()
        self.url = (
            url or os.environ.get("SCANBENCH_URL") or saved.get("url") or DEFAULT_URL
        ).rstrip("/")
        self.token: str | None = token or os.environ.get("SCANBENCH_TOKEN") or None
        if self.token is None and str(saved.get("url") or "").rstrip("/") == self.url:
            self.token = saved.get("token") or None
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"scanbench-client/{__version__}"
        self.session.headers["Accept"] = "application/json"
        if self.token:
            self.session.headers["Authorization"] = f"Token {self.token}"

    def __repr__(self) -> str:
        return f"Client({self.url!r}, token={'set' if self.token else 'none'})"

    def close(self) -> None:
        """Close the kept-alive connections (also done by ``with Client() as sb:``)."""
        self.session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing --------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return urljoin(self.url + "/", path.lstrip("/"))

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        try:
            return self.session.request(method, url, **kwargs)
        except requests.exceptions.ConnectionError as exc:
            raise ScanbenchError(
                f"cannot reach the server at {self.url} (is SCANBENCH_URL right?)",
                code="connection_error",
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise ScanbenchError(
                f"the server at {self.url} did not answer in time", code="timeout"
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise ScanbenchError(f"request failed: {exc}", code="request_failed") from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send a request; a read throttled with 429 waits the Retry-After and tries again (a
        bounded number of times); any other 4xx/5xx raises :class:`ScanbenchError`."""
        url = path if path.startswith(("http://", "https://")) else self._url(path)
        retries = READ_RETRIES if method in ("GET", "HEAD") else 0
        for attempt in range(retries + 1):
            response = self._send(method, url, **kwargs)
            if response.status_code == 429 and attempt < retries:
                wait = _retry_after(response)
                response.close()
                time.sleep(wait)
                continue
            if response.status_code >= 400:
                error = _error_from(response)
                response.close()
                # Drop the last reference here, not when the caller's traceback goes: until
                # then the response keeps its socket open, even after close().
                del response
                raise error
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ScanbenchError(
                f"the server's answer to {method} {path} is not JSON", code="bad_response"
            ) from exc

    @staticmethod
    def _phase_path(slug: str, phase: str) -> str:
        return f"/api/challenges/{quote(slug)}/phases/{quote(phase)}/"

    # --- account -----------------------------------------------------------------------------

    @classmethod
    def login(cls, url: str | None, username: str, password: str, *, save: bool = True) -> Client:
        """Exchange a user name and password for an API token (POST /api/token/); with
        ``save`` (the default) keep the URL and token in :func:`config_path`, mode 0600."""
        client = cls(url=url, token=None)
        client.token = None
        client.session.headers.pop("Authorization", None)
        try:
            data = client._json(
                "POST", "/api/token/", json={"username": username, "password": password}
            )
        except ScanbenchError:
            client.close()
            raise
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ScanbenchError("the server's answer holds no token", code="bad_response")
        client.token = token
        client.session.headers["Authorization"] = f"Token {token}"
        if save:
            save_config(url=client.url, token=token, username=data.get("username") or username)
        return client

    # --- challenges and data -----------------------------------------------------------------

    def challenges(self) -> list[dict[str, Any]]:
        """Every challenge listed on the site, with its phases."""
        return list(self._json("GET", "/api/challenges/").get("results", []))

    def challenge(self, slug: str) -> dict[str, Any]:
        """A challenge's task card: inputs, outputs, classes, licence, terms, phases."""
        return dict(self._json("GET", f"/api/challenges/{quote(slug)}/"))

    def phase(self, slug: str, phase: str) -> dict[str, Any]:
        """A phase: its metrics, limits and how many submissions are left today."""
        return dict(self._json("GET", self._phase_path(slug, phase)))

    def join(self, slug: str, accept_terms: bool = True) -> dict[str, Any]:
        """Join a challenge accepting its terms (read them first: ``challenge(slug)["terms"]``).
        Returns ``{"joined": true, "status": "approved"|"pending"}``."""
        return dict(
            self._json(
                "POST", f"/api/challenges/{quote(slug)}/join/", json={"accept_terms": accept_terms}
            )
        )

    def data_files(self, slug: str) -> list[dict[str, Any]]:
        """The challenge's public files: ``name``, ``description``, ``size``, ``sha256``,
        ``url`` (needs the challenge joined)."""
        return list(self._json("GET", f"/api/challenges/{quote(slug)}/data/").get("files", []))

    def download(
        self,
        slug: str,
        name: str,
        dest: str | Path = ".",
        progress: Progress | None = None,
    ) -> Path:
        """Download the public file ``name`` to ``dest`` (a folder, or the file's path).

        It is streamed into ``<file>.part``; a ``.part`` left by an interrupted download is
        resumed with a Range request. The result must have the sha256 the files list gives:
        a resumed file that does not is downloaded again from the start; a fresh one that does
        not is removed and :class:`ScanbenchError` (code ``checksum_mismatch``) is raised. A
        file already in place with the right checksum is not downloaded again."""
        entry = next((f for f in self.data_files(slug) if f.get("name") == name), None)
        if entry is None:
            raise ScanbenchError(
                f"challenge {slug} has no public file named {name!r}", code="not_found", status=404
            )
        folder_given = str(dest).endswith(("/", os.sep))
        dest = Path(dest)
        target = dest / name if folder_given or dest.is_dir() else dest
        target.parent.mkdir(parents=True, exist_ok=True)
        expected = str(entry.get("sha256") or "").lower()
        size = entry.get("size")
        total = int(size) if isinstance(size, int) else None
        if (
            target.is_file()
            and expected
            and (total is None or target.stat().st_size == total)
            and _sha256(target) == expected
        ):
            if progress is not None:
                progress(target.stat().st_size, total)
            return target
        url = entry.get("url") or f"/api/challenges/{quote(slug)}/data/{quote(name)}"
        part = target.with_name(target.name + ".part")
        resumed = self._fetch(str(url), part, total, progress)
        if expected and _sha256(part) != expected:
            part.unlink(missing_ok=True)
            if resumed:  # the kept bytes were bad: once more from the start
                self._fetch(str(url), part, total, progress)
                if _sha256(part) == expected:
                    part.replace(target)
                    return target
                part.unlink(missing_ok=True)
            raise ScanbenchError(
                f"{name}: the downloaded file's sha256 differs from the listed {expected}; "
                "it was removed, download it again",
                code="checksum_mismatch",
            )
        part.replace(target)
        return target

    def _fetch(self, url: str, part: Path, total: int | None, progress: Progress | None) -> bool:
        """Stream ``url`` into ``part``, resuming what it holds; True when it resumed."""
        have = part.stat().st_size if part.is_file() else 0
        if total is not None and have >= total:
            part.unlink()
            have = 0
        headers = {"Range": f"bytes={have}-", "Accept": "*/*"} if have else {"Accept": "*/*"}
        response = self._request("GET", url, headers=headers, stream=True)
        with response:
            resumed = have > 0 and response.status_code == 206
            if not resumed:
                have = 0
            if total is None:
                length = response.headers.get("Content-Length")
                total = have + int(length) if length and length.isdigit() else None
            done = have
            with part.open("ab" if resumed else "wb") as fh:
                for chunk in response.iter_content(CHUNK):
                    fh.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        return resumed

    # --- submissions -------------------------------------------------------------------------

    def submit(
        self,
        slug: str,
        phase: str,
        path: str | Path,
        comment: str = "",
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Upload a predictions file to a phase (streamed from disk); returns the Submission,
        queued for scoring."""
        path = Path(path)
        if not path.is_file():
            raise ScanbenchError(f"{path}: no such file", code="file_not_found")
        body = _MultipartStream({"comment": comment}, "file", path, progress)
        try:
            return dict(
                self._json(
                    "POST",
                    self._phase_path(slug, phase) + "submissions/",
                    data=body,
                    headers={"Content-Type": body.content_type},
                )
            )
        finally:
            body.close()

    def submission(self, id: int) -> dict[str, Any]:  # noqa: A002 -- the API's name
        """One submission (yours or your team's) with its evaluations and scores."""
        return dict(self._json("GET", f"/api/submissions/{int(id)}/"))

    def wait(
        self,
        id: int,  # noqa: A002
        timeout: float = 3600.0,
        poll: float = 2.0,
        on_change: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a submission until it is succeeded, failed or cancelled and return it;
        ``on_change`` is called with the submission each time its state changes. Raises
        :class:`ScanbenchError` (code ``timeout``) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            sub = self.submission(id)
            if sub.get("state") != last:
                last = sub.get("state")
                if on_change is not None:
                    on_change(sub)
            if last in FINAL_STATES:
                return sub
            if time.monotonic() >= deadline:
                raise ScanbenchError(
                    f"submission {id} is still {last} after {timeout:g} s", code="timeout"
                )
            time.sleep(poll)

    def submissions(self, slug: str, phase: str) -> list[dict[str, Any]]:
        """Your (or your team's) submissions to a phase, newest first."""
        data = self._json("GET", self._phase_path(slug, phase) + "submissions/")
        return list(data.get("results", []))

    # --- leaderboards ------------------------------------------------------------------------

    def leaderboard(
        self,
        slug: str,
        phase: str,
        part: str = "public",
        limit: int | None = None,
        offset: int | None = None,
    ) -> dict[str, Any]:
        """A phase's leaderboard: ``{"count", "part", "metric", "results": [...]}``. The
        private part before the organizers reveal it raises (code ``private_hidden``)."""
        params: dict[str, Any] = {"part": part}
        if limit is not None:
            params["limit"] = limit
        if offset is not None:
            params["offset"] = offset
        return dict(
            self._json("GET", self._phase_path(slug, phase) + "leaderboard/", params=params)
        )

    def leaderboard_csv(self, slug: str, phase: str, part: str = "public") -> str:
        """The leaderboard as CSV text (the same as the page's CSV download)."""
        path = f"/api/challenges/{quote(slug)}/phases/{quote(phase)}/leaderboard.csv"
        response = self._request("GET", path, params={"part": part}, headers={"Accept": "*/*"})
        response.encoding = response.encoding or "utf-8"
        return response.text
