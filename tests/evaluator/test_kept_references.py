"""A worker keeps the reference's decoded masks between submissions (compactly, within a
budget): every score must be exactly the one a fresh decoding gives, a changed file must never
be served from what was kept, and the budget must hold."""

from __future__ import annotations

import gc
import gzip
import hashlib
import os
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from evaluator import ScoreOptions, score
from evaluator.metrics import _compiled
from evaluator.readers import kept, masks
from evaluator.readers.masks import decode_mask, pack_mask, unpack_mask
from evaluator.synthetic import mask_pair, write_nifti

pytestmark = pytest.mark.skipif(_compiled.summary is None, reason="masks are kept only with Numba")

SPACING = (0.8, 0.9, 2.0)


@pytest.fixture(autouse=True)
def fresh_cache():
    kept.clear()
    kept.set_budget(kept.DEFAULT_BUDGET_BYTES)
    yield
    kept.clear()
    kept.set_budget(kept.DEFAULT_BUDGET_BYTES)


def labelled(shape, seed: int, labels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    ref, pred = mask_pair(shape, seed=seed, size=0.25)
    if labels > 1:  # a second structure, label 2, in the other half
        ref2, pred2 = mask_pair(shape, seed=seed + 7, size=0.15)
        ref = np.where(ref2 & ~ref, 2, ref.astype(np.uint8))
        pred = np.where(pred2 & ~pred, 2, pred.astype(np.uint8))
    return ref.astype(np.uint8), pred.astype(np.uint8)


def write_pairs(root: Path, cases: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[Path, Path]:
    ref_dir, pred_dir = root / "ref", root / "pred"
    ref_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    for case_id, (ref, pred) in cases.items():
        write_nifti(ref_dir / f"{case_id}.nii.gz", ref, SPACING)
        write_nifti(pred_dir / f"{case_id}.nii.gz", pred, SPACING)
    return ref_dir, pred_dir


def scored(ref: Path, pred: Path, workers: int = 2) -> dict:
    """The report without what differs from run to run (times, the date)."""
    report = score("segmentation", ref, pred, options=ScoreOptions(workers=workers, bootstrap=200))
    out = report.to_json()
    out["meta"] = {k: v for k, v in out["meta"].items() if k not in ("scored_at", "timings")}
    return out


@pytest.fixture
def two_references(tmp_path):
    """Two references of the same voxel count (their memory goes round the same pool): binary
    and two-label cases, one empty reference mask, one full one."""
    shape = (40, 36, 24)
    a = {f"a{i}": labelled(shape, seed=i, labels=1 + i % 2) for i in range(5)}
    a["a_empty"] = (np.zeros(shape, np.uint8), labelled(shape, seed=9)[1])
    a["a_full"] = (np.ones(shape, np.uint8), labelled(shape, seed=10)[1])
    b = {f"b{i}": labelled(shape, seed=50 + i) for i in range(4)}
    return write_pairs(tmp_path / "a", a), write_pairs(tmp_path / "b", b)


def test_kept_reference_masks_score_exactly_as_decoded_ones(two_references):
    (ref_a, pred_a), (ref_b, pred_b) = two_references
    first_a, first_b = scored(ref_a, pred_a), scored(ref_b, pred_b)
    assert kept.kept_bytes() == 0  # seen once: only noted
    # the second submission keeps them, later ones unpack them, interleaved so that each
    # reference's masks land in memory the other one's just left
    for _ in range(3):
        assert scored(ref_a, pred_a) == first_a
        assert scored(ref_b, pred_b, workers=1) == first_b
    assert len(kept._kept) == 7 + 4
    entries = list(kept._kept.values())
    # the rows: less than the voxels themselves (11 masks of 40 x 36 x 24 bytes)
    assert sum(e.packed.nbytes for e in entries) < 11 * 40 * 36 * 24
    # the surfaces of the binary, non-empty ones were kept with them, and counted
    with_surfaces = [e for e in entries if e.summary.memo is not None and e.summary.memo.nbytes]
    assert len(with_surfaces) == 3 + 1 + 4  # a0, a2, a4, a_full, b0-b3
    assert kept.kept_bytes() == sum(e.nbytes for e in entries) <= kept.budget()


def test_surfaces_are_kept_only_within_the_budget(two_references):
    """A budget that holds the masks but not their surfaces: the surfaces are computed each
    time, the scores do not change, and the count stays exact."""
    (ref_a, pred_a), _ = two_references
    first = scored(ref_a, pred_a)
    scored(ref_a, pred_a)
    entries = list(kept._kept.values())
    rows_only = sum(e.nbytes - e.summary.memo.nbytes for e in entries)
    kept.clear()
    kept.set_budget(rows_only + 1)
    for _ in range(4):
        assert scored(ref_a, pred_a) == first
    assert len(kept._kept) == 7
    assert kept.kept_bytes() == sum(e.nbytes for e in kept._kept.values()) <= rows_only + 1
    assert not any(e.summary.memo.nbytes for e in kept._kept.values())


def test_a_packed_mask_unpacks_to_the_same_voxels_over_a_dirty_buffer(monkeypatch):
    monkeypatch.setattr(masks, "_POOL", masks._VoxelPool(masks.POOL_BYTES))
    shape = (33, 20, 12)
    data = labelled(shape, seed=3, labels=2)[0]
    gz = gzip.compress(nib.Nifti1Image(data, np.diag([*SPACING, 1.0])).to_bytes())
    ones = gzip.compress(nib.Nifti1Image(np.ones(shape, np.uint8), np.eye(4)).to_bytes())
    with masks.reused_voxel_memory():
        mask = decode_mask(gz, ".nii.gz")
        packed = pack_mask(mask)
        assert packed is not None and packed.nbytes < data.size
        del mask
        # leave a full mask's memory in the pool: every row of it is dirty
        full = decode_mask(ones, ".nii.gz")
        del full
        gc.collect()
        got = unpack_mask(packed)
        assert np.array_equal(got.data, data)
        assert got.data.flags.f_contiguous
        fresh = decode_mask(gz, ".nii.gz")
        assert (got.min, got.max, got.grid.shape, got.grid.spacing) == (
            fresh.min,
            fresh.max,
            fresh.grid.shape,
            fresh.grid.spacing,
        )
        assert got.summary is not None and fresh.summary is not None
        assert (got.summary.count, got.summary.box) == (fresh.summary.count, fresh.summary.box)
        nonzero = fresh.summary.rows != 0
        assert np.array_equal(got.summary.rows, fresh.summary.rows)
        assert np.array_equal(got.summary.spans[nonzero], fresh.summary.spans[nonzero])


def kept_reference(root: Path, seed: int) -> tuple[np.ndarray, Path, Path, dict]:
    """One case scored twice, so that its reference mask is kept: the reference array, the
    two folders and the first report."""
    ref, pred = labelled((30, 30, 16), seed=seed)
    ref_dir, pred_dir = write_pairs(root, {"c": (ref, pred)})
    before = scored(ref_dir, pred_dir)
    scored(ref_dir, pred_dir)
    assert len(kept._kept) == 1
    return ref, ref_dir, pred_dir, before


def test_a_reference_file_replaced_in_place_is_never_served_stale(tmp_path):
    """Same name, same size, same modification time: the kept mask is known by its bytes."""
    ref, ref_dir, pred_dir, before = kept_reference(tmp_path, seed=1)
    path = ref_dir / "c.nii.gz"
    st = path.stat()
    shifted = np.roll(ref, 3, axis=0)
    write_nifti(path, shifted, SPACING)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = scored(ref_dir, pred_dir)
    assert after != before
    assert after["cases"] == scored(ref_dir, pred_dir)["cases"]
    kept.set_budget(0)  # nothing kept: what a fresh worker scores
    assert after["cases"] == scored(ref_dir, pred_dir)["cases"]


def test_the_budget_holds_and_the_least_recently_used_go_first(two_references):
    (ref_a, pred_a), (ref_b, pred_b) = two_references
    for _ in range(2):
        scored(ref_a, pred_a)
        scored(ref_b, pred_b)
    sizes = {k: v.nbytes for k, v in kept._kept.items()}
    b_keys = list(kept._kept)[-4:]  # b's were kept last
    kept.set_budget(sum(sizes[k] for k in b_keys))
    assert set(kept._kept) == set(b_keys)
    assert kept.kept_bytes() == sum(sizes[k] for k in b_keys) <= kept.budget()
    # a's come back (decoded twice more) and push b's out within the same budget
    scored(ref_a, pred_a)
    scored(ref_a, pred_a)
    assert kept.kept_bytes() <= kept.budget()
    assert not set(b_keys) <= set(kept._kept)
    kept.set_budget(0)
    assert kept.kept_bytes() == 0 and not kept._kept
    assert scored(ref_b, pred_b) == scored(ref_b, pred_b)
    assert not kept._kept


def test_only_reference_bytes_are_kept_wherever_they_come_from(tmp_path):
    """A prediction is never kept; a reference is known by its bytes, so the same file in a
    zip is the same kept mask."""
    shape = (24, 24, 12)
    ref, pred = labelled(shape, seed=4)
    ref_dir, pred_dir = write_pairs(tmp_path, {"c": (ref, pred)})
    zipped = tmp_path / "ref.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(ref_dir / "c.nii.gz", "c.nii.gz")
    for _ in range(3):
        scored(ref_dir, pred_dir)
        scored(zipped, pred_dir)
    assert len(kept._kept) == 1
    ref_digest = next(iter(kept._kept))[0]
    assert ref_digest == hashlib.sha256((ref_dir / "c.nii.gz").read_bytes()).digest()


def test_a_reference_read_from_a_folder_is_hashed_once(tmp_path, monkeypatch):
    """The kept masks are known by the sha256 the reader computed as it read the file (the one
    the report's digest uses too): kept hashes no bytes of its own, and the same file zipped
    (which the reader does not hash) meets the same kept mask."""
    from evaluator.readers import sources

    shape = (24, 24, 12)
    ref, pred = labelled(shape, seed=6)
    ref_dir, pred_dir = write_pairs(tmp_path, {"c": (ref, pred)})
    hashed: list[int] = []

    class Counting:
        @staticmethod
        def sha256(data: bytes):
            hashed.append(len(data))
            return hashlib.sha256(data)

    monkeypatch.setattr(kept, "hashlib", Counting)
    sources.forget_digests()
    for _ in range(3):
        scored(ref_dir, pred_dir)
    assert hashed == [] and len(kept._kept) == 1
    zipped = tmp_path / "ref.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.write(ref_dir / "c.nii.gz", "c.nii.gz")
    scored(zipped, pred_dir)
    assert len(hashed) == 1 and len(kept._kept) == 1


def test_a_read_digest_answers_only_for_the_bytes_just_read(tmp_path):
    from evaluator.readers.sources import digest_of, list_case_files

    (tmp_path / "a.npy").write_bytes(b"first file")
    (tmp_path / "b.npy").write_bytes(b"other file")
    files = list_case_files(tmp_path, role="reference").files
    data = files["a"].read()
    assert digest_of(b"first file") is None  # equal bytes, but not the ones read
    data = files["a"].read()
    assert digest_of(data) == hashlib.sha256(b"first file").hexdigest()
    assert digest_of(data) is None  # asked once
    data = files["a"].read()
    files["b"].read()
    assert digest_of(data) is None  # another file was read since


def test_a_reference_is_known_by_the_bytes_read_whatever_its_times_say(tmp_path, monkeypatch):
    """Within one tick of the file system's clock a rewrite at the same size leaves even the
    change time as it was; here every file's times look the same. The reader still hashes
    the bytes it read, so the kept mask of the old bytes is never served for the new ones."""
    from evaluator.readers import sources

    monkeypatch.setattr(sources, "_digest_key", lambda st: ("the same times",))
    ref, ref_dir, pred_dir, before = kept_reference(tmp_path, seed=2)
    write_nifti(ref_dir / "c.nii.gz", np.roll(ref, 3, axis=0), SPACING)
    after = scored(ref_dir, pred_dir)
    assert after["cases"] != before["cases"]
    kept.set_budget(0)  # nothing kept: what a fresh worker scores
    assert after["cases"] == scored(ref_dir, pred_dir)["cases"]
