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


@pytest.fixture(params=["compiled", "numpy"])
def search(request, monkeypatch):
    """Run a test with the compiled nearest-surface search, then with its NumPy twin."""
    from evaluator.metrics import _compiled

    if request.param == "numpy":
        monkeypatch.setattr(_compiled, "nearest_in_ball", None)
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


@pytest.mark.parametrize("ball", [1, 5, 40])
def test_offset_ball_and_tree_fallback_agree_with_brute_force(monkeypatch, ball, search):
    """Small offset balls push most points to the k-d tree fallback; the result must not move."""
    import evaluator.metrics.surface as surface_module

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
    from evaluator.metrics import _compiled

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
                if impl == "numpy":
                    m.setattr(_compiled, "nearest_in_ball", None)
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
