"""Backup and restore of the database and the stored files (docs/backup.md).

A backup is one uncompressed tar file, mode 0600:

* ``manifest.json``: format, Scanbench version, creation time, the latest applied migrations of
  every app, row counts per table, and the size and sha256 of every other member;
* ``database.dump``: ``pg_dump --format=custom`` of the database, taken in the same
  REPEATABLE READ snapshot as the row counts and the migration state;
* ``files/<root>/<path>``: every regular file under each storage root of ``storage_roots()``.

Restoring checks the whole archive (member names and kinds, every sha256, the migration state
against the code) before it writes anything, and refuses a target that already holds data
unless told to replace it. The archive holds the hidden test labels of the private root: it
must be kept as secret as that root.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.db import connections, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

FORMAT = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
FILES = "files"
_CHUNK = 1024 * 1024
#: tables that ``migrate`` fills by itself: rows there do not make a database "not empty"
_MIGRATE_FILLS = {"django_migrations", "django_content_type", "auth_permission"}


class BackupError(Exception):
    """The backup or the restore cannot go ahead; the message says why and what to do."""


@dataclass(frozen=True)
class RestoreReport:
    files: int
    bytes: int
    tables: int
    replaced: bool


@dataclass
class _Verified:
    manifest: dict[str, Any]
    members: dict[str, tarfile.TarInfo] = field(default_factory=dict)


def storage_roots() -> dict[str, Path]:
    """The folders whose files a backup holds, by their name in the archive.

    Generated public files (``data``) and the outputs of code and model submissions
    (``evaluations``, which ``Evaluation.predictions`` points into) are kept with the two
    upload roots; caches, the broker folder, static files and scratch folders are not.
    """
    var = Path(settings.VAR_DIR)
    return {
        "media": Path(settings.MEDIA_ROOT),
        "private": Path(settings.SCANBENCH_PRIVATE_ROOT),
        "data": var / "data",
        "evaluations": var / "evaluations",
    }


def scanbench_version() -> str:
    try:
        return metadata.version("scanbench")
    except metadata.PackageNotFoundError:
        from evaluator._version import __version__

        return __version__


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(root: Path) -> Iterator[Path]:
    """Regular files under ``root`` in a stable order; links are not followed or kept."""
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _require_postgresql(database: str) -> dict[str, Any]:
    db = connections[database].settings_dict
    if db["ENGINE"] != "django.db.backends.postgresql":
        raise BackupError(
            f"database '{database}' uses {db['ENGINE']}: backup and restore support PostgreSQL "
            "only (for the embedded SQLite default, stop the platform and copy var/)"
        )
    return db


def _pg_env(db: dict[str, Any]) -> dict[str, str]:
    """libpq environment for pg_dump/pg_restore: no password on a command line."""
    env = dict(os.environ)
    for var, key in (
        ("PGHOST", "HOST"),
        ("PGPORT", "PORT"),
        ("PGUSER", "USER"),
        ("PGPASSWORD", "PASSWORD"),
        ("PGDATABASE", "NAME"),
    ):
        if db.get(key):
            env[var] = str(db[key])
    return env


def _latest_applied(loader: MigrationLoader) -> dict[str, list[str]]:
    """Per app, the applied migrations none of whose applied children is in the same app."""
    applied = set(loader.applied_migrations or {})
    latest: dict[str, list[str]] = {}
    for app_label, name in sorted(applied):
        node = loader.graph.node_map.get((app_label, name))
        children = node.children if node is not None else set()
        if not any(c[0] == app_label and c in applied for c in children):
            latest.setdefault(app_label, []).append(name)
    return latest


def _row_counts(database: str) -> dict[str, int]:
    conn = connections[database]
    counts = {}
    with conn.cursor() as cur:
        for table in sorted(conn.introspection.table_names(cur)):
            cur.execute(f"SELECT count(*) FROM {conn.ops.quote_name(table)}")  # noqa: S608
            counts[table] = int(cur.fetchone()[0])
    return counts


class _HashingReader:
    """A file wrapper that hashes what is read through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.digest = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.digest.update(data)
        return data


def _add_stream(tar: tarfile.TarFile, *, name: str, path: Path, size: int, sha256: str) -> None:
    """Add ``path`` as ``name``, checking that it still has the size and digest measured."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o600
    info.mtime = int(path.stat().st_mtime)
    with path.open("rb") as fh:
        reader = _HashingReader(fh)
        tar.addfile(info, reader)
    if reader.digest.hexdigest() != sha256:
        raise BackupError(
            f"{path} changed while it was being backed up: stop the workers and run it again"
        )


def backup_create(*, out: Path, database: str = "default") -> dict[str, Any]:
    """Write a backup tar to ``out`` (mode 0600, written to a temporary name and renamed) and
    return its manifest. Refuses to overwrite an existing ``out``."""
    db = _require_postgresql(database)
    out = Path(out)
    if out.exists():
        raise BackupError(f"{out} already exists: choose a new file name")
    if not out.parent.is_dir():
        raise BackupError(f"folder {out.parent} does not exist")
    with tempfile.TemporaryDirectory(prefix="scanbench-backup-") as tmp:
        dump = Path(tmp) / DUMP
        conn = connections[database]
        # One snapshot for the dump, the row counts and the migration state.
        with transaction.atomic(using=database):
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
            migrations = _latest_applied(MigrationLoader(conn, ignore_no_migrations=True))
            rows = _row_counts(database)
            done = subprocess.run(
                [
                    "pg_dump",
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    f"--file={dump}",
                ],
                env=_pg_env(db),
                capture_output=True,
                text=True,
                check=False,
            )
        if done.returncode != 0:
            raise BackupError(f"pg_dump failed: {done.stderr.strip()}")
        files: list[dict[str, Any]] = [
            {"path": DUMP, "size": dump.stat().st_size, "sha256": _sha256_file(dump)}
        ]
        sources: dict[str, Path] = {DUMP: dump}
        for root_name, root in storage_roots().items():
            for path in _walk(root):
                name = f"{FILES}/{root_name}/{path.relative_to(root).as_posix()}"
                files.append(
                    {"path": name, "size": path.stat().st_size, "sha256": _sha256_file(path)}
                )
                sources[name] = path
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "scanbench_version": scanbench_version(),
            "created_at": timezone.now().isoformat(),
            "database": {"engine": "postgresql", "dump": DUMP},
            "roots": sorted(storage_roots()),
            "migrations": migrations,
            "row_counts": rows,
            "files": files,
        }
        body = json.dumps(manifest, indent=2, sort_keys=True).encode()
        partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w") as tar:
                info = tarfile.TarInfo(MANIFEST)
                info.size = len(body)
                info.mode = 0o600
                info.mtime = int(timezone.now().timestamp())
                tar.addfile(info, io.BytesIO(body))
                for entry in files:
                    _add_stream(
                        tar,
                        name=entry["path"],
                        path=sources[entry["path"]],
                        size=entry["size"],
                        sha256=entry["sha256"],
                    )
            os.chmod(partial, 0o600)
            partial.replace(out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return manifest


# --- restore --------------------------------------------------------------------------------


def _check_member(info: tarfile.TarInfo) -> None:
    """Refuse a member that could write outside the target or is not a plain file (tar-slip)."""
    name = info.name
    pure = PurePosixPath(name)
    if name.startswith(("/", "\\")) or pure.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise BackupError(f"archive member '{name}' has an absolute path: refused")
    if ".." in pure.parts or "\\" in name:
        raise BackupError(f"archive member '{name}' leaves its folder ('..'): refused")
    if info.issym() or info.islnk():
        raise BackupError(f"archive member '{name}' is a link: refused")
    if not (info.isreg() or info.isdir()):
        raise BackupError(f"archive member '{name}' is a device or special file: refused")


def _check_migrations(manifest: dict[str, Any], database: str) -> None:
    """Refuse an archive made by newer code: a migration this code does not have."""
    loader = MigrationLoader(connections[database], ignore_no_migrations=True, load=True)
    known = set(loader.disk_migrations)
    for app_label, names in sorted(manifest.get("migrations", {}).items()):
        for name in names:
            if (app_label, name) not in known:
                raise BackupError(
                    f"the archive's database has migration {app_label}.{name}, which this code "
                    f"does not have: it was made by a newer Scanbench ({app_label} is ahead). "
                    "Deploy that version (or newer) before restoring."
                )


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:*")
    except tarfile.TarError as exc:
        raise BackupError(f"{archive} is not a tar archive: {exc}") from exc


def backup_verify(*, archive: Path, database: str = "default") -> _Verified:
    """Check an archive without writing anything: member names and kinds, manifest format,
    migration state, and every member's size and sha256 against the manifest."""
    archive = Path(archive)
    if not archive.is_file():
        raise BackupError(f"{archive} is not a file")
    with _open_tar(archive) as tar:
        members: dict[str, tarfile.TarInfo] = {}
        for info in tar.getmembers():
            _check_member(info)
            if info.isreg():
                if info.name in members:
                    raise BackupError(f"archive member '{info.name}' appears twice: refused")
                members[info.name] = info
        if MANIFEST not in members:
            raise BackupError(f"{archive} has no {MANIFEST}: not a Scanbench backup")
        raw = tar.extractfile(members[MANIFEST])
        assert raw is not None
        try:
            manifest = json.loads(raw.read())
        except ValueError as exc:
            raise BackupError(f"{MANIFEST} is not valid JSON: {exc}") from exc
        if manifest.get("format") != FORMAT:
            raise BackupError(
                f"backup format {manifest.get('format')!r} is not {FORMAT}: made by another "
                "Scanbench version"
            )
        _check_migrations(manifest, database)
        listed = {entry["path"]: entry for entry in manifest["files"]}
        extra = sorted(set(members) - set(listed) - {MANIFEST})
        if extra:
            raise BackupError(f"archive member '{extra[0]}' is not in the manifest: refused")
        for name, entry in listed.items():
            if name != DUMP and not name.startswith(f"{FILES}/"):
                raise BackupError(f"manifest entry '{name}' is outside {FILES}/: refused")
            if name.startswith(f"{FILES}/"):
                root = PurePosixPath(name).parts[1]
                if root not in storage_roots():
                    raise BackupError(f"archive member '{name}' is in unknown root '{root}'")
            if name not in members:
                raise BackupError(f"file '{name}' is in the manifest but not in the archive")
            info = members[name]
            fh = tar.extractfile(info)
            assert fh is not None
            digest = hashlib.sha256()
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
            if info.size != entry["size"] or digest.hexdigest() != entry["sha256"]:
                raise BackupError(
                    f"file '{name}' does not match the manifest (sha256 or size differs): the "
                    "archive is damaged or was altered; nothing was restored"
                )
    return _Verified(manifest=manifest, members=members)


def _not_empty(database: str) -> list[str]:
    """What already holds data: tables with rows (beyond what migrate fills) and roots with
    files."""
    conn = connections[database]
    ours = {
        model._meta.db_table
        for config in apps.get_app_configs()
        for model in config.get_models(include_auto_created=True)
    }
    found = []
    with conn.cursor() as cur:
        present = set(conn.introspection.table_names(cur))
        for table in sorted((ours & present) - _MIGRATE_FILLS):
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {conn.ops.quote_name(table)})")  # noqa: S608
            if cur.fetchone()[0]:
                found.append(f"table {table}")
    for name, root in storage_roots().items():
        if next(_walk(root), None) is not None:
            found.append(f"storage root '{name}' ({root})")
    return found


def _has_tables(database: str) -> bool:
    conn = connections[database]
    with conn.cursor() as cur:
        return bool(conn.introspection.table_names(cur))


def _empty_root(root: Path) -> None:
    """Remove what is inside ``root``, keeping the folder itself (it may be a mount point)."""
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def backup_restore(
    *, archive: Path, force: bool = False, database: str = "default"
) -> RestoreReport:
    """Restore a backup into this installation's database and storage roots.

    Precondition: the platform is stopped (web, workers, beat). The target must be empty (no
    rows in Scanbench's tables, no files in the roots) unless ``force``, which replaces
    everything. The archive is fully checked before anything is written.
    """
    db = _require_postgresql(database)
    verified = backup_verify(archive=archive, database=database)
    occupied = _not_empty(database)
    if occupied and not force:
        raise BackupError(
            "the target is not empty: "
            + "; ".join(occupied)
            + ". Restore into an empty database and empty storage roots, or pass --force to "
            "replace what is there."
        )
    manifest = verified.manifest
    roots = storage_roots()
    # A database that only went through `migrate` has the tables but no rows: the dump's
    # schema replaces them as --force would.
    clean = force or _has_tables(database)
    connections[database].close()
    with tempfile.TemporaryDirectory(prefix="scanbench-restore-") as tmp:
        dump = Path(tmp) / DUMP
        with _open_tar(archive) as tar:
            _extract_one(tar, verified.members[DUMP], dump, manifest_entry(manifest, DUMP))
            command = [
                "pg_restore",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={db['NAME']}",
            ]
            if clean:
                command += ["--clean", "--if-exists"]
            done = subprocess.run(
                [*command, str(dump)],
                env=_pg_env(db),
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise BackupError(f"pg_restore failed: {done.stderr.strip()}")
            if force:
                for root in roots.values():
                    _empty_root(root)
            count = size = 0
            for entry in manifest["files"]:
                if entry["path"] == DUMP:
                    continue
                parts = PurePosixPath(entry["path"]).parts
                root = roots[parts[1]]
                dest = root.joinpath(*parts[2:])
                if not dest.resolve().is_relative_to(root.resolve()):
                    raise BackupError(f"archive member '{entry['path']}' leaves its root")
                _extract_one(tar, verified.members[entry["path"]], dest, entry)
                count += 1
                size += entry["size"]
    return RestoreReport(
        files=count, bytes=size, tables=len(manifest["row_counts"]), replaced=bool(occupied)
    )


def manifest_entry(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in manifest["files"]:
        if entry["path"] == name:
            return dict(entry)
    raise BackupError(f"'{name}' is not in the manifest")


def _extract_one(
    tar: tarfile.TarFile, info: tarfile.TarInfo, dest: Path, entry: dict[str, Any]
) -> None:
    """Write one member to ``dest`` (new file), checking its sha256 once more as it goes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = tar.extractfile(info)
    assert src is not None
    digest = hashlib.sha256()
    with dest.open("xb") as fh:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            fh.write(chunk)
    if digest.hexdigest() != entry["sha256"]:
        dest.unlink()
        raise BackupError(f"file '{info.name}' changed while it was being restored")
