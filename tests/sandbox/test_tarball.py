"""Container-image tarballs are checked before the engine sees them: hostile ones are refused
from their headers alone (nothing is extracted), an honest one loads without its tags."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from evaluator.sandbox import (
    InvalidImageTarball,
    TarballLimits,
    inspect_image_tarball,
    load_image_tarball,
)

pytestmark = [pytest.mark.timeout(120)]


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _layer(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as layer:
        for name, data in files.items():
            _add(layer, name, data)
    return buffer.getvalue()


def make_image_tar(
    path: Path,
    *,
    layer: bytes | None = None,
    architecture: str = "amd64",
    repo_tags: list[str] | None = None,
    images: int = 1,
    extra: list[tarfile.TarInfo] | None = None,
) -> Path:
    """A docker-save style archive (manifest.json, config, one layer) built by hand."""
    layer = layer if layer is not None else _layer({"hello.txt": b"hello\n"})
    layer_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["/hello.txt"]},
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        }
    ).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    entry = {"Config": config_name, "RepoTags": repo_tags, "Layers": [f"{layer_id}/layer.tar"]}
    with tarfile.open(path, "w") as archive:
        _add(archive, config_name, config)
        _add(archive, f"{layer_id}/layer.tar", layer)
        _add(archive, "manifest.json", json.dumps([entry] * images).encode())
        for info in extra or []:
            archive.addfile(info)
    return path


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_an_honest_hand_made_tarball_passes_inspection(tmp_path):
    info = inspect_image_tarball(make_image_tar(tmp_path / "ok.tar"))
    assert info.architecture == "amd64" and info.os == "linux" and len(info.layers) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([tarfile.TarInfo("../evil")], "leaves the archive"),
        ([tarfile.TarInfo("/etc/cron.d/evil")], "leaves the archive"),
        ([_link("passwd", "/etc/passwd", tarfile.SYMTYPE)], "is a link"),
        ([_link("up", "../../../etc", tarfile.SYMTYPE)], "is a link"),
        ([_link("hard", "../../etc/shadow", tarfile.LNKTYPE)], "is a link"),
    ],
    ids=["dotdot", "absolute", "symlink-abs", "symlink-up", "hardlink-out"],
)
def test_paths_and_links_leaving_the_archive_are_refused(tmp_path, extra, message):
    tarball = make_image_tar(tmp_path / "bad.tar", extra=extra)
    with pytest.raises(InvalidImageTarball, match=message):
        inspect_image_tarball(tarball)


def test_a_layer_path_leaving_the_image_is_refused(tmp_path):
    tarball = make_image_tar(tmp_path / "bad.tar", layer=_layer({"../../escape": b"x"}))
    with pytest.raises(InvalidImageTarball, match="leaves the image"):
        inspect_image_tarball(tarball)


def _sparse_tar(tmp_path: Path, name: str) -> Path:
    """GNU tar's --sparse archive of a 10 GB file that is all hole: a few KiB on disk."""
    if shutil.which("tar") is None:
        pytest.skip("GNU tar is needed to make a sparse archive")
    work = tmp_path / "sparse"
    work.mkdir()
    with (work / "big").open("wb") as handle:
        handle.truncate(10 * 10**9)
    target = tmp_path / name
    subprocess.run(["tar", "--sparse", "-C", str(work), "-cf", str(target), "big"], check=True)
    (work / "big").unlink()
    return target


def test_a_10_gb_sparse_file_is_refused_by_its_declared_size(tmp_path):
    sparse = _sparse_tar(tmp_path, "sparse.tar")
    assert sparse.stat().st_size < 1024 * 1024
    free_before = shutil.disk_usage(tmp_path).free
    started = time.monotonic()
    with pytest.raises(InvalidImageTarball, match=r"sparse|declares more than"):
        inspect_image_tarball(sparse)
    assert time.monotonic() - started < 5
    assert shutil.disk_usage(tmp_path).free > free_before - 100 * 1024 * 1024  # nothing unpacked


def test_a_10_gb_sparse_file_inside_a_layer_is_refused(tmp_path):
    layer = _sparse_tar(tmp_path, "layer.tar").read_bytes()
    tarball = make_image_tar(tmp_path / "bad.tar", layer=layer)
    with pytest.raises(InvalidImageTarball, match="sparse"):
        inspect_image_tarball(tarball)


def test_a_compressed_layer_unpacking_past_the_limit_is_refused(tmp_path):
    import gzip

    layer = gzip.compress(_layer({"zeros": b"\0" * (1 << 20)}))  # ~1 KiB packed, 1 MiB unpacked
    tarball = make_image_tar(tmp_path / "bomb.tar", layer=layer)
    with pytest.raises(InvalidImageTarball, match="unpacks to more than"):
        inspect_image_tarball(tarball, TarballLimits(max_unpacked_bytes=64 * 1024))


def test_two_images_are_refused(tmp_path):
    with pytest.raises(InvalidImageTarball, match="exactly one image"):
        inspect_image_tarball(make_image_tar(tmp_path / "two.tar", images=2))


def test_other_architectures_are_refused(tmp_path):
    with pytest.raises(InvalidImageTarball, match="linux/amd64"):
        inspect_image_tarball(make_image_tar(tmp_path / "arm.tar", architecture="arm64"))


def test_size_limit_and_garbage_are_refused(tmp_path):
    tarball = make_image_tar(tmp_path / "ok.tar")
    with pytest.raises(InvalidImageTarball, match="larger than"):
        inspect_image_tarball(tarball, TarballLimits(max_tarball_bytes=1024))
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(b"\x00\x01not a tar" * 100)
    with pytest.raises(InvalidImageTarball):
        inspect_image_tarball(garbage)


@pytest.mark.docker
def test_loading_never_overwrites_a_tag_on_the_worker(docker_client, evaluator_image, tmp_path):
    before = docker_client.images.get(evaluator_image).id
    tarball = make_image_tar(tmp_path / "hijack.tar", repo_tags=[evaluator_image, "python:3"])
    image_id = load_image_tarball(tarball, docker_client)
    try:
        assert docker_client.images.get(evaluator_image).id == before
        assert docker_client.images.get(image_id).tags == []
    finally:
        docker_client.images.remove(image_id, force=True)
