"""Safe extraction of uploaded zip archives (bundles).

Refuses absolute paths, ``..`` components, links and an uncompressed total past a limit, all
checked from the central directory before a byte is written, and counts real bytes while
extracting in case the directory lies.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath


class UnsafeArchive(ValueError):
    """The archive could escape its folder or is too large; the message names file and entry."""


def safe_extract(archive: Path, dest: Path, *, max_total_bytes: int) -> list[Path]:
    name = archive.name
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(f"{name}: not a readable zip archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
        total = 0
        for info in infos:
            entry = info.filename
            p = PurePosixPath(entry.replace("\\", "/"))
            if (
                p.is_absolute()
                or entry.startswith(("/", "\\"))
                or (len(entry) > 1 and entry[1] == ":")
            ):
                raise UnsafeArchive(f"{name}: entry '{entry}' has an absolute path")
            if ".." in p.parts:
                raise UnsafeArchive(f"{name}: entry '{entry}' leaves the archive with '..'")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise UnsafeArchive(f"{name}: entry '{entry}' is a link, links are not allowed")
            total += info.file_size
            if total > max_total_bytes:
                raise UnsafeArchive(
                    f"{name}: uncompressed size exceeds the limit of {max_total_bytes} bytes "
                    f"(at entry '{entry}')"
                )
        written: list[Path] = []
        budget = max_total_bytes
        for info in infos:
            target = dest.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, target.open("wb") as out:
                    while chunk := src.read(1 << 20):
                        budget -= len(chunk)
                        if budget < 0:
                            raise UnsafeArchive(
                                f"{name}: entry '{info.filename}' expands past the declared size"
                            )
                        out.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise UnsafeArchive(f"{name}: entry '{info.filename}' is corrupt ({exc})") from exc
            written.append(target)
        return written
