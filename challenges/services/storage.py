"""Where files live: the local file system (the embedded default) or an S3-compatible object
store (``SCANBENCH_STORAGE=s3``, docs/storage.md).

Two storages: *public* (challenge inputs, train labels, starting kits, generated downloads;
MEDIA_ROOT or the public bucket) and *private* (hidden test labels, scoring programs; the
private root or the private bucket). Submissions' files use Django's default storage, which is
the private bucket on S3. Both buckets are private: public data leaves them only through a
presigned URL handed out after the download permission check.

Imports and data generation keep writing their files locally, under the same relative paths as
before, then :func:`storage_publish` copies them to the bucket. Workers read by path (the
evaluator opens files, the sandbox bind-mounts folders): :func:`storage_local_path` and
:func:`storage_local_dir` give them one, on the file system the file itself, on S3 a copy in
the worker's cache (``SCANBENCH_S3_CACHE_DIR``), downloaded once and checked by size and ETag.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage, Storage

logger = logging.getLogger(__name__)


def storage_is_s3() -> bool:
    return bool(settings.SCANBENCH_STORAGE == "s3")


#: one S3Storage per bucket and options (each holds its boto3 session and connections), one
#: FileSystemStorage per folder
_s3_storages: dict[str, Storage] = {}
_fs_storages: dict[str, FileSystemStorage] = {}


def _fs(location: Path | str) -> FileSystemStorage:
    key = str(location)
    if key not in _fs_storages:
        _fs_storages[key] = FileSystemStorage(location=key)
    return _fs_storages[key]


def _s3(bucket: str) -> Storage:
    from storages.backends.s3 import S3Storage

    options = {**settings.SCANBENCH_S3_OPTIONS, "bucket_name": bucket}
    key = json.dumps(options, sort_keys=True, default=str)
    if key not in _s3_storages:
        _s3_storages[key] = S3Storage(**options)
    return _s3_storages[key]


def public_storage() -> Storage:
    """Public data: MEDIA_ROOT, or the public bucket (private to the world all the same)."""
    if storage_is_s3():
        return _s3(settings.SCANBENCH_S3_PUBLIC_BUCKET)
    return _fs(settings.MEDIA_ROOT)


def private_storage() -> Storage:
    """Hidden data: SCANBENCH_PRIVATE_ROOT, or the private bucket. Never served."""
    if storage_is_s3():
        return _s3(settings.SCANBENCH_S3_PRIVATE_BUCKET)
    return _fs(settings.SCANBENCH_PRIVATE_ROOT)


def _is_local(storage: Storage) -> bool:
    return isinstance(storage, FileSystemStorage)


def storage_publish(*, storage: Storage, root: Path, rel: str, prefix: str = "") -> int:
    """Copy the file or folder ``root/rel`` (written locally) to ``storage`` under the key
    ``prefix + rel`` (and the same relative paths below it). Nothing to do on the file system,
    where ``root`` is the storage itself. An object already there with the same size is kept:
    the callers' folders are named by a digest of their content. Returns the number of
    objects uploaded."""
    if _is_local(storage):
        return 0
    from botocore.exceptions import ClientError

    src = root / rel
    files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
    uploaded = 0
    for path in files:
        key = prefix + path.relative_to(root).as_posix()
        obj: Any = storage.bucket.Object(key)  # type: ignore[attr-defined]
        try:
            there = obj.content_length == path.stat().st_size
        except ClientError:  # 404: not there yet
            there = False
        if there:
            continue
        obj.upload_file(str(path))
        uploaded += 1
    logger.info("published %d file(s) of %s to %s", uploaded, rel, storage.bucket_name)  # type: ignore[attr-defined]
    return uploaded


def _cache_path(storage: Storage, name: str, *, tree: str = "files") -> Path:
    """Where the worker cache keeps ``name`` of this storage's bucket: the copies under
    ``files/<bucket>/`` (folders there hold nothing else: they are mounted and listed as they
    are), their size and ETag under ``meta/<bucket>/``."""
    bucket: str = storage.bucket_name  # type: ignore[attr-defined]
    base = (Path(settings.SCANBENCH_S3_CACHE_DIR) / tree / bucket).resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"{name}: not a storage name")
    return path


def _fetch(storage: Storage, obj: Any, *, etag: str | None = None, size: int | None = None) -> Path:
    """The cached copy of ``obj`` (a boto3 Object of the storage's bucket), downloaded unless
    the copy there has the object's size and ETag (given by a listing, else read with one HEAD).
    Atomic (a temporary file in the cache, then a rename), so a concurrent reader sees a whole
    file or none."""
    dest = _cache_path(storage, obj.key)
    meta = _cache_path(storage, obj.key + ".json", tree="meta")
    if etag is None or size is None:
        obj.load()  # HEAD: size and ETag
        etag, size = obj.e_tag, obj.content_length
    want = {"etag": etag, "size": size}
    if dest.is_file() and dest.stat().st_size == want["size"]:
        with contextlib.suppress(OSError, ValueError):
            if json.loads(meta.read_text()) == want:
                return dest
    tmp_dir = Path(settings.SCANBENCH_S3_CACHE_DIR) / "tmp"
    for folder in (dest.parent, meta.parent, tmp_dir):
        folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, suffix=".part")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        obj.download_file(tmp_name)
        if tmp.stat().st_size != want["size"]:
            raise OSError(f"{obj.key}: got {tmp.stat().st_size} bytes, expected {want['size']}")
        tmp.chmod(0o644)
        tmp.replace(dest)
        tmp.write_text(json.dumps(want))
        tmp.replace(meta)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def storage_local_path(*, storage: Storage, name: str) -> Path:
    """A local path of the stored file ``name`` that a worker can open: on the file system the
    file itself; on S3 a copy in the worker cache, fetched when missing or changed."""
    if _is_local(storage):
        return Path(storage.path(name))
    return _fetch(storage, storage.bucket.Object(name))  # type: ignore[attr-defined]


def storage_local_dir(*, storage: Storage, prefix: str) -> Path:
    """A local folder holding every stored file under ``prefix`` (the same relative paths), for
    a worker to read or the sandbox to mount: on the file system the folder itself; on S3 the
    cached copies. Files that left the store since stay in the cache folder (callers' folders
    are named by a digest of their content, so that never happens in practice)."""
    if _is_local(storage):
        return Path(storage.path(prefix))
    folder = _cache_path(storage, prefix.rstrip("/"))
    bucket: Any = storage.bucket  # type: ignore[attr-defined]
    found = 0
    for summary in bucket.objects.filter(Prefix=prefix.rstrip("/") + "/"):
        # The listing carries each object's ETag and size: no HEAD per file.
        _fetch(storage, summary.Object(), etag=summary.e_tag, size=summary.size)
        found += 1
    folder.mkdir(parents=True, exist_ok=True)
    logger.debug("%s: %d file(s) cached in %s", prefix, found, folder)
    return folder


def storage_download_url(*, storage: Storage, name: str, filename: str) -> str:
    """A short-lived (SCANBENCH_S3_URL_EXPIRE_S) presigned URL that downloads ``name`` as an
    attachment called ``filename``; only for S3 storages."""
    url: str = storage.url(  # type: ignore[call-arg]
        name,
        parameters={"ResponseContentDisposition": f'attachment; filename="{filename}"'},
        expire=settings.SCANBENCH_S3_URL_EXPIRE_S,
    )
    return url
