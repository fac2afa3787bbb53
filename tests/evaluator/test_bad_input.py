"""Every bad input named in issue 3 gives InvalidSubmission with one line naming the file, the
case and the problem, and never a traceback or a hidden reference value."""

from __future__ import annotations

import gzip
import io
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from evaluator import InvalidReference, InvalidSubmission, ScoreOptions, score
from evaluator.readers.safe_zip import ZipLimits
from evaluator.synthetic import write_nifti

REF_CSV = "case_id,label\na,0\nb,1\nc,1\nd,0\n"


def cls_error(tmp_path: Path, text: str, ref: str = REF_CSV) -> str:
    (tmp_path / "ref.csv").write_text(ref)
    (tmp_path / "pred.csv").write_text(text)
    with pytest.raises(InvalidSubmission) as info:
        score("classification", tmp_path / "ref.csv", tmp_path / "pred.csv")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("pred.csv")
    return message


MISSING = "pred.csv: case d: 1 case(s) missing from the predictions: d"
UNKNOWN = "case zz: 1 unknown case id(s) not in the test set: zz"
WRONG = "wrong columns: found case_id,prob; expected case_id,score"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("case_id,score\na,.1\nb,.2\nc,.3\n", MISSING),
        ("case_id,score\na,.1\nb,.2\nc,.3\nd,.4\nzz,.5\n", UNKNOWN),
        ("case_id,score\na,.1\nb,.2\nc,.3\nd,.4\nd,.5\n", "case d: duplicate case id(s): d"),
        ("case_id,score\na,.1\nb,nan\nc,.3\nd,.4\n", "case b: column 'score' is NaN"),
        ("case_id,score\na,.1\nb,.2\nc,inf\nd,.4\n", "case c: column 'score' is infinite"),
        ("case_id,score\na,.1\nb,.2\nc,high\nd,.4\n", "case c: column 'score' is not a number"),
        ("case_id,score\na,.1\nb,1.5\nc,.3\nd,.4\n", "case b: column 'score' is 1.5, outside"),
        ("case_id,score\na,.1\nb,-0.1\nc,.3\nd,.4\n", "case b: column 'score' is -0.1, outside"),
        ("case_id,prob\na,.1\nb,.2\nc,.3\nd,.4\n", WRONG),
        ("id,score\na,.1\n", "missing column 'case_id'"),
        ("case_id,score,extra\na,.1,1\nb,.2,1\nc,.3,1\nd,.4,1\n", "wrong columns"),
        ("case_id,label\na,0\nb,1\nc,2\nd,0\n", "case c: label 2 is not a class of this challenge"),
        ("case_id,score\na,.1\nb,.2,9\n", "unreadable CSV"),
        ("", "the CSV file is empty"),
        ("case_id,score\n,.1\n", "empty case_id on data row 1"),
    ],
)
def test_classification_bad_predictions(tmp_path, text, expected):
    assert expected in cls_error(tmp_path, text)


def test_multiclass_rows_must_sum_to_one(tmp_path):
    ref = "case_id,label\na,0\nb,1\nc,2\n"
    text = "case_id,class_0,class_1,class_2\na,.5,.5,0\nb,.2,.2,.2\nc,0,0,1\n"
    msg = cls_error(tmp_path, text, ref)
    assert "case b: class probabilities sum to 0.6, not 1" in msg


def test_binary_garbage_is_not_a_csv(tmp_path):
    (tmp_path / "ref.csv").write_text(REF_CSV)
    (tmp_path / "pred.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(InvalidSubmission, match=r"pred\.csv: not a UTF-8 text CSV file"):
        score("classification", tmp_path / "ref.csv", tmp_path / "pred.csv")


def test_messages_never_reveal_reference_labels(tmp_path):
    ref = "case_id,label\nsecret_case,1\nother,0\n"
    msg = cls_error(tmp_path, "case_id,score\nother,0.2\n", ref)
    assert "secret_case" in msg
    assert "label" not in msg and ",1" not in msg and "= 1" not in msg


def test_bad_reference_is_an_organizer_error(tmp_path):
    (tmp_path / "ref.csv").write_text("case_id,label\na,x\n")
    (tmp_path / "pred.csv").write_text("case_id,score\na,.5\n")
    with pytest.raises(InvalidReference, match="column 'label' is not a number"):
        score("classification", tmp_path / "ref.csv", tmp_path / "pred.csv")


# ---------------------------------------------------------------------- segmentation


def cube(shape=(10, 10, 8), lo=2, hi=6, label=1):
    a = np.zeros(shape, dtype=np.uint8)
    a[lo:hi, lo:hi, lo:hi] = label
    return a


@pytest.fixture
def ref_dir(tmp_path, write_masks):
    return write_masks(tmp_path / "ref", {"p1": cube(), "p2": cube(lo=3)})


def seg_error(tmp_path, pred_path, ref_dir, options=None) -> str:
    with pytest.raises(InvalidSubmission) as info:
        score("segmentation", ref_dir, pred_path, options=options)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_mask(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube()})
    assert seg_error(tmp_path, pred, ref_dir) == (
        "pred: case p2: 1 case(s) missing from the predictions: p2"
    )


def test_unknown_mask(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube(), "p2": cube(), "p9": cube()})
    assert "case p9: 1 unknown case id(s) not in the test set: p9" in seg_error(
        tmp_path, pred, ref_dir
    )


def test_duplicate_case_in_two_formats(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube(), "p2": cube()})
    np.save(pred / "p2.npy", cube())
    msg = seg_error(tmp_path, pred, ref_dir)
    assert "case p2: duplicate case id: also given as" in msg


def test_shape_mismatch(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube(), "p2": cube(shape=(10, 10, 9))})
    assert seg_error(tmp_path, pred, ref_dir) == (
        "p2.nii.gz: case p2: mask shape (10, 10, 9) differs from the reference shape (10, 10, 8)"
    )


def test_spacing_mismatch(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube()})
    write_nifti(pred / "p2.nii.gz", cube(), (1.0, 1.0, 2.0))
    assert "case p2: voxel spacing (1.0, 1.0, 2.0) differs from the reference spacing" in (
        seg_error(tmp_path, pred, ref_dir)
    )


def test_grid_origin_mismatch(tmp_path, ref_dir, write_masks):
    import nibabel as nib

    pred = write_masks(tmp_path / "pred", {"p1": cube()})
    affine = np.eye(4)
    affine[:3, 3] = [10, 0, 0]
    nib.save(nib.Nifti1Image(cube(), affine), pred / "p2.nii.gz")
    assert "case p2: image grid (origin/orientation in the header) differs" in seg_error(
        tmp_path, pred, ref_dir
    )


def test_a_grid_within_tolerance_is_accepted(tmp_path, ref_dir, write_masks):
    # headers written by another tool round spacing and origin a little differently: within
    # the tolerances the prediction is scored (equal headers skip the tolerance checks; nearly
    # equal ones must still pass them)
    import nibabel as nib

    pred = write_masks(tmp_path / "pred", {"p1": cube()})
    affine = np.diag([1.0 + 1e-6, 1.0, 1.0 - 1e-6, 1.0])
    affine[:3, 3] = [2e-4, 0.0, -2e-4]
    nib.save(nib.Nifti1Image(cube(), affine), pred / "p2.nii.gz")
    report = score("segmentation", ref_dir, pred, options=ScoreOptions(bootstrap=0))
    assert report.meta["n_cases"] == 2


def test_label_not_in_reference(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube(), "p2": cube(label=3)})
    assert "case p2: label 3 does not occur in the reference (labels: 0, 1)" in seg_error(
        tmp_path, pred, ref_dir
    )


def test_label_beyond_declared_labels(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube(), "p2": cube(label=4)})
    msg = seg_error(tmp_path, pred, ref_dir, ScoreOptions(labels=[1, 2]))
    assert "case p2: label 4 is not a label of this challenge (labels: 0, 1, 2)" in msg


def test_non_integer_and_negative_labels(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube()})
    write_nifti(pred / "p2.nii.gz", cube().astype(np.float32) * 0.5)
    assert "case p2: cannot read the mask: mask holds non-integer values" in seg_error(
        tmp_path, pred, ref_dir
    )
    write_nifti(pred / "p2.nii.gz", cube().astype(np.int16) * -1)
    assert "negative label -1" in seg_error(tmp_path, pred, ref_dir)


def test_truncated_and_garbage_files(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube(), "p2": cube()})
    data = (pred / "p2.nii.gz").read_bytes()
    (pred / "p2.nii.gz").write_bytes(data[: len(data) // 2])
    assert "p2.nii.gz: case p2: cannot read the mask: truncated gzip data" in seg_error(
        tmp_path, pred, ref_dir
    )
    raw = gzip.decompress(data)
    (pred / "p2.nii.gz").write_bytes(gzip.compress(raw[:-100]))
    assert "truncated voxel data" in seg_error(tmp_path, pred, ref_dir)
    (pred / "p2.nii.gz").unlink()
    (pred / "p2.nii").write_bytes(b"hello" * 100)
    assert "not a NIfTI file" in seg_error(tmp_path, pred, ref_dir)
    (pred / "p2.nii").unlink()
    (pred / "p2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    assert "unreadable PNG" in seg_error(tmp_path, pred, ref_dir)


def test_unsupported_file_type(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube(), "p2": cube()})
    (pred / "notes.mha").write_text("x")
    assert "notes.mha: unsupported file type (expected one of .nii.gz" in seg_error(
        tmp_path, pred, ref_dir
    )


def test_symlink_in_a_folder_is_refused(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube()})
    (pred / "p2.nii.gz").symlink_to(ref_dir / "p2.nii.gz")
    assert "p2.nii.gz: symbolic links are not allowed" in seg_error(tmp_path, pred, ref_dir)


def test_gzip_bomb_is_refused(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube()})
    (pred / "p2.nii.gz").write_bytes(gzip.compress(b"\0" * 30_000_000, compresslevel=9))
    assert (pred / "p2.nii.gz").stat().st_size < 100_000
    limits = ZipLimits(max_member_bytes=10_000_000)
    msg = seg_error(tmp_path, pred, ref_dir, ScoreOptions(limits=limits))
    # The header is read first (540 bytes inflated): zeros are no NIfTI header, nothing more
    # is inflated.
    assert "p2.nii.gz: case p2: cannot read the mask: not a NIfTI file" in msg


def make_zip(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


def nii_bytes(tmp_path: Path, arr: np.ndarray) -> bytes:
    p = write_nifti(tmp_path / "tmp_mask.nii.gz", arr)
    data = p.read_bytes()
    p.unlink()
    return data


@pytest.mark.parametrize(
    "name,expected",
    [
        ("../p2.nii.gz", "pred.zip:../p2.nii.gz: '..' in the path"),
        ("/abs/p2.nii.gz", "pred.zip:/abs/p2.nii.gz: absolute path"),
        ("sub\\p2.nii.gz", "backslash in the path"),
        ("C:/p2.nii.gz", "absolute path"),
    ],
)
def test_unsafe_zip_paths(tmp_path, ref_dir, name, expected):
    zp = make_zip(tmp_path / "pred.zip", {"p1.nii.gz": nii_bytes(tmp_path, cube()), name: b"x"})
    assert expected in seg_error(tmp_path, zp, ref_dir)


def test_zip_symlink_is_refused(tmp_path, ref_dir):
    zp = make_zip(tmp_path / "pred.zip", {"p1.nii.gz": b"x"}, symlink="p2.nii.gz")
    assert "pred.zip:p2.nii.gz: symbolic links are not allowed" in seg_error(tmp_path, zp, ref_dir)


def test_zip_bomb_is_refused(tmp_path, ref_dir):
    zp = make_zip(tmp_path / "pred.zip", {"p1.nii.gz": b"\0" * 5_000_000, "p2.nii.gz": b"x"})
    assert zp.stat().st_size < 20_000  # a tiny archive...
    limits = ZipLimits(max_member_bytes=1_000_000, max_total_bytes=1_500_000)
    msg = seg_error(tmp_path, zp, ref_dir, ScoreOptions(limits=limits))
    assert "pred.zip:p1.nii.gz: uncompressed size 5000000 bytes is over the limit 1000000" in msg
    limits = ZipLimits(max_member_bytes=10_000_000, max_total_bytes=1_500_000)
    msg = seg_error(tmp_path, zp, ref_dir, ScoreOptions(limits=limits))
    assert "archive uncompressed size is over the limit 1500000 bytes" in msg


def test_not_a_zip(tmp_path, ref_dir):
    (tmp_path / "pred.zip").write_bytes(b"PK\x03\x04 not really")
    assert "pred.zip: not a readable zip archive" in seg_error(
        tmp_path, tmp_path / "pred.zip", ref_dir
    )


def test_zip_of_masks_in_a_subfolder_is_fine(tmp_path, ref_dir):
    buf = io.BytesIO()
    del buf
    zp = make_zip(
        tmp_path / "pred.zip",
        {
            "preds/p1.nii.gz": nii_bytes(tmp_path, cube()),
            "preds/p2.nii.gz": nii_bytes(tmp_path, cube(lo=3)),
            "__MACOSX/preds/._p1.nii.gz": b"junk",
            "preds/.DS_Store": b"junk",
        },
    )
    report = score("segmentation", ref_dir, zp, options=ScoreOptions(bootstrap=0))
    assert report.aggregates["dice"] == 1.0


def test_zero_spacing_in_a_header_is_refused(tmp_path, ref_dir, write_masks):
    pred = write_masks(tmp_path / "pred", {"p1": cube()})
    np.savez(pred / "p2.npz", mask=cube(), spacing=np.array([1.0, 0.0, 1.0]))
    assert "case p2: cannot read the mask: invalid voxel spacing (1.0, 0.0, 1.0)" in seg_error(
        tmp_path, pred, ref_dir
    )


def test_probabilities_read_exactly_as_python_floats_whatever_their_form():
    """The CSV parser reads valid numbers straight into float64; each must be the value
    Python's float() gives the same text (every digit count, exponents, blanks before). A file
    with one value that is not a finite number is read again as text, for the precise error."""
    import random

    from evaluator.readers.tables import read_predictions_csv

    rng = random.Random(5)
    texts = []
    for _ in range(20_000):
        v = rng.random()
        form = rng.randrange(6)
        texts.append(
            [
                repr(v),
                f"{v:.{rng.randint(1, 25)}f}",
                f"{v:.{rng.randint(1, 20)}e}",
                f"{v:.17g}",
                f" {v:.9f}",
                rng.choice(
                    ["0", "1", ".5", "1.", "0.1", "4.9e-324", "1e-300", "0.30000000000000004"]
                ),
            ][form]
        )
    body = "case_id,score\n" + "".join(f"c{i},{t}\n" for i, t in enumerate(texts))
    expected = [float(t) for t in texts]
    got = read_predictions_csv(body.encode(), "p.csv", classes=[0, 1]).probs[:, 1]
    assert got.tolist() == expected
    with pytest.raises(InvalidSubmission, match="case c20000: column 'score' is not a number"):
        read_predictions_csv((body + "c20000,high\n").encode(), "p.csv", classes=[0, 1])
    nan_body = body + "c20000,nan\n"
    with pytest.raises(InvalidSubmission, match="column 'score' is NaN"):
        read_predictions_csv(nan_body.encode(), "p.csv", classes=[0, 1])


def test_a_file_swapped_after_listing_is_read_safely(tmp_path):
    # the listing refuses symbolic links and large files; what is read later is checked again,
    # so a link, a FIFO or a grown file put in a listed file's place is refused (never followed,
    # never waited on, never read whole), with the file's name and no server path
    from evaluator.readers.sources import list_case_files

    folder = tmp_path / "pred"
    folder.mkdir()
    for name in ("a", "b", "c", "d"):
        (folder / f"{name}.npy").write_bytes(b"x" * 100)
    secret = tmp_path / "secret.npy"
    secret.write_bytes(b"hidden reference bytes")
    limits = ZipLimits(max_member_bytes=1000)
    with list_case_files(folder, role="prediction", limits=limits) as listed:
        assert listed.files["a"].read() == b"x" * 100
        (folder / "b.npy").unlink()
        (folder / "b.npy").symlink_to(secret)
        (folder / "c.npy").unlink()
        os.mkfifo(folder / "c.npy")
        (folder / "d.npy").write_bytes(b"x" * 1001)
        expected = {
            "b": "b.npy: symbolic links are not allowed",
            "c": "c.npy: not a regular file",
            "d": "d.npy: file size 1001 bytes is over the limit 1000",
        }
        for case, message in expected.items():
            with pytest.raises(InvalidSubmission) as info:
                listed.files[case].read()
            assert str(info.value) == message
            assert str(tmp_path) not in str(info.value)


def test_a_folder_is_listed_recursively_in_path_order(tmp_path):
    # cases in subfolders count, hidden files and __MACOSX folders do not, the order is that
    # of the path components (as sorted(rglob) gives it: "a/..." before "a-b/...", unlike the
    # plain strings), and a linked folder is refused, not followed into
    from evaluator.readers.sources import list_case_files

    root = tmp_path / "pred"
    for rel in ("b.npy", "a/z.npy", "a-b/c.npy", "a/b/y.npy", ".hidden.npy", "__MACOSX/q.npy"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    with list_case_files(root, role="prediction") as listed:
        assert [f.display for f in listed.files.values()] == [
            "a/b/y.npy",
            "a/z.npy",
            "a-b/c.npy",
            "b.npy",
        ]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.npy").write_bytes(b"hidden")
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(InvalidSubmission) as info:
        list_case_files(root, role="prediction")
    assert str(info.value) == "link: symbolic links are not allowed"


def test_a_file_that_grows_while_it_is_read_is_read_whole_or_refused(tmp_path, monkeypatch):
    # fstat saw 10 bytes; by the time it is read the file holds more: all of it is read when it
    # is within the limit, and it is refused (never read whole) when it is not
    from evaluator.readers import sources

    real_fstat = os.fstat

    class Shrunk:
        def __init__(self, st):
            self.st_mode, self.st_size = st.st_mode, 10

    monkeypatch.setattr(sources.os, "fstat", lambda fd: Shrunk(real_fstat(fd)))
    folder = tmp_path / "pred"
    folder.mkdir()
    (folder / "a.npy").write_bytes(bytes(range(200)) * 20)  # 4,000 bytes
    (folder / "b.npy").write_bytes(b"x" * 5000)
    limits = ZipLimits(max_member_bytes=4500)
    with sources.list_case_files(folder, role="prediction", limits=limits) as listed:
        assert listed.files["a"].read() == bytes(range(200)) * 20
        with pytest.raises(InvalidSubmission) as info:
            listed.files["b"].read()
    assert str(info.value) == "b.npy: file size is over the limit 4500 bytes"
