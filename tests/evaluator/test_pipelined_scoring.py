"""Issue 15: the inflater (ISA-L or zlib) and the pipelined scoring loop change no value and no
error: both inflaters give the same bytes and honour the same size limits, the evaluator works
without python-isal, and scoring with reads running ahead gives exactly the per-case values of a
plain sequential loop, with the same one-line error for a bad file in the middle of a run."""

from __future__ import annotations

import gzip
import os
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest

import evaluator.scoring as scoring
from evaluator import InvalidReference, InvalidSubmission, ScoreOptions, score
from evaluator.readers import masks
from evaluator.readers.isolated import DecodeLimits
from evaluator.readers.masks import MaskDecodeError, decode_mask, gunzip
from evaluator.synthetic import mask_pair, write_nifti

SPACING = (0.8, 0.8, 2.0)


@pytest.fixture(params=["zlib", "isal"])
def inflater(request, monkeypatch):
    """Run a test once with each inflater (the ISA-L one only where python-isal is installed)."""
    if request.param == "isal":
        isal_zlib = pytest.importorskip("isal.isal_zlib")
        monkeypatch.setattr(masks, "_INFLATER", isal_zlib)
    else:
        monkeypatch.setattr(masks, "_INFLATER", zlib)
    return request.param


def _nifti_gz(tmp_path: Path, data: np.ndarray, name: str = "m.nii.gz") -> bytes:
    return write_nifti(tmp_path / name, data, SPACING).read_bytes()


# ------------------------------------------------------------------------------ inflaters


def test_isal_and_zlib_give_identical_bytes_and_masks(tmp_path):
    isal_zlib = pytest.importorskip("isal.isal_zlib")
    ref, _pred = mask_pair((40, 36, 20), seed=3)
    raw = _nifti_gz(tmp_path, ref)
    size = int.from_bytes(raw[-4:], "little")
    assert isal_zlib.decompressobj(wbits=31).decompress(raw, size) == zlib.decompress(raw, 31)
    decoded = {}
    for name, module in (("zlib", zlib), ("isal", isal_zlib)):
        masks._INFLATER = module
        try:
            decoded[name] = decode_mask(raw, ".nii.gz")
            assert gunzip(raw) == zlib.decompress(raw, 31)
            # multi-member streams and trailing garbage are read the same way
            assert gunzip(raw + raw + b"junk") == zlib.decompress(raw, 31) * 2
        finally:
            masks._INFLATER, _ = masks._load_inflater()
    assert decoded["zlib"].data.tobytes() == decoded["isal"].data.tobytes()
    assert np.array_equal(decoded["isal"].data, ref)
    assert decoded["zlib"].grid.spacing == decoded["isal"].grid.spacing


def test_max_length_is_exact_with_either_inflater(inflater, tmp_path):
    """The size limits rely on max_length never being exceeded (no allocation past it)."""
    raw = gzip.compress(b"\0" * 1_000_000)
    for limit in (1, 1000, 999_999):
        d = masks._decompressobj()
        out = d.decompress(raw, limit)
        assert len(out) == limit
        assert d.unconsumed_tail and not d.eof
    with pytest.raises(MaskDecodeError, match="over the limit 1000 bytes"):
        gunzip(raw, max_bytes=1000)
    assert len(gunzip(raw, max_bytes=1_000_000)) == 1_000_000
    with pytest.raises(MaskDecodeError, match="truncated voxel data"):
        masks._inflate_exact(raw, 2_000_000, 4_000_000)
    assert len(masks._inflate_exact(raw, 123, 4_000_000)) == 123


def test_corrupt_and_truncated_streams_with_either_inflater(inflater, tmp_path):
    raw = _nifti_gz(tmp_path, np.ones((30, 30, 10), dtype=np.uint8))
    with pytest.raises(MaskDecodeError, match="truncated gzip data"):
        decode_mask(raw[: len(raw) // 2], ".nii.gz")
    bad = bytearray(raw)
    bad[30:60] = b"\xff" * 30  # garbage inside the deflate stream
    with pytest.raises(MaskDecodeError, match=r"corrupt gzip data|truncated"):
        decode_mask(bytes(bad), ".nii.gz")
    with pytest.raises(MaskDecodeError, match="not gzip data"):
        decode_mask(b"\0" * 100, ".nii.gz")


def test_a_wrong_checksum_is_refused_with_either_inflater(inflater):
    raw = gzip.compress(b"\x01" * 5000, mtime=0)
    bad = raw[:-8] + bytes([raw[-8] ^ 1]) + raw[-7:]
    with pytest.raises(MaskDecodeError, match="corrupt gzip data"):
        gunzip(bad)
    with pytest.raises(MaskDecodeError, match="corrupt gzip data"):
        masks._inflate_exact(bad, 5000, 10_000)


def test_nifti_bomb_is_refused_before_inflating_with_either_inflater(inflater, tmp_path):
    """A header declaring a huge shape is refused from the 540 header bytes alone."""
    raw = bytearray(gzip.decompress(_nifti_gz(tmp_path, np.ones((4, 4, 4), dtype=np.uint8))))
    struct.pack_into("<8h", raw, 40, 3, 30000, 30000, 30000, 1, 1, 1, 1)
    with pytest.raises(MaskDecodeError, match="over the limit"):
        decode_mask(gzip.compress(bytes(raw)), ".nii.gz", max_voxel_bytes=1 << 30)


def test_fallback_to_zlib_without_isal(monkeypatch):
    monkeypatch.setitem(sys.modules, "isal", None)  # makes `import isal...` raise ImportError
    monkeypatch.setitem(sys.modules, "isal.isal_zlib", None)
    module, name = masks._load_inflater()
    assert module is zlib and name == "zlib"


def test_decoding_works_on_the_zlib_fallback(monkeypatch, tmp_path):
    monkeypatch.setattr(masks, "_INFLATER", zlib)
    ref, _pred = mask_pair((20, 18, 9), seed=5)
    assert np.array_equal(decode_mask(_nifti_gz(tmp_path, ref), ".nii.gz").data, ref)


# ------------------------------------------------------------------------ pipelined scoring


@pytest.fixture
def submission(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    for i in range(7):
        ref, pred = mask_pair((40, 36, 16), seed=100 + i, size=0.25)
        write_nifti(ref_dir / f"c{i}.nii.gz", ref, SPACING)
        write_nifti(pred_dir / f"c{i}.nii.gz", pred, SPACING)
    return ref_dir, pred_dir


def _sequential(ids, load, compute, workers):
    return [compute(i, load(i)) for i in ids]


#: decoding predictions in the locked-down child, as the platform does: it is asked for cases
#: ahead of need and its answers are taken by whichever thread asked
ISOLATED = DecodeLimits(memory_bytes=512 << 20, cpu_seconds=20, wall_seconds=20.0)


@pytest.mark.parametrize("isolation", [None, ISOLATED], ids=["in-process", "isolated"])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_pipelined_scoring_equals_sequential_scoring(submission, monkeypatch, workers, isolation):
    ref_dir, pred_dir = submission
    opts = ScoreOptions(workers=workers, bootstrap=0, isolation=isolation)
    piped = score("segmentation", ref_dir, pred_dir, options=opts)
    monkeypatch.setattr(scoring, "_run_pipelined", _sequential)
    plain = score("segmentation", ref_dir, pred_dir, options=opts)
    assert list(piped.cases) == list(plain.cases)
    assert piped.cases == plain.cases  # exactly equal, not approximately
    assert piped.aggregates == plain.aggregates


@pytest.mark.parametrize("isolation", [None, ISOLATED], ids=["in-process", "isolated"])
@pytest.mark.parametrize("workers", [1, 2])
def test_bad_file_in_the_middle_of_a_pipelined_run(submission, workers, isolation):
    ref_dir, pred_dir = submission
    data = (pred_dir / "c3.nii.gz").read_bytes()
    (pred_dir / "c3.nii.gz").write_bytes(data[: len(data) // 2])
    opts = ScoreOptions(workers=workers, isolation=isolation)
    with pytest.raises(InvalidSubmission) as info:
        score("segmentation", ref_dir, pred_dir, options=opts)
    assert str(info.value) == "c3.nii.gz: case c3: cannot read the mask: truncated gzip data"


@pytest.mark.parametrize("isolation", [None, ISOLATED], ids=["in-process", "isolated"])
@pytest.mark.parametrize("workers", [1, 2])
def test_an_earlier_bad_prediction_beats_a_later_unreadable_reference(
    submission, workers, isolation
):
    # with a decoding child, later references are read ahead for their headers: their own
    # errors must still come in case order, after an earlier case's
    ref_dir, pred_dir = submission
    data = (pred_dir / "c2.nii.gz").read_bytes()
    (pred_dir / "c2.nii.gz").write_bytes(data[: len(data) // 2])
    (ref_dir / "c4.nii.gz").unlink()
    os.mkfifo(ref_dir / "c4.nii.gz")
    opts = ScoreOptions(workers=workers, isolation=isolation)
    with pytest.raises(InvalidSubmission) as info:
        score("segmentation", ref_dir, pred_dir, options=opts)
    assert str(info.value) == "c2.nii.gz: case c2: cannot read the mask: truncated gzip data"
    (pred_dir / "c2.nii.gz").write_bytes(data)
    with pytest.raises(InvalidReference) as ref_info:
        score("segmentation", ref_dir, pred_dir, options=opts)
    assert str(ref_info.value) == "c4.nii.gz: not a regular file"


@pytest.mark.parametrize("isolation", [None, ISOLATED], ids=["in-process", "isolated"])
@pytest.mark.parametrize("workers", [1, 2])
def test_bomb_in_the_middle_of_a_pipelined_run(submission, workers, isolation):
    ref_dir, pred_dir = submission
    raw = bytearray(gzip.decompress((pred_dir / "c4.nii.gz").read_bytes()))
    struct.pack_into("<8h", raw, 40, 3, 30000, 30000, 30000, 1, 1, 1, 1)
    (pred_dir / "c4.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    opts = ScoreOptions(workers=workers, isolation=isolation)
    with pytest.raises(InvalidSubmission) as info:
        score("segmentation", ref_dir, pred_dir, options=opts)
    message = str(info.value)
    assert message.startswith("c4.nii.gz: case c4: ")
    assert "differs from the reference shape" in message


@pytest.mark.parametrize("workers", [1, 2])
def test_first_failing_case_wins_as_in_a_sequential_loop(workers):
    """A scoring error of an earlier case beats a reading error of a later one, whatever the
    threads' timing."""
    release = threading.Event()

    def load(cid: str) -> str:
        if cid == "c2":
            release.set()
            raise ValueError("read c2")
        return cid

    def compute(cid: str, loaded: str) -> str:
        if cid == "c1":
            release.wait(5)  # fail only once the later read has failed
            raise ValueError("score c1")
        return loaded

    with pytest.raises(ValueError, match="score c1"):
        scoring._run_pipelined(["c0", "c1", "c2", "c3"], load, compute, workers)
    assert scoring._run_pipelined(["a", "b", "c"], str.upper, lambda c, x: x + c, workers) == [
        "Aa",
        "Bb",
        "Cc",
    ]
