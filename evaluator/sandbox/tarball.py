"""Container-image submissions: checking a ``docker save`` tarball before the engine sees it.

Checked without extracting anything: the file's size; every member of the outer archive is a regular
file or directory with a relative name that stays inside (no links at all, no devices, no sparse
files); the declared size of every member and of every member of every layer, so a 10 GB sparse file
is refused from its header and never unpacked; exactly one image (``manifest.json`` with one entry,
``index.json`` with at most one manifest); a ``linux``/``amd64`` config. Then a sanitized copy (tags
removed, so a submission can never overwrite a tag on the worker such as the evaluator image's) is
loaded, and the loaded image id must be the config digest that was checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors

from evaluator.errors import InvalidSubmission

__all__ = [
    "ImageTarballInfo",
    "InvalidImageTarball",
    "TarballLimits",
    "inspect_image_tarball",
    "load_image_tarball",
]

_META_LIMIT = 1024 * 1024


class InvalidImageTarball(InvalidSubmission):
    """The tarball is refused; the message is safe to show to the participant."""


@dataclass(frozen=True, slots=True)
class TarballLimits:
    max_tarball_bytes: int = 8 * 1024**3
    max_unpacked_bytes: int = 8 * 1024**3  # raise it for CUDA images (~10 GB)
    max_members: int = 200_000


@dataclass(frozen=True, slots=True)
class ImageTarballInfo:
    config_digest: str  # sha256:<hex>
    layers: tuple[str, ...]
    unpacked_bytes: int
    architecture: str
    os: str


def _refuse(path: Path, problem: str) -> InvalidImageTarball:
    return InvalidImageTarball(problem, file=path.name)


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and ".." not in parts and "\\" not in name and "\0" not in name


def _read_small(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> Any:
    if member.size > _META_LIMIT:
        raise _refuse(path, f"{member.name} is too large")
    handle = archive.extractfile(member)
    if handle is None:
        raise _refuse(path, f"{member.name} cannot be read")
    try:
        return json.loads(handle.read())
    except ValueError as exc:
        raise _refuse(path, f"{member.name} is not valid JSON") from exc


def _layer_bytes(
    handle: IO[bytes], name: str, path: Path, limits: TarballLimits, budget: int
) -> int:
    total = 0
    count = 0
    try:
        with tarfile.open(fileobj=handle, mode="r:*") as layer:
            for member in layer:
                count += 1
                if count > limits.max_members:
                    raise _refuse(path, f"layer {name} has more than {limits.max_members} files")
                if not _safe_name(member.name):
                    raise _refuse(path, f"layer {name} has a path that leaves the image")
                if member.issparse():
                    raise _refuse(path, f"layer {name} has a sparse file")
                # Device nodes under /dev are hidden by the /dev the engine mounts (and base
                # images made with debootstrap carry them); anywhere else they are refused.
                if (member.ischr() or member.isblk()) and not member.name.removeprefix(
                    "./"
                ).startswith("dev/"):
                    raise _refuse(path, f"layer {name} has a device file outside /dev")
                if member.islnk() and not _safe_name(member.linkname):
                    raise _refuse(path, f"layer {name} has a hard link that leaves the image")
                total += max(member.size, 0)
                if total > budget:
                    raise _refuse(
                        path, f"the image unpacks to more than {limits.max_unpacked_bytes} bytes"
                    )
    except tarfile.TarError as exc:
        raise _refuse(path, f"layer {name} is not a readable tar archive") from exc
    return total


def inspect_image_tarball(path: Path, limits: TarballLimits | None = None) -> ImageTarballInfo:
    """Check a ``docker save`` tarball without extracting it (raises InvalidImageTarball)."""
    limits = limits or TarballLimits()
    if not path.is_file() or path.is_symlink():
        raise _refuse(path, "the image tarball is not a regular file")
    if path.stat().st_size > limits.max_tarball_bytes:
        raise _refuse(path, f"the image tarball is larger than {limits.max_tarball_bytes} bytes")
    try:
        archive = tarfile.open(path, mode="r:*")  # noqa: SIM115 -- closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise _refuse(path, "not a tar archive (make it with docker save)") from exc
    with archive:
        members: dict[str, tarfile.TarInfo] = {}
        declared = 0
        try:
            for member in archive:
                if len(members) >= limits.max_members:
                    raise _refuse(path, f"more than {limits.max_members} members")
                if not _safe_name(member.name):
                    raise _refuse(path, f"the path {member.name[:100]!r} leaves the archive")
                if member.issym() or member.islnk():
                    raise _refuse(path, f"{member.name[:100]} is a link; links are not accepted")
                if member.issparse():
                    raise _refuse(path, f"{member.name[:100]} is a sparse file")
                if not (member.isreg() or member.isdir()):
                    raise _refuse(path, f"{member.name[:100]} is not a regular file or directory")
                declared += member.size
                if member.size > limits.max_unpacked_bytes or declared > limits.max_unpacked_bytes:
                    raise _refuse(
                        path,
                        f"{member.name[:100]} declares more than {limits.max_unpacked_bytes} bytes",
                    )
                members[member.name.rstrip("/").removeprefix("./")] = member
        except tarfile.TarError as exc:
            raise _refuse(path, "the archive is damaged") from exc

        if "manifest.json" not in members:
            raise _refuse(path, "no manifest.json: make the tarball with docker save")
        manifest = _read_small(archive, members["manifest.json"], path)
        if (
            not isinstance(manifest, list)
            or len(manifest) != 1
            or not isinstance(manifest[0], dict)
        ):
            raise _refuse(path, "the tarball must hold exactly one image")
        if "index.json" in members:
            index = _read_small(archive, members["index.json"], path)
            if not isinstance(index, dict) or len(index.get("manifests") or []) > 1:
                raise _refuse(path, "the tarball must hold exactly one image")
        entry = manifest[0]
        config_name = entry.get("Config")
        layers = entry.get("Layers")
        if not isinstance(config_name, str) or config_name not in members:
            raise _refuse(path, "manifest.json names no image config")
        if not isinstance(layers, list) or not all(
            isinstance(n, str) and n in members for n in layers
        ):
            raise _refuse(path, "manifest.json names layers that are not in the tarball")
        config_member = members[config_name]
        config = _read_small(archive, config_member, path)
        handle = archive.extractfile(config_member)
        assert handle is not None
        digest = "sha256:" + hashlib.sha256(handle.read()).hexdigest()
        architecture = str(config.get("architecture", ""))
        system = str(config.get("os", ""))
        if system != "linux" or architecture != "amd64":
            raise _refuse(path, f"the image is {system}/{architecture}; it must be linux/amd64")

        unpacked = 0
        for name in layers:
            layer_handle = archive.extractfile(members[name])
            if layer_handle is None:
                raise _refuse(path, f"layer {name} cannot be read")
            unpacked += _layer_bytes(
                layer_handle, name, path, limits, limits.max_unpacked_bytes - unpacked
            )
    return ImageTarballInfo(
        config_digest=digest,
        layers=tuple(layers),
        unpacked_bytes=unpacked,
        architecture=architecture,
        os=system,
    )


def _sanitized_copy(path: Path, target: IO[bytes]) -> None:
    """The same archive without tags: RepoTags emptied, ``repositories``/``index.json`` dropped."""
    with tarfile.open(path, mode="r:*") as source, tarfile.open(fileobj=target, mode="w|") as out:
        for member in source:
            name = member.name.rstrip("/").removeprefix("./")
            if name in ("repositories", "index.json", "oci-layout"):
                continue
            if name == "manifest.json":
                handle = source.extractfile(member)
                assert handle is not None
                manifest = json.loads(handle.read())
                for entry in manifest:
                    entry["RepoTags"] = None
                data = json.dumps(manifest).encode()
                info = tarfile.TarInfo("manifest.json")
                info.size = len(data)
                info.mtime = member.mtime
                out.addfile(info, io.BytesIO(data))
                continue
            out.addfile(member, source.extractfile(member) if member.isreg() else None)


def load_image_tarball(
    path: Path, client: docker.DockerClient, limits: TarballLimits | None = None
) -> str:
    """Check ``path`` (:func:`inspect_image_tarball`), load it untagged, return the image id.

    The caller removes the image when the submission is done (``client.images.remove(id)``).
    """
    info = inspect_image_tarball(path, limits)
    fd, temp_name = tempfile.mkstemp(prefix="scanbench-image-", suffix=".tar")
    try:
        with os.fdopen(fd, "w+b") as temp:
            _sanitized_copy(path, temp)
            temp.flush()
            temp.seek(0)
            try:
                images = client.images.load(temp)
            except docker.errors.APIError as exc:
                raise _refuse(path, "the Docker engine could not load this image") from exc
    finally:
        os.unlink(temp_name)
    ids = {image.id for image in images}
    if ids != {info.config_digest}:
        for image_id in ids:
            with contextlib.suppress(docker.errors.DockerException):
                client.images.remove(image_id, force=True)
        raise _refuse(path, "the loaded image is not the one the manifest describes")
    return info.config_digest
