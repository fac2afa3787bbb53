"""A challenge's public downloads and who may take them (docs/data.md).

Public files are generated once from the public case rows (train inputs with their labels, test
inputs without, a sample submission in the exact prediction format) and the organizer's starting
kit (a folder of the bundle copied into MEDIA_ROOT at import) into a folder under
``VAR_DIR/data`` named by a digest of those rows, with their size and sha256 stored in
:class:`~challenges.models.DataFile`. The rows are the whitelist that download URLs are looked
up in; nothing here reads ``SCANBENCH_PRIVATE_ROOT`` or a test label, so no generated file can
hold a hidden part. A re-import that changes the public rows makes the next request regenerate
the files.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from challenges.models import (
    Case,
    CaseSplit,
    Challenge,
    ChallengeMembership,
    DataFile,
    MembershipStatus,
    TaskType,
)
from challenges.services.storage import (
    public_storage,
    storage_local_dir,
    storage_local_path,
    storage_publish,
)

logger = logging.getLogger(__name__)

#: bump when the layout of the generated files changes: every challenge's files are rebuilt
FORMAT_VERSION = "2"
#: zip members keep a fixed time, so that the same rows always give the same bytes and sha256
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_STORED_SUFFIXES = (".gz", ".png", ".npz", ".zip", ".jpg", ".jpeg")
#: columns of an organizer's input table that are never copied into a public file
_NEVER_PUBLIC_COLUMNS = {"label", "split", "leaderboard_part"}

DEFAULT_TERMS = (
    "Use the data only to take part in this challenge and for research on it. Respect its "
    "licence ({licence}) and cite it as its organizers ask ({attribution}). Do not try to "
    "identify any person in the data. Do not share the data with anyone outside the challenge."
)


class TermsNotAccepted(ValueError):
    """Joining a challenge needs its terms accepted (the checkbox on the join page)."""


def challenge_terms(*, challenge: Challenge) -> str:
    """The terms a participant accepts on joining: the bundle's, else a short default text."""
    return challenge.terms.strip() or DEFAULT_TERMS.format(
        licence=challenge.data_licence, attribution=challenge.data_attribution.strip()
    )


def terms_digest(*, challenge: Challenge) -> str:
    return hashlib.sha256(challenge_terms(challenge=challenge).encode()).hexdigest()


@transaction.atomic
def membership_join(
    *, user: AbstractBaseUser, challenge: Challenge, accept_terms: bool
) -> ChallengeMembership:
    """Join ``challenge`` accepting its current terms; joining again re-accepts them (after
    an organizer changed them) and keeps the organizers' decision. Where the challenge
    ``requires_approval``, a new membership waits for an organizer's approval (pending).
    Raises TermsNotAccepted, storing nothing, without the acceptance."""
    if not accept_terms:
        raise TermsNotAccepted("Tick the box to accept the challenge's terms before joining.")
    status = MembershipStatus.PENDING if challenge.requires_approval else MembershipStatus.APPROVED
    membership, _ = ChallengeMembership.objects.update_or_create(
        challenge=challenge,
        user=user,  # type: ignore[misc]
        defaults={
            "terms_accepted_at": timezone.now(),
            "terms_sha256": terms_digest(challenge=challenge),
        },
        create_defaults={
            "terms_accepted_at": timezone.now(),
            "terms_sha256": terms_digest(challenge=challenge),
            "status": status,
        },
    )
    return membership


# --- generated public files -------------------------------------------------------------------


def data_root() -> Path:
    """Folder of all generated public files (X-Accel paths are relative to it)."""
    return Path(settings.VAR_DIR) / "data"


@dataclass(frozen=True)
class _Planned:
    name: str
    description: str


def _public_rows(challenge: Challenge) -> list[tuple[Any, ...]]:
    """Per case the fields public files are made of; a test case's label and label file are
    deliberately not among them."""
    rows: list[tuple[Any, ...]] = []
    for ds in challenge.datasets.order_by("slug"):
        rows.append(("dataset", ds.pk, ds.slug, ds.input_table, ds.starting_kit))
        cases = Case.objects.filter(dataset=ds).order_by("case_id")
        for case_id, split, input_file, label, label_file in cases.values_list(
            "case_id", "split", "input_file", "label", "label_file"
        ):
            train = split == CaseSplit.TRAIN
            rows.append(
                (case_id, split, input_file, label if train else "", label_file if train else "")
            )
    return rows


def _stamp(challenge: Challenge) -> str:
    h = hashlib.sha256()
    h.update(repr((FORMAT_VERSION, challenge.pk, challenge.task_type, challenge.classes)).encode())
    for row in _public_rows(challenge):
        h.update(repr(row).encode())
    return h.hexdigest()


def data_files_current(*, challenge: Challenge) -> list[DataFile]:
    """The challenge's public files, generated first if the public rows changed since (or were
    never generated). Cheap when current: one query over the case rows and a stat per file."""
    stamp = _stamp(challenge)
    files = list(DataFile.objects.filter(challenge=challenge))
    if files and all(f.stamp == stamp and (data_root() / f.path).is_file() for f in files):
        return files
    return _generate(challenge_id=challenge.pk, stamp=stamp)


@transaction.atomic
def _generate(*, challenge_id: int, stamp: str) -> list[DataFile]:
    # The row lock makes concurrent first requests generate once; the second finds it done.
    challenge = Challenge.objects.select_for_update().get(pk=challenge_id)
    stamp = _stamp(challenge)
    files = list(DataFile.objects.filter(challenge=challenge))
    if files and all(f.stamp == stamp and (data_root() / f.path).is_file() for f in files):
        return files
    rel_folder = Path(challenge.slug) / stamp[:24]
    folder = data_root() / rel_folder
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    planned = _write_files(challenge, tmp)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    # On S3 the files are served from the public bucket (``data/<path>``, by presigned URL).
    storage_publish(storage=public_storage(), root=data_root(), rel=str(rel_folder), prefix="data/")
    DataFile.objects.filter(challenge=challenge).delete()
    rows = []
    for position, p in enumerate(planned):
        path = folder / p.name
        rows.append(
            DataFile(
                challenge=challenge,
                name=p.name,
                description=p.description,
                path=str(rel_folder / p.name),
                size=path.stat().st_size,
                sha256=_sha256(path),
                stamp=stamp,
                position=position,
            )
        )
    DataFile.objects.bulk_create(rows)
    stale = [p for p in (data_root() / challenge.slug).iterdir() if p.name != folder.name]
    transaction.on_commit(lambda: _remove(stale))
    return rows


def _remove(folders: list[Path]) -> None:
    """Drop files of earlier generations once the new rows are committed."""
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_files(challenge: Challenge, out: Path) -> list[_Planned]:
    planned: list[_Planned] = []
    datasets = list(challenge.datasets.order_by("slug"))
    for ds in datasets:
        prefix = f"{ds.slug}-" if len(datasets) > 1 else ""
        cases = list(Case.objects.filter(dataset=ds).order_by("case_id"))
        train = [c for c in cases if c.split == CaseSplit.TRAIN]
        test = [c for c in cases if c.split == CaseSplit.TEST]
        if ds.input_table:
            planned += _tabular(challenge, ds.input_table, train, test, out, prefix)
        else:
            planned += _per_case_files(challenge, train, test, out, prefix)
        if test:
            try:
                planned.append(_sample_submission(challenge, test, out, prefix))
            except ValueError as exc:  # an input type without a sample mask: list the rest
                logger.warning("challenge %s: no sample submission: %s", challenge.slug, exc)
                (out / f"{prefix}sample-submission.zip").unlink(missing_ok=True)
        if ds.starting_kit:
            kit = _starting_kit(ds.starting_kit, out, prefix)
            if kit is not None:
                planned.append(kit)
    return planned


def _starting_kit(rel: str, out: Path, prefix: str) -> _Planned | None:
    """Zip the organizer's starting kit (copied into MEDIA_ROOT at import, checked there by
    challenges.services.bundles: no links, size-capped) as ``starting-kit/<file>`` members."""
    media = Path(settings.MEDIA_ROOT).resolve()
    inside = (media / rel).resolve().is_relative_to(media)
    folder = storage_local_dir(storage=public_storage(), prefix=rel).resolve() if inside else media
    if not inside or not folder.is_dir():
        logger.warning("starting kit %s: not a folder under MEDIA_ROOT; not offered", rel)
        return None
    members = [
        (f"starting-kit/{p.relative_to(folder).as_posix()}", p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    ]
    if not members:
        return None
    name = f"{prefix}starting-kit.zip"
    _zip(out / name, members, [])
    return _Planned(
        name, f"Starting kit from the organizers: starting-kit/, {len(members)} file(s)."
    )


def _media(rel: str) -> Path:
    """A local path of the public file ``rel`` (a cached copy on S3)."""
    return storage_local_path(storage=public_storage(), name=rel)


def _tabular(
    challenge: Challenge,
    table: str,
    train: list[Case],
    test: list[Case],
    out: Path,
    prefix: str,
) -> list[_Planned]:
    """Split the organizer's table of all cases' features into train rows (with a ``label``
    column for classification) and test rows (features only)."""
    labels = {c.case_id: c.label for c in train}
    test_ids = {c.case_id for c in test}
    with_label = challenge.task_type == TaskType.CLASSIFICATION
    train_name, test_name = f"{prefix}train.csv", f"{prefix}test-inputs.csv"
    with (
        _media(table).open(newline="", encoding="utf-8") as src,
        (out / train_name).open("w", newline="", encoding="utf-8") as train_fh,
        (out / test_name).open("w", newline="", encoding="utf-8") as test_fh,
    ):
        reader = csv.DictReader(src)
        columns = [c for c in reader.fieldnames or [] if c not in _NEVER_PUBLIC_COLUMNS]
        train_w = csv.writer(train_fh, lineterminator="\n")
        test_w = csv.writer(test_fh, lineterminator="\n")
        train_w.writerow([*columns, "label"] if with_label else columns)
        test_w.writerow(columns)
        for row in reader:
            case_id = row["case_id"]
            values = [row[c] for c in columns]
            if case_id in labels:
                train_w.writerow([*values, labels[case_id]] if with_label else values)
            elif case_id in test_ids:
                test_w.writerow(values)
    return [
        _Planned(train_name, f"Train cases: features and label, {len(train)} rows."),
        _Planned(test_name, f"Test cases: features only (no label), {len(test)} rows."),
    ]


def _per_case_files(
    challenge: Challenge, train: list[Case], test: list[Case], out: Path, prefix: str
) -> list[_Planned]:
    planned: list[_Planned] = []
    if train:
        members: list[tuple[str, Path]] = [
            (f"inputs/{Path(c.input_file).name}", _media(c.input_file))
            for c in train
            if c.input_file
        ]
        extra: list[tuple[str, bytes]] = []
        if challenge.task_type == TaskType.CLASSIFICATION:
            body = "case_id,label\n" + "".join(f"{c.case_id},{c.label}\n" for c in train)
            extra.append(("labels.csv", body.encode()))
        else:
            members += [
                (f"labels/{Path(c.label_file).name}", _media(c.label_file))
                for c in train
                if c.label_file
            ]
        name = f"{prefix}train.zip"
        _zip(out / name, members, extra)
        what = "label masks" if challenge.task_type == TaskType.SEGMENTATION else "labels.csv"
        planned.append(_Planned(name, f"Train cases: inputs/ and {what}, {len(train)} cases."))
    test_members = [
        (f"inputs/{Path(c.input_file).name}", _media(c.input_file)) for c in test if c.input_file
    ]
    if test_members:
        name = f"{prefix}test-inputs.zip"
        _zip(out / name, test_members, [])
        planned.append(_Planned(name, f"Test cases: inputs/ only (no label), {len(test)} cases."))
    return planned


def _zip(
    path: Path, members: Iterable[tuple[str, Path]], extra: Iterable[tuple[str, bytes]]
) -> None:
    """Write a zip streaming each member from disk (never whole into memory)."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
        for arcname, data in extra:
            zf.writestr(_info(arcname), data)
        for arcname, src in members:
            with src.open("rb") as fh, zf.open(_info(arcname), "w", force_zip64=True) as dest:
                shutil.copyfileobj(fh, dest, 1 << 20)


def _info(arcname: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, date_time=_ZIP_TIME)
    info.compress_type = (
        zipfile.ZIP_STORED if arcname.lower().endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
    )
    info.external_attr = 0o644 << 16
    return info


# --- sample submissions -------------------------------------------------------------------------


def _sample_submission(challenge: Challenge, test: list[Case], out: Path, prefix: str) -> _Planned:
    """Every test case with a valid trivial prediction: submitted unchanged, it scores."""
    if challenge.task_type == TaskType.CLASSIFICATION:
        name = f"{prefix}sample-submission.csv"
        n_classes = max(len(challenge.classes or []), 2)
        if n_classes == 2:
            header, value = "case_id,score", "0.5"
        else:
            header = "case_id," + ",".join(f"class_{i}" for i in range(n_classes))
            value = ",".join([f"{1 / n_classes:.6f}"] * n_classes)
        body = header + "\n" + "".join(f"{c.case_id},{value}\n" for c in test)
        (out / name).write_text(body, encoding="utf-8")
        return _Planned(name, "Sample submission: every test case with a constant score.")
    name = f"{prefix}sample-submission.zip"
    with zipfile.ZipFile(out / name, "w", allowZip64=True) as zf:
        for case in test:
            if not case.input_file:
                continue
            suffix, data = _empty_mask_like(_media(case.input_file))
            zf.writestr(_info(f"{case.case_id}{suffix}"), data)
    return _Planned(name, "Sample submission: an empty mask per test case, on its input's grid.")


def _empty_mask_like(image: Path) -> tuple[str, bytes]:
    """An all-background mask on the grid (shape, spacing, orientation) of an input image."""
    import numpy as np

    name = image.name.lower()
    if name.endswith((".nii.gz", ".nii")):
        import nibabel as nib

        img: Any = nib.load(str(image))
        shape = tuple(int(n) for n in img.shape[:3])
        mask = nib.Nifti1Image(np.zeros(shape, dtype=np.uint8), img.affine)  # type: ignore[no-untyped-call]
        mask.header.set_zooms(img.header.get_zooms()[: len(shape)])  # type: ignore[no-untyped-call]
        return ".nii.gz", _gzip(mask.to_bytes())
    if name.endswith(".nrrd"):
        import nrrd

        header: dict[str, Any] = dict(nrrd.read_header(str(image)))
        sizes = [int(n) for n in header["sizes"]]
        keep: dict[str, Any] = {
            k: header[k]
            for k in ("space", "space directions", "space origin", "spacings")
            if k in header
        }
        buffer = io.BytesIO()
        _nrrd_write(buffer, np.zeros(sizes, dtype=np.uint8), {**keep, "encoding": "gzip"})
        return ".nrrd", buffer.getvalue()
    if name.endswith(".png"):
        from PIL import Image

        with Image.open(image) as src:
            width, height = src.size
        buffer = io.BytesIO()
        Image.new("L", (width, height)).save(buffer, format="PNG")
        return ".png", buffer.getvalue()
    if name.endswith(".npy"):
        shape_npy = np.load(image, mmap_mode="r", allow_pickle=False).shape  # header only
        buffer = io.BytesIO()
        np.save(buffer, np.zeros(shape_npy, dtype=np.uint8))
        return ".npy", buffer.getvalue()
    raise ValueError(f"{image.name}: no sample mask for this input type")


def _gzip(raw: bytes) -> bytes:
    import gzip

    return gzip.compress(raw, mtime=0)


def _nrrd_write(fh: IO[bytes], data: Any, header: dict[str, Any]) -> None:
    import nrrd

    nrrd.write(fh, data, header)
