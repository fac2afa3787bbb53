"""Backup of a platform with real state, restored into a second, empty PostgreSQL database and
empty storage roots: every row and every file comes back, and the refusals hold."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.loader import MigrationLoader

from challenges.models import Challenge, LeaderboardEntry, Phase, Result
from challenges.services.backup import BackupError, backup_verify
from challenges.services.data import data_files_current
from challenges.services.leaderboards import leaderboard_update
from challenges.services.scoring import evaluation_score
from challenges.services.submissions import submission_create
from tests.factories import classification_phase, segmentation_phase

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

#: prints every leaderboard part of every phase as the selector gives it, as JSON
LEADERBOARDS = """
import json
from challenges.models import Phase
from challenges.selectors import leaderboard_for_phase
out = {}
for phase in Phase.objects.order_by("pk"):
    organizer = phase.challenge.organizers.order_by("pk").first()
    for part in ("public", "private"):
        rows = leaderboard_for_phase(phase=phase, part=part, user=organizer)
        out[f"{phase.pk}:{part}"] = list(rows.values())
print("LEADERBOARDS " + json.dumps(out, default=str, sort_keys=True))
"""


def _roots(base: Path) -> dict[str, Path]:
    return {
        "media": base / "media",
        "private": base / "private",
        "data": base / "var" / "data",
        "evaluations": base / "var" / "evaluations",
    }


def _tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``root``."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _tables() -> dict[str, str]:
    """Every table of the installed apps (Scanbench, auth, tokens...) and its primary key."""
    tables: dict[str, str] = {}
    for config in apps.get_app_configs():
        for model in config.get_models(include_auto_created=True):
            tables[model._meta.db_table] = str(model._meta.pk.column)
    return tables


def _rows(dsn: str, table: str, pk: str) -> list[str]:
    """The table's rows in primary-key order, each as PostgreSQL's text form of the row (exact
    for floats and NaN, JSON and times alike)."""
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f'SELECT t::text FROM "{table}" AS t ORDER BY t."{pk}"')]


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _leaderboards(env: dict[str, str]) -> dict[str, list[dict[str, object]]]:
    done = _manage(env, "shell", "-c", LEADERBOARDS)
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("LEADERBOARDS "))
    boards: dict[str, list[dict[str, object]]] = json.loads(line.removeprefix("LEADERBOARDS "))
    return boards


def _member(tar: tarfile.TarFile, name: str | tarfile.TarInfo) -> bytes:
    fh = tar.extractfile(name)
    assert fh is not None
    return fh.read()


def _rewrite(
    archive: Path, out: Path, *, change: dict[str, bytes], add: list[tarfile.TarInfo]
) -> None:
    """A copy of ``archive`` with some members' contents replaced and members added."""
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for info in src.getmembers():
            data = _member(src, info)
            data = change.get(info.name, data)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
        for info in add:
            dst.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)


@pytest.fixture
def source_roots(settings: Any, tmp_path: Path) -> dict[str, Path]:
    base = tmp_path / "source"
    settings.MEDIA_ROOT = base / "media"
    settings.SCANBENCH_PRIVATE_ROOT = base / "private"
    settings.VAR_DIR = base / "var"
    return _roots(base)


@pytest.fixture
def empty_database(worker_env: dict[str, str]) -> Iterator[str]:
    """A second, empty PostgreSQL database on the test server; its DSN. Dropped at the end."""
    db = connection.settings_dict
    name = f"{db['NAME']}_restored"[:63]
    server = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
    server += f"{db['PORT'] or 5432}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _build_state(tmp_path: Path) -> list[Phase]:
    """Two challenges with data on disk (public and hidden), five scored submissions, their
    leaderboards and generated public files."""
    organizer, alice, bob = (
        User.objects.create_user(username=name, email=f"{name}@example.org", password="pw")
        for name in ("organizer", "alice", "bob")
    )
    cls_phase, preds = classification_phase(tmp_path / "cls")
    seg_phase, masks = segmentation_phase(tmp_path / "seg")
    lines = preds.read_text().splitlines()
    worse = "\n".join(
        [lines[0]] + [f"{line.split(',')[0]},0.5" if i % 3 == 0 else line
                      for i, line in enumerate(lines[1:])]
    ).encode()  # fmt: skip
    uploads = [
        (cls_phase, alice, "p.csv", preds.read_bytes()),
        (cls_phase, bob, "p.csv", worse),
        (cls_phase, bob, "p.csv", preds.read_bytes()),
        (seg_phase, alice, "masks.zip", masks.read_bytes()),
        (seg_phase, bob, "masks.zip", masks.read_bytes()),
    ]
    for phase, user, name, body in uploads:
        submission = submission_create(user=user, phase=phase, file=SimpleUploadedFile(name, body))
        evaluation = submission.evaluations.get()
        evaluation_score(evaluation_id=evaluation.pk)
        evaluation.refresh_from_db()
        assert evaluation.state == "succeeded", evaluation.message
    for phase in (cls_phase, seg_phase):
        phase.challenge.organizers.add(organizer)
        leaderboard_update(phase_id=phase.pk)
        data_files_current(challenge=phase.challenge)
    return [cls_phase, seg_phase]


def test_backup_restores_every_row_and_file_into_an_empty_database_and_refuses_bad_targets(
    transactional_db: None,
    worker_env: dict[str, str],
    source_roots: dict[str, Path],
    empty_database: str,
    tmp_path: Path,
) -> None:
    phases = _build_state(tmp_path / "inputs")
    # An output of a code submission (its run folder is kept for rescoring).
    run = source_roots["evaluations"] / "1" / "run-1"
    run.mkdir(parents=True)
    (run / "predictions.csv").write_bytes(b"case_id,score\ncase0,0.25\n")
    assert LeaderboardEntry.objects.filter(phase__in=phases).count() >= 4
    assert Result.objects.count() >= 10
    for name in ("media", "private", "data", "evaluations"):
        assert _tree(source_roots[name]), f"no files in the source root {name}"

    archive = tmp_path / "backups" / "scanbench.tar"
    archive.parent.mkdir()
    call_command("backup", str(archive), stdout=io.StringIO())
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        manifest = json.loads(_member(tar, "manifest.json"))
        names = set(tar.getnames())
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None
    assert manifest["scanbench_version"]
    leaves = MigrationLoader(None, ignore_no_migrations=True).graph.leaf_nodes("challenges")
    assert manifest["migrations"]["challenges"] == [leaves[0][1]]
    assert manifest["row_counts"]["challenges_challenge"] == Challenge.objects.count() == 2
    by_path = {f["path"]: f for f in manifest["files"]}
    assert names == {*by_path, "manifest.json"}
    for name in ("media", "private", "data", "evaluations"):
        for rel, digest in _tree(source_roots[name]).items():
            assert by_path[f"files/{name}/{rel}"]["sha256"] == digest

    target = tmp_path / "target"
    target_roots = _roots(target)
    target_env = {
        **worker_env,
        "DATABASE_URL": empty_database,
        "MEDIA_ROOT": str(target_roots["media"]),
        "SCANBENCH_PRIVATE_ROOT": str(target_roots["private"]),
        "SCANBENCH_VAR_DIR": str(target / "var"),
    }

    def nothing_written() -> None:
        with psycopg.connect(empty_database) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
        assert row is not None and row[0] == 0, "the target database was written to"
        for root in target_roots.values():
            assert not _tree(root), f"{root} was written to"

    # A file altered after the backup: refused, naming it, before anything is written.
    private_file = next(p for p in by_path if p.startswith("files/private/"))
    with tarfile.open(archive) as tar:
        original = _member(tar, private_file)
    tampered = tmp_path / "backups" / "tampered.tar"
    flipped = bytes([original[0] ^ 0xFF]) + original[1:]
    _rewrite(archive, tampered, change={private_file: flipped}, add=[])
    done = _manage(target_env, "restore", str(tampered))
    assert done.returncode != 0
    assert f"file '{private_file}' does not match the manifest" in done.stderr
    nothing_written()

    # A member that climbs out of the target (tar-slip): refused, naming it.
    slip = tmp_path / "backups" / "slip.tar"
    climber = tarfile.TarInfo("../x")
    climber.size = 4
    _rewrite(archive, slip, change={}, add=[climber])
    done = _manage(target_env, "restore", str(slip))
    assert done.returncode != 0
    assert "archive member '../x' leaves its folder" in done.stderr
    assert not (ROOT.parent / "x").exists() and not (tmp_path / "x").exists()
    nothing_written()

    # A link member and an absolute path are refused the same way.
    for info in (tarfile.TarInfo("files/media/link"), tarfile.TarInfo("/etc/x")):
        if info.name == "files/media/link":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        bad = tmp_path / "backups" / "bad.tar"
        _rewrite(archive, bad, change={}, add=[info])
        with pytest.raises(BackupError, match=f"archive member '{info.name}'"):
            backup_verify(archive=bad)
        bad.unlink()

    # An archive made by newer code (a migration this code lacks): refused, naming it.
    future = json.loads(json.dumps(manifest))
    future["migrations"]["challenges"] = ["9999_from_the_future"]
    ahead = tmp_path / "backups" / "ahead.tar"
    _rewrite(archive, ahead, change={"manifest.json": json.dumps(future).encode()}, add=[])
    with pytest.raises(CommandError, match=r"challenges\.9999_from_the_future"):
        call_command("restore", str(ahead), stdout=io.StringIO())

    # Restoring over this (non-empty) installation is refused, naming what holds data.
    with pytest.raises(CommandError) as refused:
        call_command("restore", str(archive), stdout=io.StringIO())
    assert "table challenges_challenge" in str(refused.value)
    assert "storage root 'media'" in str(refused.value)

    # The real restore, into the empty database and empty roots.
    done = _manage(target_env, "restore", str(archive))
    assert done.returncode == 0, done.stderr

    def same_as_source() -> None:
        tables = _tables()
        assert {"auth_user", "challenges_leaderboardentry", "challenges_result"} <= set(tables)
        for table, pk in sorted(tables.items()):
            source = _rows(worker_env["DATABASE_URL"], table, pk)
            assert _rows(empty_database, table, pk) == source, f"table {table} differs"
            assert len(source) == manifest["row_counts"][table], table
        for name, root in source_roots.items():
            assert _tree(target_roots[name]) == _tree(root), f"files of {name} differ"

    same_as_source()
    boards = _leaderboards(worker_env)
    assert sum(len(rows) for rows in boards.values()) >= 4
    assert _leaderboards(target_env) == boards

    # Once restored, the target is not empty: refused, unless --force replaces it.
    done = _manage(target_env, "restore", str(archive))
    assert done.returncode != 0
    assert "table challenges_challenge" in done.stderr and "storage root" in done.stderr
    (target_roots["media"] / "stray.txt").write_text("left over")
    done = _manage(target_env, "restore", str(archive), "--force")
    assert done.returncode == 0, done.stderr
    same_as_source()
    assert os.listdir(target_roots["media"])
