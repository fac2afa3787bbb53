"""A mask decoded in the locked-down child comes back as its rows that hold a voxel (a tenth of
its bytes for an organ): the parent must rebuild exactly the mask decoded in-process, and must
refuse whatever a compromised child sends that does not fit the mask it asked for."""

from __future__ import annotations

import gzip
import io
import json
import socket
from multiprocessing.connection import Connection

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from evaluator import InvalidSubmission
from evaluator.readers import masks
from evaluator.readers.isolated import DecodeLimits, Decoder
from evaluator.readers.masks import decode_mask


def nifti(data: np.ndarray) -> bytes:
    return gzip.compress(nib.Nifti1Image(data, np.diag([0.8, 0.9, 2.0, 1.0])).to_bytes())


def cases() -> dict[str, tuple[bytes, str, np.ndarray]]:
    rng = np.random.default_rng(7)
    organ = np.zeros((40, 24, 12), np.uint8)
    organ[10:30, 5:20, 3:9] = 1
    labels = (rng.random((16, 16, 8)) < 0.1).astype(np.uint8) * rng.integers(1, 5, (16, 16, 8))
    labels = labels.astype(np.uint8)
    wide = np.zeros((9, 7, 5), np.int16)  # not one byte: goes whole, as before
    wide[2:5, 1:4, 1:3] = 300
    png = io.BytesIO()
    flat = np.zeros((12, 20), np.uint8)
    flat[3:9, 4:15] = 1
    Image.fromarray(flat).save(png, format="PNG")
    npy = io.BytesIO()
    np.save(npy, organ[:, :, 5].copy())
    out = {
        "organ": (nifti(organ), ".nii.gz", organ),
        "labels": (nifti(labels), ".nii.gz", labels),
        "empty": (nifti(np.zeros((8, 8, 8), np.uint8)), ".nii.gz", np.zeros((8, 8, 8), np.uint8)),
        "full": (nifti(np.ones((8, 8, 8), np.uint8)), ".nii.gz", np.ones((8, 8, 8), np.uint8)),
        "wide": (nifti(wide), ".nii.gz", wide),
        "png": (png.getvalue(), ".png", flat),
        "npy": (npy.getvalue(), ".npy", organ[:, :, 5]),
    }
    return out


def test_the_child_sends_rows_and_the_parent_rebuilds_the_same_mask(tmp_path, monkeypatch):
    folder = tmp_path / "pred"
    folder.mkdir()
    given = cases()
    for name, (raw, ext, _data) in given.items():
        (folder / f"{name}{ext}").write_bytes(raw)
    packed = []
    original = Decoder._packed_rows

    def spy(self, h, shape, dtype):
        got = original(self, h, shape, dtype)
        packed.append(int(h["rows"]))
        return got

    monkeypatch.setattr(Decoder, "_packed_rows", spy)
    limits = DecodeLimits(memory_bytes=512 << 20, cpu_seconds=20, wall_seconds=20.0)
    with masks.reused_voxel_memory(), Decoder("segmentation", folder, "pred", limits) as dec:
        for name, (raw, ext, data) in given.items():
            here = decode_mask(raw, ext)
            there = dec.mask(name, expected_shape=data.shape)
            assert there.data.shape == data.shape and there.data.dtype == here.data.dtype
            assert np.array_equal(there.data, here.data), name
            assert (there.min, there.max) == (here.min, here.max)
            assert there.grid.shape == here.grid.shape
            if here.summary is None:
                assert there.summary is None
                continue
            a, b = there.summary, here.summary
            assert (a.count, a.max, a.box, a.transposed) == (b.count, b.max, b.box, b.transposed)
            assert np.array_equal(a.rows, b.rows)
            nonzero = b.rows != 0
            assert np.array_equal(a.spans[nonzero], b.spans[nonzero])
    # every one-byte mask came as rows (the empty one as none at all); the int16 one whole
    assert len(packed) == 6 and 0 in packed
    organ_rows = int((given["organ"][2] != 0).any(axis=0).sum())
    assert organ_rows in packed


class _FakeChild:
    """The trusted side of a Decoder talking to a test that plays a compromised child."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair()
        self.dec = Decoder.__new__(Decoder)
        self.dec._attach(Connection(mine.detach()), "pred", DecodeLimits(wall_seconds=5.0))
        self.dec.cases = {"c1": ("c1.nii.gz", ".nii.gz")}
        self.child = Connection(theirs.detach())

    def answer(self, header: dict, *payloads: bytes) -> None:
        self.child.send_bytes(json.dumps({"ok": True, **header}).encode())
        for p in payloads:
            self.child.send_bytes(p)


SHAPE = (8, 4, 3)  # F order: rows of 8 bytes, 12 of them


@pytest.mark.parametrize(
    "rows,which,row_bytes",
    [
        (2, [0, 12], 8),  # a row number past the mask
        (2, [-1, 3], 8),  # a negative row number
        (2, [5, 5], 8),  # the same row twice
        (2, [7, 3], 8),  # not increasing
        (2, [1, 2], 7),  # rows of the wrong length
        (13, list(range(13)), 8),  # more rows than the mask has
        (2, [1], 8),  # fewer numbers than announced
    ],
)
def test_a_compromised_childs_rows_are_refused(rows, which, row_bytes):
    fake = _FakeChild()
    header = {"dtype": "|u1", "shape": list(SHAPE), "order": "F", "rows": rows}
    numbers = np.asarray(which, dtype="<i8").tobytes()
    data = bytes(range(1, 1 + len(which) * row_bytes))
    fake.answer(header, numbers, data)
    with pytest.raises(InvalidSubmission, match="sent an invalid answer"):
        fake.dec.mask("c1", expected_shape=SHAPE)


def test_rows_announced_for_a_wider_type_are_refused():
    fake = _FakeChild()
    fake.answer({"dtype": "<i2", "shape": list(SHAPE), "order": "F", "rows": 1}, b"\0" * 8, b"")
    with pytest.raises(InvalidSubmission, match="sent an invalid answer"):
        fake.dec.mask("c1", expected_shape=SHAPE)


def test_a_well_formed_answer_from_the_fake_child_is_taken():
    # the same channel with a valid answer: the refusals above are about the rows, not the fake
    fake = _FakeChild()
    header = {"dtype": "|u1", "shape": list(SHAPE), "order": "F", "rows": 2}
    data = np.zeros((2, 8), np.uint8)
    data[0, 3] = data[1, 0] = 1
    fake.answer(header, np.asarray([2, 9], "<i8").tobytes(), data.tobytes())
    with masks.reused_voxel_memory():
        mask = fake.dec.mask("c1", expected_shape=SHAPE)
        expected = np.zeros(SHAPE, np.uint8, order="F")
        expected[3, 2, 0] = expected[0, 1, 2] = 1  # row 2 = (y 2, z 0), row 9 = (y 1, z 2)
        assert np.array_equal(mask.data, expected)
        assert mask.summary is not None and mask.summary.count == 2


def _scaled(data: np.ndarray) -> bytes:
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(2.0, 0.0)
    return gzip.compress(img.to_bytes())


def test_rows_decoded_straight_equal_the_packed_decoded_mask():
    """A child turns a gzipped one-byte NIfTI straight into the rows it sends (decode_rows):
    the same rows, numbers, shape and geometry as decoding the mask and packing it, for
    one-byte masks of every kind, and None for what it leaves to the full decoder."""
    rng = np.random.default_rng(3)
    given = {name: raw for name, (raw, ext, _d) in cases().items() if ext == ".nii.gz"}
    given.pop("wide")
    flat = np.zeros((24, 10), np.uint8)
    flat[4:9, 2:7] = 3
    given["2-D"] = nifti_2d = gzip.compress(nib.Nifti1Image(flat, np.eye(4)).to_bytes())
    bools = rng.random((10, 6, 4)) < 0.3
    given["bool"] = gzip.compress(
        nib.Nifti1Image(bools.astype(np.uint8), np.eye(4), dtype=np.uint8).to_bytes()
    )
    # two gzip members, cut inside the voxels
    whole = nib.Nifti1Image((rng.random((16, 8, 6)) < 0.2).astype(np.uint8), np.eye(4)).to_bytes()
    given["members"] = gzip.compress(whole[:700]) + gzip.compress(whole[700:])
    buffer = masks.RowsBuffer()
    for name, raw in given.items():
        got = masks.decode_rows(raw, ".nii.gz", buffer)
        want = masks.pack_mask(decode_mask(raw, ".nii.gz"))
        assert got is not None and want is not None, name
        assert (got.shape, got.order) == (want.shape, want.order), name
        assert np.array_equal(got.which, want.which), name
        assert np.array_equal(got.packed, want.packed), name
        assert got.grid.spacing == want.grid.spacing and got.grid.space == want.grid.space
        assert np.array_equal(got.grid.affine, want.grid.affine)
    assert nifti_2d in given.values()
    wide = cases()["wide"][0]
    plain = nib.Nifti1Image(flat, np.eye(4)).to_bytes()
    assert masks.decode_rows(wide, ".nii.gz", buffer) is None  # int16: decoded whole
    assert masks.decode_rows(_scaled(flat), ".nii.gz", buffer) is None  # rescaled values
    assert masks.decode_rows(plain, ".nii", buffer) is None
    assert masks.decode_rows(cases()["png"][0], ".png", buffer) is None


@pytest.mark.parametrize(
    "damage",
    ["truncated", "shape", "corrupt", "not gzip", "too large"],
)
def test_rows_decoded_straight_fail_as_the_full_decoder_does(damage):
    organ = cases()["organ"][0]
    expected = None
    limit = masks.DEFAULT_MAX_VOXEL_BYTES
    raw = organ
    if damage == "truncated":
        raw = organ[: len(organ) // 2]
    elif damage == "shape":
        expected = (40, 24, 13)
    elif damage == "corrupt":
        raw = organ[:12] + bytes(b ^ 0x5A for b in organ[12:60]) + organ[60:]
    elif damage == "not gzip":
        raw = b"\x00" * 400
    else:
        limit = 1000
    with pytest.raises(masks.MaskDecodeError) as full:
        decode_mask(raw, ".nii.gz", max_voxel_bytes=limit, expected_shape=expected)
    with pytest.raises(masks.MaskDecodeError) as straight:
        masks.decode_rows(
            raw, ".nii.gz", masks.RowsBuffer(), max_voxel_bytes=limit, expected_shape=expected
        )
    assert type(straight.value) is type(full.value)
    assert straight.value.problem() == full.value.problem()


def test_digests_are_the_same_when_the_child_reads_the_files(tmp_path):
    """With the decoding child the participant's files are hashed on a thread of their own
    while scoring goes on: the report's digests are those of in-process scoring."""
    from evaluator import ScoreOptions, score
    from evaluator.readers.sources import forget_digests
    from evaluator.synthetic import write_segmentation

    ref, pred = write_segmentation(tmp_path, n_cases=3, shape=(16, 16, 8), seed=8)
    (pred / "notes").mkdir()
    (pred / "notes" / ".keep").write_bytes(b"x")
    limits = DecodeLimits(memory_bytes=512 << 20, cpu_seconds=20, wall_seconds=20.0)
    reports = []
    for isolation in (None, limits):
        forget_digests()
        reports.append(
            score(
                "segmentation", ref, pred, options=ScoreOptions(bootstrap=20, isolation=isolation)
            )
        )
    here, there = (r.meta for r in reports)
    assert there["decoding"] != ["in-process"]
    assert (here["predictions_sha256"], here["reference_sha256"]) == (
        there["predictions_sha256"],
        there["reference_sha256"],
    )
    assert reports[0].aggregates == reports[1].aggregates


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("shape", [(24, 10, 6), (13, 7, 5), (16, 9), (40, 1, 1)])
def test_the_summary_made_from_the_rows_is_the_masks(order, shape):
    """The parent summarizes a mask from the rows the child sent, not from the rebuilt mask:
    count, largest value, box, row ORs and spans equal those of summarizing the mask, rows of
    zeros sent as if they held voxels included."""
    from evaluator.metrics.surface import summarize

    rng = np.random.default_rng(len(shape) * 7 + shape[0])
    for trial in range(4):
        data = (rng.random(shape) < 0.15).astype(np.uint8)
        if trial % 2:
            data *= rng.integers(1, 6, shape).astype(np.uint8)
        if trial == 3:
            data[:] = 0
        arr = np.asfortranarray(data) if order == "F" else np.ascontiguousarray(data)
        memory = arr.T if order == "F" else arr
        flat_rows = np.ascontiguousarray(memory).reshape(-1, memory.shape[-1])
        which = np.flatnonzero(flat_rows.any(axis=1))
        if flat_rows.shape[0] > which.size:  # a row of zeros sent as well
            extra = np.setdiff1d(np.arange(flat_rows.shape[0]), which)[:1]
            which = np.sort(np.concatenate([which, extra]))
        packed = flat_rows[which].copy()
        with masks.reused_voxel_memory():
            got, row_or, summary = masks.restore_rows(shape, order, which, packed)
            assert np.array_equal(got, data)
            want = summarize(np.array(data, order=order))
            if summary is None:  # a layout summarize reads the other way: it is asked then
                assert want is not None and want.transposed != (order == "F")
                continue
            assert want is not None
            assert (summary.count, summary.max, summary.box) == (want.count, want.max, want.box)
            assert (summary.transposed, summary.ndim) == (want.transposed, want.ndim)
            assert np.array_equal(summary.rows, want.rows)
            nonzero = want.rows != 0
            assert np.array_equal(summary.spans[nonzero], want.spans[nonzero])
            assert np.array_equal(row_or, want.rows.reshape(-1))


def test_rows_of_another_length_than_the_shape_says_are_refused():
    """restore_rows checks the rows' length against the shape itself, before the compiled
    pass (which indexes without bounds checks) sees them."""
    packed = np.ones((3, 6), np.uint8)  # rows of 6 for a C-ordered (4, 6, 8) mask: 8 expected
    with pytest.raises(ValueError), masks.reused_voxel_memory():
        masks.restore_rows((4, 6, 8), "C", np.array([0, 5, 31]), packed)
