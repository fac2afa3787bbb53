"""The standalone safe zip helper the bundle importer and the sandbox reuse."""

from __future__ import annotations

import stat
import zipfile

import pytest

from evaluator.readers.safe_zip import (
    UnsafeArchiveError,
    ZipLimits,
    check_member_name,
    safe_extract,
)


def test_member_names():
    assert check_member_name("a/./b/c.nii.gz") == "a/b/c.nii.gz"
    for bad in ("../x", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a\x00b"):
        with pytest.raises(UnsafeArchiveError):
            check_member_name(bad)


def test_safe_extract_writes_only_under_dest(tmp_path):
    zp = tmp_path / "ok.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("dir/a.txt", "hello")
        zf.writestr("b.txt", "world")
    out = safe_extract(zp, tmp_path / "dest")
    assert sorted(p.relative_to(tmp_path / "dest").as_posix() for p in out) == [
        "b.txt",
        "dir/a.txt",
    ]


def test_safe_extract_refuses_traversal_symlinks_and_bombs(tmp_path):
    zp = tmp_path / "evil.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("../../evil.txt", "x")
    with pytest.raises(UnsafeArchiveError, match=r"'\.\.' in the path"):
        safe_extract(zp, tmp_path / "d1")
    assert not (tmp_path / "evil.txt").exists()

    with zipfile.ZipFile(zp, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic links"):
        safe_extract(zp, tmp_path / "d2")

    with zipfile.ZipFile(zp, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * 3_000_000)
    with pytest.raises(UnsafeArchiveError, match="over the limit"):
        safe_extract(zp, tmp_path / "d3", limits=ZipLimits(max_member_bytes=1_000_000))
    with pytest.raises(UnsafeArchiveError, match="entries, more than the limit"):
        safe_extract(zp, tmp_path / "d4", limits=ZipLimits(max_members=0))
