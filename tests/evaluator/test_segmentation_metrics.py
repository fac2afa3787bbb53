"""Segmentation metrics: the docs/metrics.md table, hand-computed values, brute force, laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial.distance import cdist

from evaluator.metrics.segmentation import case_metrics, empty_label_metrics
from evaluator.metrics.surface import directed_distances, surface_mask


def metrics_of(ref, pred, spacing=None, **kw):
    ref = np.asarray(ref, dtype=np.uint8)
    pred = np.asarray(pred, dtype=np.uint8)
    spacing = spacing or (1.0,) * ref.ndim
    return case_metrics(ref, pred, spacing, **kw)[1]


def brute_force(ref, pred, spacing, tau=1.0):
    """All pairs of surface points; surfaces by scipy's erosion with the face-connected element."""
    structure = ndimage.generate_binary_structure(ref.ndim, 1)
    sr = ref & ~ndimage.binary_erosion(ref, structure, border_value=0)
    sp = pred & ~ndimage.binary_erosion(pred, structure, border_value=0)
    xr = np.argwhere(sr) * np.asarray(spacing)
    xp = np.argwhere(sp) * np.asarray(spacing)
    d = cdist(xp, xr)
    d_pr, d_rp = d.min(axis=1), d.min(axis=0)
    return {
        "hd95": max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)),
        "hd": max(d_pr.max(), d_rp.max()),
        "assd": (d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size),
        "nsd": ((d_pr <= tau).sum() + (d_rp <= tau).sum()) / (d_pr.size + d_rp.size),
    }


# --------------------------------------------------------------- the docs/metrics.md table


def test_both_empty_follows_the_table():
    z = np.zeros((5, 6, 7))
    m = metrics_of(z, z)
    assert m["dice"] == 1 and m["iou"] == 1
    assert math.isnan(m["sensitivity"])
    assert m["specificity"] == 1
    assert m["hd95"] == 0 and m["hd"] == 0 and m["assd"] == 0
    assert m["nsd"] == 1
    assert m.keys() == empty_label_metrics().keys()


def test_pred_empty_follows_the_table():
    ref = np.zeros((5, 6, 7))
    ref[1:3, 1:3, 1:3] = 1
    m = metrics_of(ref, np.zeros_like(ref))
    assert m["dice"] == 0 and m["iou"] == 0 and m["sensitivity"] == 0
    assert m["specificity"] == 1
    assert all(math.isnan(m[k]) for k in ("hd95", "hd", "assd"))
    assert m["nsd"] == 0


def test_ref_empty_follows_the_table():
    pred = np.zeros((5, 6, 7))
    pred[1:3, 1:3, 1:3] = 1
    m = metrics_of(np.zeros_like(pred), pred)
    assert m["dice"] == 0 and m["iou"] == 0
    assert math.isnan(m["sensitivity"])
    assert m["specificity"] == pytest.approx((210 - 8) / 210)
    assert m["specificity"] < 1
    assert all(math.isnan(m[k]) for k in ("hd95", "hd", "assd"))
    assert m["nsd"] == 0


def test_overlap_metrics_hand_computed():
    # 1-D row embedded in 2-D: ref covers 4 voxels, pred 4 voxels, 2 shared, 20 voxels in all
    ref = np.zeros((2, 10))
    pred = np.zeros((2, 10))
    ref[0, 0:4] = 1
    pred[0, 2:6] = 1
    m = metrics_of(ref, pred)
    assert m["dice"] == pytest.approx(2 * 2 / (4 + 4))
    assert m["iou"] == pytest.approx(2 / 6)
    assert m["sensitivity"] == pytest.approx(2 / 4)
    assert m["specificity"] == pytest.approx(14 / 16)


def test_distances_hand_computed_two_squares_apart():
    # two 2x2 squares, pred shifted by 3 columns; spacing (1, 2): columns are 2 mm apart
    ref = np.zeros((6, 12))
    pred = np.zeros((6, 12))
    ref[2:4, 2:4] = 1
    pred[2:4, 5:7] = 1
    m = metrics_of(ref, pred, spacing=(1.0, 2.0))
    # every voxel is surface; ref columns 2, 3 and pred columns 5, 6: the inner columns are
    # 2 apart (4 mm), the outer ones 3 apart (6 mm), in both directions
    assert m["hd"] == pytest.approx(6.0)
    assert m["assd"] == pytest.approx(5.0)
    assert m["hd95"] == pytest.approx(np.percentile([4, 4, 6, 6], 95))
    assert m["nsd"] == 0
    half = metrics_of(ref, pred, spacing=(1.0, 2.0), nsd_tolerance=4.0)["nsd"]
    assert half == pytest.approx(0.5)


def test_hd95_is_max_of_directed_percentiles_not_pooled():
    # A far-away false-positive blob that a pooled percentile hides (docs/metrics.md)
    ref = np.zeros((40, 40, 40), dtype=np.uint8)
    ref[5:25, 5:25, 5:25] = 1
    pred = ref.copy()
    pred[32:38, 32:38, 32:38] = 1  # 152 of 2320 pred surface voxels: > 5 % of one direction
    m = metrics_of(ref, pred)
    assert m["hd95"] > 10
    d_pr, d_rp = directed_distances(pred.astype(bool), ref.astype(bool), (1, 1, 1))
    assert np.percentile(np.concatenate([d_pr, d_rp]), 95) == 0  # what pooling would report
    bf = brute_force(ref.astype(bool), pred.astype(bool), (1, 1, 1))
    assert m["hd95"] == pytest.approx(bf["hd95"], abs=1e-9)


def test_border_voxels_count_as_surface():
    m = np.ones((4, 4, 4), dtype=bool)
    s = surface_mask(m)
    assert s.sum() == 64 - 8  # the 2x2x2 core is interior
    full = np.ones((3, 3), dtype=bool)
    assert surface_mask(full).sum() == 8


def test_multi_label_is_scored_label_by_label():
    ref = np.zeros((10, 10), dtype=np.uint8)
    pred = np.zeros_like(ref)
    ref[1:4, 1:4] = 1
    ref[6:9, 6:9] = 2
    pred[1:4, 1:4] = 1
    pred[6:9, 6:8] = 2
    out = case_metrics(ref, pred, (1.0, 1.0), labels=(1, 2, 3))
    assert out[1]["dice"] == 1.0
    assert out[2]["dice"] == pytest.approx(2 * 6 / (9 + 6))
    assert out[3] == pytest.approx(empty_label_metrics(), nan_ok=True)


# --------------------------------------------------------------- brute-force agreement


COMPILED_LOOPS = (
    "bounding_box",
    "nearest_far",
    "nearest_in_ball",
    "overlap",
    "row_bits",
    "summary",
    "surface_in_box",
    "surface_in_rows",
    "surface_in_words",
)


def without_compiled_loops(monkeypatch) -> None:
    """Make every compiled loop unavailable, as on an install without Numba."""
    from evaluator.metrics import _compiled

    for name in COMPILED_LOOPS:
        monkeypatch.setattr(_compiled, name, None)


@pytest.fixture(params=["compiled", "numpy"])
def search(request, monkeypatch):
    """Run a test with the compiled loops (summaries, surfaces, nearest-surface search), then
    with their NumPy twins."""
    if request.param == "numpy":
        without_compiled_loops(monkeypatch)
    return request.param


def random_blob_pair(rng, shape, p=0.3):
    ref = ndimage.binary_opening(rng.random(shape) < p + 0.2) | (rng.random(shape) < 0.02)
    pred = ndimage.binary_opening(rng.random(shape) < p + 0.2) | (rng.random(shape) < 0.02)
    return ref, pred


@pytest.mark.parametrize(
    "shape,spacing",
    [
        ((17, 23), (1.0, 1.0)),
        ((17, 23), (0.7, 2.3)),
        ((9, 12, 10), (1.0, 1.0, 1.0)),
        ((9, 12, 10), (0.8, 0.8, 2.5)),
        ((6, 30, 7), (3.0, 0.5, 1.1)),
        # rows of whole 8-byte words: surfaces eight voxels at a time
        ((13, 24), (0.7, 2.3)),
        ((7, 11, 16), (0.8, 0.8, 2.5)),
    ],
)
@pytest.mark.parametrize("method", ["kdtree", "edt", "auto"])
def test_distances_agree_with_all_pairs_brute_force(shape, spacing, method, search):
    rng = np.random.default_rng(hash((shape, spacing)) % 2**32)
    for _ in range(3):
        ref, pred = random_blob_pair(rng, shape)
        if not ref.any() or not pred.any():
            continue
        d = directed_distances(pred, ref, spacing, method=method)
        assert d is not None
        bf = brute_force(ref, pred, spacing, tau=1.5)
        d_pr, d_rp = d
        got = {
            "hd95": max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)),
            "hd": max(d_pr.max(), d_rp.max()),
            "assd": (d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size),
            "nsd": ((d_pr <= 1.5).sum() + (d_rp <= 1.5).sum()) / (d_pr.size + d_rp.size),
        }
        for k in got:
            assert got[k] == pytest.approx(bf[k], abs=1e-9), k
        full = metrics_of(ref, pred, spacing=spacing, nsd_tolerance=1.5)
        for k in got:
            assert full[k] == pytest.approx(bf[k], abs=1e-9), k


@pytest.mark.slow  # importing torch and MONAI takes seconds
def test_agrees_with_monai_percentile_95():
    monai_utils = pytest.importorskip("monai.metrics")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    ref, pred = random_blob_pair(rng, (20, 18, 14))
    spacing = (0.9, 1.3, 2.0)
    ours = metrics_of(ref, pred, spacing=spacing)["hd95"]
    theirs = monai_utils.compute_hausdorff_distance(
        torch.from_numpy(pred[None, None]),
        torch.from_numpy(ref[None, None]),
        include_background=True,
        percentile=95,
        spacing=spacing,
    )
    assert ours == pytest.approx(float(theirs), abs=1e-5)  # MONAI returns float32


# --------------------------------------------------------------------- properties

masks_2d = st.integers(min_value=0, max_value=2**32 - 1).map(
    lambda seed: random_blob_pair(np.random.default_rng(seed), (12, 11))
)
PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(masks_2d)
def test_dice_and_iou_are_symmetric_and_in_unit_interval(pair):
    ref, pred = pair
    a, b = metrics_of(ref, pred), metrics_of(pred, ref)
    for k in ("dice", "iou"):
        assert 0.0 <= a[k] <= 1.0
        assert a[k] == pytest.approx(b[k])
    for k in ("hd95", "hd", "assd", "nsd"):
        assert a[k] == pytest.approx(b[k], nan_ok=True)


@PROPS
@given(masks_2d, st.tuples(st.floats(0.3, 3.0), st.floats(0.3, 3.0)))
def test_hd95_never_exceeds_hd(pair, spacing):
    m = metrics_of(*pair, spacing=spacing)
    if not math.isnan(m["hd"]):
        assert m["hd95"] <= m["hd"] + 1e-12
        assert m["assd"] <= m["hd"] + 1e-12


@PROPS
@given(masks_2d, st.integers(0, 6), st.integers(0, 6))
def test_translating_both_masks_changes_nothing(pair, dy, dx):
    ref, pred = pair
    big_r = np.zeros((24, 24), dtype=bool)
    big_p = np.zeros((24, 24), dtype=bool)
    # embed away from the border in both positions so border rules do not differ
    big_r[3 : 3 + 12, 3 : 3 + 11] = ref
    big_p[3 : 3 + 12, 3 : 3 + 11] = pred
    moved_r = np.zeros_like(big_r)
    moved_p = np.zeros_like(big_p)
    moved_r[3 + dy : 15 + dy, 3 + dx : 14 + dx] = ref
    moved_p[3 + dy : 15 + dy, 3 + dx : 14 + dx] = pred
    a = metrics_of(big_r, big_p, spacing=(0.7, 1.9))
    b = metrics_of(moved_r, moved_p, spacing=(0.7, 1.9))
    assert a == pytest.approx(b, nan_ok=True)


@pytest.mark.parametrize("far", ["cubes", "tree"])
@pytest.mark.parametrize("ball", [1, 5, 40])
def test_offset_ball_and_far_search_agree_with_brute_force(monkeypatch, ball, far, search):
    """Small offset balls push most points past the ball, to the search cube by cube or to the
    k-d tree; the result must not move."""
    import evaluator.metrics.surface as surface_module

    if far == "tree":
        monkeypatch.setattr(surface_module, "FAR_GRID_MAX_POINTS", 0)
    monkeypatch.setattr(surface_module, "BALL_OFFSETS", ball)
    monkeypatch.setattr(surface_module, "BALL_OFFSETS_COMPILED", ball)
    monkeypatch.setattr(surface_module, "OFFSET_BLOCK", 3)
    rng = np.random.default_rng(ball)
    for shape, spacing in (((15, 19), (0.6, 1.7)), ((8, 11, 9), (1.2, 0.9, 2.1))):
        ref, pred = random_blob_pair(rng, shape)
        if not ref.any() or not pred.any():
            continue
        d_pr, d_rp = directed_distances(pred, ref, spacing, method="kdtree")
        bf = brute_force(ref, pred, spacing)
        assert max(d_pr.max(), d_rp.max()) == pytest.approx(bf["hd"], abs=1e-9)
        assert (d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size) == pytest.approx(
            bf["assd"], abs=1e-9
        )


def test_the_platform_scores_with_the_compiled_search():
    """requirements.txt installs Numba, so the platform's workers run the compiled search; this
    fails on an install where it silently fell back to NumPy."""
    import os

    from evaluator.metrics import _compiled

    if os.environ.get("SCANBENCH_NO_COMPILED", "") not in ("", "0"):
        pytest.skip("SCANBENCH_NO_COMPILED is set: the NumPy twins are tested on purpose")

    assert _compiled.kernel_name == "numba"
    assert _compiled.nearest_in_ball is not None


@pytest.mark.parametrize("ndim", [2, 3])
def test_compiled_and_numpy_searches_give_identical_distances(monkeypatch, ndim):
    """Given the same ball, the two searches try the same offsets in the same order and give
    bit-identical distances, for points inside the other surface's box, just outside it, and
    far away (k-d tree), on one thread or two; with its own, larger ball the compiled search
    still agrees with the EDT."""
    import evaluator.metrics.surface as surface_module

    rng = np.random.default_rng(20 + ndim)
    for trial in range(12):
        shape = tuple(int(n) for n in rng.integers(6, 40 if ndim == 2 else 24, ndim))
        spacing = tuple(float(x) for x in rng.uniform(0.4, 2.5, ndim))
        ref = ndimage.binary_dilation(rng.random(shape) < 0.01, iterations=int(rng.integers(1, 3)))
        pred = np.zeros(shape, dtype=bool)
        # a blob near the reference plus a far one: some points hit inside the box, some from
        # outside it, some only through the tree
        pred[tuple(slice(0, max(2, n // 4)) for n in shape)] = True
        pred |= np.roll(ref, int(rng.integers(-3, 4)), axis=trial % ndim)
        if not ref.any():
            continue
        runs = []
        for impl in ("compiled", "numpy"):
            with monkeypatch.context() as m:
                m.setattr(surface_module, "BALL_OFFSETS_COMPILED", surface_module.BALL_OFFSETS)
                # two threads whatever the size: the helper thread's path is checked too
                m.setattr(surface_module, "PARALLEL_MIN_VOXELS", 0)
                if impl == "numpy":
                    without_compiled_loops(m)
                for workers in (1, -1):
                    got = directed_distances(pred, ref, spacing, method="kdtree", workers=workers)
                    assert got is not None
                    runs.append(got)
        own_ball = directed_distances(pred, ref, spacing, method="kdtree")
        edt = directed_distances(pred, ref, spacing, method="edt")
        assert edt is not None and own_ball is not None
        for d_pr, d_rp in runs:
            assert np.array_equal(d_pr, runs[0][0]) and np.array_equal(d_rp, runs[0][1])
        for d_pr, d_rp in [*runs, own_ball]:
            np.testing.assert_allclose(d_pr, edt[0], rtol=0, atol=1e-9)
            np.testing.assert_allclose(d_rp, edt[1], rtol=0, atol=1e-9)


# --------------------------------------------------------------- one read of each mask


def _box_of(view: np.ndarray) -> tuple[slice, ...] | None:
    hits = np.argwhere(view)
    if hits.size == 0:
        return None
    return tuple(
        slice(int(lo), int(hi) + 1) for lo, hi in zip(hits.min(0), hits.max(0), strict=True)
    )


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("ndim", [2, 3])
def test_one_read_summary_gives_numpys_count_maximum_box_and_rows(order, ndim):
    from evaluator.metrics.surface import summarize

    rng = np.random.default_rng(40 + ndim)
    for trial in range(30):
        shape = tuple(int(n) for n in rng.integers(1, 26, ndim))
        if trial < 2:  # rows whose spans are found 8 bytes at a time, and byte by byte
            shape = (16 if trial == 0 else 13,) * ndim
        labels = 1 if trial % 3 else int(rng.integers(2, 255))
        m = np.where(rng.random(shape) < rng.choice([0.0, 0.002, 0.05, 0.6]), labels, 0)
        m = m.astype(np.uint8)
        arr = np.asfortranarray(m) if order == "F" else np.ascontiguousarray(m)
        for x in (arr, arr.astype(bool)) if labels == 1 else (arr,):
            s = summarize(x)
            assert s is not None
            view = x.T if s.transposed else x
            assert s.transposed == (order == "F" and not x.flags.c_contiguous)
            assert s.count == np.count_nonzero(m)
            assert s.max == int(m.max())
            assert s.box == _box_of(view)
            rows = view.reshape(-1, view.shape[-1]).any(axis=1)
            assert np.array_equal(s.rows.reshape(-1) != 0, rows)
    assert summarize(np.zeros((4, 4), np.int16)) is None  # not a one-byte type
    assert summarize(np.zeros((6, 6, 6), np.uint8)[::2]) is None  # not contiguous


@pytest.mark.parametrize("order", ["C", "F"])
def test_overlap_from_the_summaries_equals_counting_both(order):
    from evaluator.metrics.surface import overlap_count, summarize

    rng = np.random.default_rng(5)
    for _ in range(20):
        shape = tuple(int(n) for n in rng.integers(1, 20, 3))
        a = (rng.random(shape) < rng.uniform(0, 0.5)).astype(np.uint8)
        b = (rng.random(shape) < rng.uniform(0, 0.5)).astype(np.uint8)
        if order == "F":
            a, b = np.asfortranarray(a), np.asfortranarray(b)
        sa, sb = summarize(a), summarize(b)
        assert overlap_count(a, b, sa, sb) == np.count_nonzero(a & b)


def test_case_metrics_are_the_same_with_the_readers_summaries_and_without(tmp_path, search):
    """Scoring reuses the summary the mask reader made in the same read as the maximum; the
    values equal those computed from the arrays alone, label by label, on both paths."""
    from evaluator.metrics.segmentation import case_metrics_and_counts
    from evaluator.readers.masks import decode_mask
    from evaluator.synthetic import mask_pair, write_nifti

    spacing = (0.8, 0.9, 2.0)
    for seed in range(4):
        ref, pred = mask_pair((40, 36, 20), seed=seed, size=0.25)
        write_nifti(tmp_path / "r.nii.gz", ref, spacing)
        write_nifti(tmp_path / "p.nii.gz", pred, spacing)
        r = decode_mask((tmp_path / "r.nii.gz").read_bytes(), ".nii.gz")
        p = decode_mask((tmp_path / "p.nii.gz").read_bytes(), ".nii.gz")
        assert (r.summary is not None) == (search == "compiled")
        top = max(r.max, p.max)
        with_summaries, counts = case_metrics_and_counts(
            r.data, p.data, spacing, max_label=top, summaries=(r.summary, p.summary)
        )
        alone = metrics_of(ref, pred, spacing=spacing)
        assert with_summaries[1] == pytest.approx(alone, nan_ok=True, abs=1e-12)
        c = counts[1]
        assert (c.tp, c.n_ref, c.n_pred) == (
            np.count_nonzero(ref & pred),
            np.count_nonzero(ref),
            np.count_nonzero(pred),
        )
        bf = brute_force(ref.astype(bool), pred.astype(bool), spacing)
        for k in ("hd95", "hd", "assd", "nsd"):
            assert with_summaries[1][k] == pytest.approx(bf[k], abs=1e-9), k


def test_percentile_95_is_numpys_bit_for_bit():
    from evaluator.metrics.segmentation import percentile_95

    rng = np.random.default_rng(95)
    for n in [*range(1, 60), 101, 1000, 10_001, 54_321]:
        for kind in ("continuous", "ties", "grid"):
            if kind == "continuous":
                d = rng.exponential(3.0, n)
            elif kind == "ties":
                d = rng.integers(0, 4, n).astype(np.float64) * 0.8
            else:  # distances on a voxel grid, as the metric sees them
                o = rng.integers(-6, 7, (n, 3)) * np.array([0.8, 0.8, 2.0])
                d = np.sqrt((o**2).sum(axis=1))
            assert percentile_95(d) == np.percentile(d, 95), (n, kind)


def test_a_summary_of_another_mask_is_never_used():
    """The compiled loops index by a summary's rows without bounds checks: a summary of another
    shape or layout is ignored, and the values are those computed from the arrays alone."""
    from evaluator.metrics.segmentation import case_metrics_and_counts
    from evaluator.metrics.surface import summarize

    rng = np.random.default_rng(8)
    ref, pred = random_blob_pair(rng, (14, 11, 9))
    ref, pred = ref.astype(np.uint8), pred.astype(np.uint8)
    alone = metrics_of(ref, pred, spacing=(1.0, 0.7, 2.0))
    others = [
        summarize(np.ones((30, 30, 30), np.uint8)),
        summarize(np.asfortranarray(ref)),  # the same voxels, rows along the other axis
        summarize(np.ones((14, 11), np.uint8)),
    ]
    for other in others:
        got, counts = case_metrics_and_counts(
            ref, pred, (1.0, 0.7, 2.0), max_label=1, summaries=(other, other)
        )
        assert got[1] == pytest.approx(alone, nan_ok=True, abs=1e-12)
        assert counts[1].tp == np.count_nonzero(ref & pred)


@pytest.mark.parametrize(
    "shape,order",
    [((21, 8), "C"), ((9, 40), "C"), ((5, 9, 16), "C"), ((16, 7, 5), "F"), ((4, 3, 64), "C")],
)
def test_surfaces_eight_voxels_at_a_time_equal_voxel_by_voxel(monkeypatch, shape, order):
    """Rows of whole words get their surface eight voxels at a time; it must be the same
    surface, in the same order, as the voxel-by-voxel loop, and give bit-identical distances:
    masks touching every border, single-voxel rows, full rows, rows set at both ends only."""
    import evaluator.metrics.surface as surface_module
    from evaluator.metrics import _compiled

    if _compiled.surface_in_words is None:
        pytest.skip("Numba is not installed")
    rng = np.random.default_rng(sum(shape))
    for trial in range(6):
        masks = []
        for _ in range(2):
            m = ndimage.binary_opening(rng.random(shape) < 0.6) | (rng.random(shape) < 0.03)
            if trial == 1:
                m[...] = True  # every voxel on the border
            if trial == 2:
                m[..., 0] = m[..., -1] = True  # both ends of every row
            m = np.asfortranarray(m) if order == "F" else m
            masks.append(m)
        spacing = tuple(float(x) for x in rng.uniform(0.5, 2.0, len(shape)))
        sp_view = spacing[::-1] if order == "F" else spacing
        pad = surface_module._compiled_ball(sp_view)[2]
        for m in masks:
            view = m.T if order == "F" else m
            summary = surface_module.summarize(m)
            assert summary is not None
            words = surface_module._surface_of(view, summary, pad)
            with monkeypatch.context() as patch:
                patch.setattr(_compiled, "surface_in_words", None)
                bytewise = surface_module._surface_of(view, summary, pad)
            assert words.lo is not None and bytewise.lo is None
            assert words.box == bytewise.box
            np.testing.assert_array_equal(words.idx, bytewise.idx)
            np.testing.assert_array_equal(words.surf, bytewise.surf)
            np.testing.assert_array_equal(words.surf, surface_mask(view.astype(bool))[words.box])
        got = directed_distances(masks[0], masks[1], spacing, method="kdtree")
        with monkeypatch.context() as patch:
            patch.setattr(_compiled, "surface_in_words", None)
            expected = directed_distances(masks[0], masks[1], spacing, method="kdtree")
        assert got is not None and expected is not None
        for a, b in zip(got, expected, strict=True):
            np.testing.assert_array_equal(a, b)
        bf = brute_force(masks[1], masks[0], spacing)
        assert max(got[0].max(), got[1].max()) == pytest.approx(bf["hd"], abs=1e-9)


@pytest.mark.parametrize("clusters", [1, 2, 3])
def test_far_search_drops_only_voxels_that_cannot_be_nearest(clusters):
    """The far search first drops the other surface's voxels that are farther from the points'
    box than some voxel can be from all of it; with one stray cluster or several far apart (a
    box spanning much of the volume), every distance is the brute-force minimum, bit for bit."""
    from evaluator.metrics import _compiled

    if _compiled.nearest_far is None:
        pytest.skip("without Numba the k-d tree answers")
    rng = np.random.default_rng(clusters)
    spacing = np.array([2.0, 0.8, 0.7])
    for trial in range(6):
        q = rng.integers(20, 60, size=(int(rng.integers(50, 3000)), 3))
        centers = rng.integers(-40, 120, size=(clusters, 3))
        points = np.concatenate(
            [c + rng.integers(-4, 5, size=(int(rng.integers(1, 60)), 3)) for c in centers]
        )
        todo = np.arange(points.shape[0], dtype=np.intp)
        for shift in (1, 2, 3):
            out = np.full(points.shape[0], np.nan)
            _compiled.nearest_far(points, todo, q, spacing, shift, out)
            diff = (points[:, None, :] - q[None, :, :]) * spacing
            d0, d1, d2 = diff[..., 0], diff[..., 1], diff[..., 2]
            brute = np.sqrt((d0 * d0 + d1 * d1 + d2 * d2).min(axis=1))
            assert np.array_equal(out, brute), (trial, shift)
