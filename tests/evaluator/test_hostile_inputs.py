"""Hostile prediction files: each ends as the participant's error, in bounded memory and time,
with nothing scored from a file the participant did not send and no server path in the message.

Every attack runs twice: decoded in this process (a laptop's ``score``) and in the locked-down
child the platform uses (``ScoreOptions(isolation=...)``). The child's limits here are small
(512 MiB of memory above the interpreter, 20 s of CPU, 20 s of wall time): an attack that made
the decoder allocate or loop past them would end with the decoder's "limits" message instead of
the specific refusal each test expects, so the expected message is the proof that the file was
refused before the work.
"""

from __future__ import annotations

import bz2
import gzip
import io
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluator import InvalidSubmission, ScoreOptions, score
from evaluator.readers.isolated import DecodeLimits, _lock_down
from evaluator.readers.safe_zip import ZipLimits
from evaluator.synthetic import write_nifti

SHAPE = (10, 10, 8)
LIMITS = DecodeLimits(memory_bytes=512 << 20, cpu_seconds=20, wall_seconds=20.0)


@pytest.fixture(params=["in-process", "isolated"])
def options(request, tmp_path) -> ScoreOptions:
    if request.param == "isolated":
        iso = DecodeLimits(
            memory_bytes=LIMITS.memory_bytes,
            cpu_seconds=LIMITS.cpu_seconds,
            wall_seconds=LIMITS.wall_seconds,
            hidden=(str(tmp_path / "ref"),),
        )
        return ScoreOptions(isolation=iso, metrics=["dice"], bootstrap=0)
    return ScoreOptions(metrics=["dice"], bootstrap=0)


def cube(value: int = 1) -> np.ndarray:
    a = np.zeros(SHAPE, np.uint8)
    a[2:6, 2:6, 2:5] = value
    return a


@pytest.fixture
def ref_dir(tmp_path) -> Path:
    ref = tmp_path / "ref"
    ref.mkdir()
    for case in ("p1", "p2"):
        write_nifti(ref / f"{case}.nii.gz", cube(), (1.0, 1.0, 2.0))
    return ref


def preds_with(tmp_path: Path, name: str, data: bytes) -> Path:
    pred = tmp_path / "pred"
    pred.mkdir(exist_ok=True)
    write_nifti(pred / "p1.nii.gz", cube(), (1.0, 1.0, 2.0))
    (pred / name).write_bytes(data)
    return pred


def refused(tmp_path: Path, predictions: Path, ref: Path, options: ScoreOptions) -> str:
    with pytest.raises(InvalidSubmission) as info:
        score("segmentation", ref, predictions, options=options)
    message = str(info.value)
    assert "\n" not in message
    assert str(tmp_path) not in message and "/root" not in message and "/etc" not in message
    assert "limits" not in message, message  # refused by a check, not stopped by a limit
    return message


def nrrd(header: dict[str, str], body: bytes = b"") -> bytes:
    lines = ["NRRD0004", *(f"{k}: {v}" for k, v in header.items())]
    return ("\n".join(lines) + "\n\n").encode() + body


SEG_HEADER = {
    "type": "uint8",
    "dimension": "3",
    "sizes": " ".join(map(str, SHAPE)),
    "space": "left-posterior-superior",
    "space directions": "(1,0,0) (0,1,0) (0,0,2)",
}


# --------------------------------------------------------------------- reading another file


@pytest.mark.parametrize(
    "data_file",
    ["ABSOLUTE", "../ref/p2.nii.gz", "LIST\n../ref/p2.nii.gz", "../secret/p2.raw"],
    ids=["absolute", "relative", "list", "sibling"],
)
def test_nrrd_detached_data_file_is_never_opened(tmp_path, ref_dir, options, data_file):
    secret = tmp_path / "secret" / "p2.raw"  # the reference's voxels: Dice 1.0 if followed
    secret.parent.mkdir()
    secret.write_bytes(gzip.compress(cube().tobytes(order="F")))
    target = str(secret) if data_file == "ABSOLUTE" else data_file
    header = {**SEG_HEADER, "encoding": "gzip", "byte skip": "-1", "data file": target}
    pred = preds_with(tmp_path, "p2.nrrd", nrrd(header))
    message = refused(tmp_path, pred, ref_dir, options)
    assert "p2.nrrd: case p2: cannot read the mask: NRRD header names a separate data file" in (
        message
    )


def test_nrrd_datafile_spelling_without_space_is_refused(tmp_path, ref_dir, options):
    header = {**SEG_HEADER, "encoding": "raw", "datafile": "/etc/hostname"}
    pred = preds_with(tmp_path, "p2.nrrd", nrrd(header))
    assert "separate data file" in refused(tmp_path, pred, ref_dir, options)


def test_nifti_header_of_a_hdr_img_pair_is_refused(tmp_path, ref_dir, options):
    buf = io.BytesIO()
    import nibabel as nib

    img = nib.Nifti1Pair(cube(), np.diag([1.0, 1.0, 2.0, 1.0]))
    header = img.header.copy()
    header.set_data_shape(SHAPE)
    buf.write(header.binaryblock)
    pred = preds_with(tmp_path, "p2.nii", buf.getvalue() + b"\0" * 4 + cube().tobytes("F"))
    assert "separate .img file" in refused(tmp_path, pred, ref_dir, options)


def test_symlink_to_a_reference_is_refused(tmp_path, ref_dir, options):
    pred = tmp_path / "pred"
    pred.mkdir()
    write_nifti(pred / "p1.nii.gz", cube(), (1.0, 1.0, 2.0))
    (pred / "p2.nii.gz").symlink_to(ref_dir / "p2.nii.gz")
    assert "symbolic links are not allowed" in refused(tmp_path, pred, ref_dir, options)


# ----------------------------------------------------------------------- decompression bombs


def test_nrrd_gzip_bomb_is_refused_by_its_declared_size(tmp_path, ref_dir, options):
    body = gzip.compress(b"\0" * (64 << 20), compresslevel=9)  # 64 MiB in about 64 KB
    header = {**SEG_HEADER, "sizes": "4096 4096 4", "encoding": "gzip"}
    pred = preds_with(tmp_path, "p2.nrrd", nrrd(header, body))
    assert "mask shape (4096, 4096, 4) differs from the reference shape (10, 10, 8)" in refused(
        tmp_path, pred, ref_dir, options
    )


def test_nrrd_gzip_stream_longer_than_declared_is_cut_at_the_declared_size(
    tmp_path, ref_dir, options
):
    # The right size in the header, gigabytes of zeros behind it: only the declared bytes are
    # inflated, and the mask (all zeros) is scored.
    body = gzip.compress(b"\0" * (256 << 20), compresslevel=9)
    header = {**SEG_HEADER, "encoding": "gzip"}
    pred = preds_with(tmp_path, "p2.nrrd", nrrd(header, body))
    report = score("segmentation", ref_dir, pred, options=options)
    assert report.cases["p2"]["dice"] == 0.0


def test_nifti_gzip_bomb_with_a_huge_declared_shape(tmp_path, ref_dir, options):
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8)
    header.set_data_shape((2048, 2048, 512))  # 2 GiB declared
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + b"\0" * (32 << 20)
    pred = preds_with(tmp_path, "p2.nii.gz", gzip.compress(raw, compresslevel=9))
    assert "mask shape (2048, 2048, 512) differs from the reference shape" in refused(
        tmp_path, pred, ref_dir, options
    )


def test_gzip_trailer_that_lies_about_the_size(tmp_path, ref_dir, options):
    raw = gzip.compress(b"\0" * (32 << 20))
    lying = raw[:-4] + (100).to_bytes(4, "little")
    pred = preds_with(tmp_path, "p2.nii.gz", lying)
    assert "not a NIfTI file" in refused(tmp_path, pred, ref_dir, options)


def test_png_bomb_is_refused_before_decoding(tmp_path, ref_dir, options):
    buf = io.BytesIO()
    Image.new("L", (12000, 12000)).save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 1_000_000
    ref = tmp_path / "ref2d"
    ref.mkdir()
    for case in ("p1", "p2"):
        Image.fromarray(np.eye(16, dtype=np.uint8)).save(ref / f"{case}.png")
    pred = tmp_path / "pred"
    pred.mkdir()
    Image.fromarray(np.eye(16, dtype=np.uint8)).save(pred / "p1.png")
    (pred / "p2.png").write_bytes(buf.getvalue())
    assert "mask shape (12000, 12000) differs from the reference shape (16, 16)" in refused(
        tmp_path, pred, ref, options
    )


def test_npy_header_declaring_terabytes_is_refused(tmp_path, ref_dir, options):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": (100000, 100000, 100)}
    )
    pred = preds_with(tmp_path, "p2.npy", buf.getvalue() + b"\0" * 100)
    assert "differs from the reference shape" in refused(tmp_path, pred, ref_dir, options)


def test_npy_with_negative_or_object_header_is_refused(tmp_path, ref_dir, options):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "|O", "fortran_order": False, "shape": SHAPE}
    )
    pred = preds_with(tmp_path, "p2.npy", buf.getvalue() + b"\0" * 100)
    assert "cannot read the mask" in refused(tmp_path, pred, ref_dir, options)
    header = nrrd({**SEG_HEADER, "sizes": "-10 10 8", "encoding": "raw"}, b"\0" * 800)
    (tmp_path / "pred" / "p2.npy").unlink()
    (tmp_path / "pred" / "p2.nrrd").write_bytes(header)
    assert "cannot read the mask" in refused(tmp_path, tmp_path / "pred", ref_dir, options)


def test_npz_holding_a_zip_bomb_is_refused(tmp_path, ref_dir, options):
    inner = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        inner, {"descr": "|u1", "fortran_order": False, "shape": (20000, 20000)}
    )
    member = inner.getvalue() + b"\0" * (48 << 20)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mask.npy", member)
    pred = preds_with(tmp_path, "p2.npz", buf.getvalue())
    assert "differs from the reference shape" in refused(tmp_path, pred, ref_dir, options)


def test_nrrd_bzip2_bomb_is_bounded(tmp_path, ref_dir, options):
    body = bz2.compress(b"\0" * (64 << 20))
    header = {**SEG_HEADER, "encoding": "bzip2"}
    pred = preds_with(tmp_path, "p2.nrrd", nrrd(header, body))
    report = score("segmentation", ref_dir, pred, options=options)
    assert report.cases["p2"]["dice"] == 0.0


# ------------------------------------------------------------------------- archives and names


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_corrupt_deflate_stream_is_the_participants_error(tmp_path, ref_dir, options):
    good = (ref_dir / "p1.nii.gz").read_bytes()
    archive = zip_of(tmp_path / "masks.zip", {"p1.nii.gz": good, "p2.nii.gz": os.urandom(100_000)})
    data = bytearray(archive.read_bytes())
    start = data.find(b"p2.nii.gz") + len("p2.nii.gz") + 40
    data[start : start + 200] = os.urandom(200)  # inside p2's deflate stream
    archive.write_bytes(bytes(data))
    message = refused(tmp_path, archive, ref_dir, options)
    assert "masks.zip" in message and "p2" in message


def test_nested_zip_and_formats_under_the_wrong_name(tmp_path, ref_dir, options):
    good = (ref_dir / "p1.nii.gz").read_bytes()
    inner = zip_of(tmp_path / "inner.zip", {"p2.nii.gz": good}).read_bytes()
    cases = {
        "p2.nii.gz": inner,  # a zip named as a mask
        "p2.png": good,  # NIfTI named PNG
        "p2.nrrd": b"\x89PNG\r\n\x1a\n" + b"\0" * 64,  # PNG named NRRD
        "p2.npy": b"case_id,score\np1,0.5\n",  # CSV named NumPy
    }
    for name, data in cases.items():
        pred = tmp_path / "pred"
        if pred.exists():
            for p in pred.iterdir():
                p.unlink()
        preds_with(tmp_path, name, data)
        assert "cannot read the mask" in refused(tmp_path, pred, ref_dir, options)
    archive = zip_of(tmp_path / "nested.zip", {"p1.nii.gz": good, "p2.zip": inner})
    assert "unsupported file type" in refused(tmp_path, archive, ref_dir, options)


def test_two_spacings_for_a_3d_mask_is_the_participants_error(tmp_path, ref_dir, options):
    header = {k: v for k, v in SEG_HEADER.items() if not k.startswith("space")}
    header.update({"encoding": "raw", "spacings": "1 1"})
    pred = preds_with(tmp_path, "p2.nrrd", nrrd(header, cube().tobytes(order="F")))
    assert "2 voxel spacing(s) for a 3-D mask" in refused(tmp_path, pred, ref_dir, options)


def test_zip_member_past_the_unzipped_cap_is_refused(tmp_path, ref_dir, options):
    good = (ref_dir / "p1.nii.gz").read_bytes()
    archive = zip_of(tmp_path / "m.zip", {"p1.nii.gz": good, "p2.nii.gz": b"\0" * (40 << 20)})
    capped = ZipLimits(max_member_bytes=10 << 20, max_total_bytes=20 << 20)
    if options.isolation is not None:
        iso = options.isolation
        opts = ScoreOptions(
            metrics=["dice"],
            bootstrap=0,
            limits=capped,
            isolation=DecodeLimits(
                memory_bytes=iso.memory_bytes,
                cpu_seconds=iso.cpu_seconds,
                wall_seconds=iso.wall_seconds,
                zip_limits=capped,
            ),
        )
    else:
        opts = ScoreOptions(metrics=["dice"], bootstrap=0, limits=capped)
    assert "over the limit" in refused(tmp_path, archive, ref_dir, opts)


# ---------------------------------------------------------------------------- tables (CSV)

REF = "case_id,label\n" + "".join(f"c{i},{i % 2}\n" for i in range(50))


def table_refused(tmp_path: Path, data: bytes, name: str, options: ScoreOptions) -> str:
    (tmp_path / "ref.csv").write_text(REF)
    (tmp_path / name).write_bytes(data)
    options = ScoreOptions(isolation=options.isolation, bootstrap=0)
    with pytest.raises(InvalidSubmission) as info:
        score("classification", tmp_path / "ref.csv", tmp_path / name, options=options)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) not in message
    assert "limits" not in message, message
    return message


def test_csv_with_25000_columns_is_refused_before_parsing(tmp_path, options):
    header = "case_id," + ",".join("x" * 25_000)
    rows = "".join(f"c{i}," + ",".join("0" * 1 for _ in range(25_000)) + "\n" for i in range(20))
    data = zlib.compress((header + "\n" + rows).encode())
    assert len(data) < 200_000
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("preds.csv", header + "\n" + rows)
    message = table_refused(tmp_path, archive.getvalue(), "preds.zip", options)
    assert "25001 columns in the header, at most 3 expected" in message


def test_csv_zip_bomb_is_refused_by_the_table_cap(tmp_path):
    payload = "case_id,score\n" + "c0,0.5\n" * ((40 << 20) // 7)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("preds.csv", payload)
    assert len(archive.getvalue()) < 1_000_000
    iso = DecodeLimits(
        memory_bytes=512 << 20, cpu_seconds=20, wall_seconds=20.0, table_bytes=1 << 20
    )
    message = table_refused(
        tmp_path, archive.getvalue(), "preds.zip", ScoreOptions(isolation=iso, bootstrap=0)
    )
    assert "over the limit 1048576" in message


def test_a_million_duplicate_ids(tmp_path, options):
    data = ("case_id,score\n" + "c1,0.5\n" * 1_000_000).encode()
    assert "duplicate case id(s): c1" in table_refused(tmp_path, data, "preds.csv", options)


def test_malformed_utf8(tmp_path, options):
    data = b"case_id,score\nc1,0.5\n\xc3\x28,0.1\n"
    assert "not a UTF-8 text CSV file" in table_refused(tmp_path, data, "preds.csv", options)


# ------------------------------------------------------------------- the child's lock-down


@pytest.mark.parametrize("worker", ["as-is", "non-root"])
def test_decoding_child_sees_no_hidden_path_and_no_network(worker):
    """The lock-down itself, in a forked process: the hidden folder (world-readable, so only the
    lock-down hides it), /proc of other processes and a loopback listener are out of reach; the
    hidden folder cannot be uncovered by unmounting; a file opened before stays readable. The
    "non-root" variant drops to uid 65534 before locking down, as a worker that is not root."""
    import ctypes
    import encodings.idna  # noqa: F401 -- socket's name lookup needs it after the lock-down
    import shutil
    import socket
    import tempfile

    if worker == "non-root" and os.geteuid() != 0:
        pytest.skip("the worker is not root already: the as-is variant covers it")
    base = Path(tempfile.mkdtemp(dir="/var/tmp"))  # a world-traversable folder
    base.chmod(0o755)
    secret = base / "private" / "labels.csv"
    secret.parent.mkdir()
    secret.parent.chmod(0o755)
    secret.write_text("case_id,label\nc1,1\n")
    secret.chmod(0o644)
    kept = base / "upload.csv"
    kept.write_text("case_id,score\n")
    kept.chmod(0o644)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover -- the child reports through the pipe
        results = []
        try:
            if worker == "non-root":
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            fh = kept.open("rb")
            applied = _lock_down(DecodeLimits(hidden=(str(secret.parent),)))
            results.append("applied:" + ",".join(applied))
            results.append("kept:" + fh.read().decode().strip())
            libc = ctypes.CDLL(None, use_errno=True)
            libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
            unmounted = libc.umount2(str(secret.parent).encode(), 2) == 0  # MNT_DETACH
            results.append("UNMOUNTED" if unmounted else "mount held")
            for path in (secret, Path("/proc/1/environ")):
                try:
                    path.read_bytes()
                    results.append(f"READ {path.name}")
                except OSError:
                    results.append(f"hidden {path.name}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2)
                results.append("CONNECTED")
            except OSError:
                results.append("no network")
        except BaseException as exc:
            results.append(f"error {exc!r}")
        os.write(write_end, "\n".join(results).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    out = os.read(read_end, 65536).decode().splitlines()
    listener.close()
    shutil.rmtree(base)
    assert "kept:case_id,score" in out, out
    assert "hidden labels.csv" in out and "hidden environ" in out, out
    assert "mount held" in out, out
    assert "no network" in out, out
