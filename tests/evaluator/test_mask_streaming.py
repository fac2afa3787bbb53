"""One-byte NIfTI masks are inflated step by step into reused memory, writing only the rows
that hold a voxel: the voxels, the summary and every error must be exactly those of inflating
the whole file in one call, whatever the steps, the gzip members and the masks decoded before.
"""

from __future__ import annotations

import gc
import gzip
import itertools
import zlib

import nibabel as nib
import numpy as np
import pytest

from evaluator.metrics.surface import summarize
from evaluator.readers import masks
from evaluator.readers.masks import MaskDecodeError, decode_mask


def nifti_bytes(data: np.ndarray, *, compress: bool = True) -> bytes:
    img = nib.Nifti1Image(np.asarray(data), np.diag([0.8, 0.9, 2.0, 1.0]))
    raw = img.to_bytes()
    return gzip.compress(raw) if compress else raw


def blobs(shape: tuple[int, ...], seed: int, p: float = 0.02, top: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint8)
    mask = rng.random(shape) < p
    out[mask] = rng.integers(1, top + 1, int(mask.sum()))
    return out


def expected_summary(data: np.ndarray):
    """The summary of the same voxels read from an ordinary (heap) array."""
    return summarize(np.asfortranarray(data.copy()))


@pytest.fixture(params=["isal", "zlib"])
def inflater(request, monkeypatch):
    """Stream with ISA-L's decompressor, then with zlib's (the fallback)."""
    if request.param == "zlib":
        monkeypatch.setattr(masks, "_INFLATER", zlib)
    elif masks.DECOMPRESSOR != "isal":
        pytest.skip("python-isal is not installed")
    return request.param


@pytest.mark.parametrize("step", [1 << 20, 3 * 4096, 24])
@pytest.mark.parametrize("shape", [(40, 30, 20), (13, 7, 5), (64, 48)])
def test_streamed_voxels_and_summary_equal_the_file(monkeypatch, inflater, shape, step):
    # the summary comes from what was noted while streaming (the mask is not read again): it
    # must be the summary of reading the voxels, spans of every nonzero row included
    monkeypatch.setattr(masks, "STREAM_BYTES", step)
    ends = np.zeros(shape, np.uint8)
    ends[0] = ends[-1] = 1  # each row's first and last voxel only
    ends[(slice(None),) * (len(shape) - 1) + (0,)] = 3
    cases = [blobs(shape, seed, top=top) for seed, top in ((0, 1), (1, 1), (2, 7))]
    cases += [ends, np.ones(shape, np.uint8), np.zeros(shape, np.uint8)]
    for data in cases:
        mask = decode_mask(nifti_bytes(data), ".nii.gz")
        assert mask.data.shape == shape and mask.data.dtype == np.uint8
        assert np.array_equal(mask.data, data)
        assert mask.max == int(data.max())
        got, want = mask.summary, expected_summary(data)
        assert got is not None and want is not None
        assert (got.count, got.max, got.box, got.transposed) == (
            want.count,
            want.max,
            want.box,
            want.transposed,
        )
        assert np.array_equal(got.rows, want.rows)
        nonzero = want.rows != 0
        assert np.array_equal(got.spans[nonzero], want.spans[nonzero])


def test_a_reused_buffer_holds_nothing_of_the_mask_before(monkeypatch):
    """Memory goes back to the pool when a mask is garbage collected and is handed to the next
    mask of that size: full masks, then sparse ones, then other row lengths of the same size,
    each decoded exactly."""
    monkeypatch.setattr(masks, "_POOL", masks._VoxelPool(masks.POOL_BYTES))
    shape = (32, 16, 8)
    sequence = [
        np.ones(shape, np.uint8),
        blobs(shape, 3),
        np.zeros(shape, np.uint8),
        blobs(shape, 4, p=0.3, top=9),
        blobs((64, 8, 8), 5),  # the same byte size in rows of another length
        blobs((16, 32, 8), 6, p=0.5),
        blobs(shape, 7),
    ]
    reused = 0
    with masks.reused_voxel_memory():
        for data in sequence:
            free_before = len(masks._POOL._free)
            mask = decode_mask(nifti_bytes(data), ".nii.gz")
            reused += len(masks._POOL._free) < free_before
            assert np.array_equal(mask.data, data)
            assert mask.summary is not None and mask.summary.count == np.count_nonzero(data)
            del mask
            gc.collect()
        assert masks._POOL._free  # a buffer waits for the next mask
    assert reused >= len(sequence) - 2  # the pool was used, not only fresh memory
    assert not masks._POOL._free  # nothing is held once the block ends
    decode_mask(nifti_bytes(sequence[1]), ".nii.gz")
    gc.collect()
    assert not masks._POOL._free  # nor by a decode outside any block


def test_a_mask_still_in_use_keeps_its_memory():
    first = blobs((20, 20, 10), 8, p=0.4)
    with masks.reused_voxel_memory():
        kept = decode_mask(nifti_bytes(first), ".nii.gz")
        view = kept.data[2:5]  # a view keeps the memory too
        del kept
        gc.collect()
        for seed in range(4):
            decode_mask(nifti_bytes(blobs((20, 20, 10), 9 + seed, p=0.6)), ".nii.gz")
            gc.collect()
        assert np.array_equal(view, first[2:5])


def test_gzip_members_that_end_inside_a_step(monkeypatch, inflater):
    """A file of several gzip members, cut at odd places, reads as the whole."""
    monkeypatch.setattr(masks, "STREAM_BYTES", 4000)
    data = blobs((30, 20, 10), 10, p=0.1)
    raw = nifti_bytes(data, compress=False)
    # the header stays in the first member (the header is read from the first member alone)
    cuts = [0, 600, 2500, 4133, 4500, 4501, len(raw)]
    multi = b"".join(gzip.compress(raw[a:b]) for a, b in itertools.pairwise(cuts))
    mask = decode_mask(multi, ".nii.gz")
    assert np.array_equal(mask.data, data)
    assert mask.summary is not None and mask.summary.count == np.count_nonzero(data)


def test_truncated_and_corrupt_streams_give_the_same_errors(monkeypatch, inflater):
    monkeypatch.setattr(masks, "STREAM_BYTES", 512)
    data = blobs((30, 20, 10), 11, p=0.3, top=3)
    whole = nifti_bytes(data)
    with pytest.raises(MaskDecodeError, match="truncated gzip data"):
        decode_mask(whole[: len(whole) // 2], ".nii.gz")
    raw = nifti_bytes(data, compress=False)
    short = gzip.compress(raw[: len(raw) - 1000])  # a whole gzip stream, too few voxels
    with pytest.raises(MaskDecodeError, match=r"truncated voxel data \(5000 of 6000 bytes"):
        decode_mask(short, ".nii.gz")
    with pytest.raises(MaskDecodeError, match="not gzip data"):
        decode_mask(gzip.compress(raw[:400]) + b"garbage" * 100, ".nii.gz")


def test_rescaled_voxels_get_no_stale_rows():
    """A header that rescales the voxels (scl_slope) makes the streamed rows meaningless: the
    summary is then taken from the rescaled labels."""
    data = blobs((20, 10, 6), 12, p=0.2)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(2.0, 0.0)
    mask = decode_mask(gzip.compress(img.to_bytes()), ".nii.gz")
    assert np.array_equal(mask.data, data * 2)
    assert mask.max == 2


@pytest.mark.parametrize("ext", [".nii.gz", ".npy"])
def test_the_locked_down_child_hands_over_the_same_voxels(tmp_path, ext):
    """The decoding child sends a Fortran-ordered mask as its transpose's bytes; what the
    parent scores is the very mask decoded in-process, axis for axis (asymmetric masks, so a
    mixed-up axis order would change every distance)."""
    from evaluator import ScoreOptions, score
    from evaluator.readers.isolated import DecodeLimits
    from evaluator.synthetic import mask_pair, write_nifti

    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    for i in range(3):
        ref, pred = mask_pair((37, 29, 13), seed=i, size=0.3)
        write_nifti(ref_dir / f"c{i}.nii.gz", ref.astype(np.uint8), (0.8, 0.9, 2.0))
        if ext == ".npy":
            np.save(pred_dir / f"c{i}.npy", pred.astype(np.uint8))
        else:
            write_nifti(pred_dir / f"c{i}.nii.gz", pred.astype(np.uint8), (0.8, 0.9, 2.0))
    iso = DecodeLimits(memory_bytes=512 << 20, cpu_seconds=20, wall_seconds=20.0)
    here = score("segmentation", ref_dir, pred_dir, options=ScoreOptions(bootstrap=0))
    there = score(
        "segmentation", ref_dir, pred_dir, options=ScoreOptions(bootstrap=0, isolation=iso)
    )
    assert there.meta["decoding"] != here.meta["decoding"]
    assert there.cases == here.cases
    assert here.cases["c0"]["hd95"] > 0


def test_a_file_of_many_tiny_gzip_members(monkeypatch, inflater):
    """One gzip member per few bytes: the pieces of a step are joined once, and the voxels are
    those of the file (the one-call reader of other types goes the same way)."""
    monkeypatch.setattr(masks, "STREAM_BYTES", 1000)
    data = blobs((20, 10, 6), 13, p=0.3, top=2)
    raw = nifti_bytes(data, compress=False)
    cuts = [0, 600, *range(603, len(raw), 7), len(raw)]
    multi = b"".join(gzip.compress(raw[a:b]) for a, b in itertools.pairwise(cuts))
    assert np.array_equal(decode_mask(multi, ".nii.gz").data, data)
    assert masks._inflate_exact(multi, len(raw), len(raw)) == raw
