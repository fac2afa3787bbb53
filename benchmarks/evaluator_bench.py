"""Benchmark: Scanbench's evaluator against MONAI (CPU) and MedPy, side by side, in one run.

    .venv/bin/python benchmarks/evaluator_bench.py            # 256x256x128 and 512x512x300
    .venv/bin/python benchmarks/evaluator_bench.py --quick    # the small size only
    .venv/bin/python benchmarks/evaluator_bench.py --json out.json

Targets (issues 3 and 15): Dice within 2x of the memory-read floor of the two masks; HD95 >= 10x
faster than MONAI (CPU) and >= 20x faster than MedPy, equal to MONAI's percentile=95 value within
1e-6 mm; a 100-case .nii.gz submission scored end to end, all eight metrics, within 1.5x of only
decompressing its files with the fastest inflater the evaluator uses (ISA-L when python-isal is
installed, else zlib), in the fastest way found (one call per file, or 1 MiB steps that stay in
the core's cache; every floor is printed, the fastest is the one compared with); the same
submission again once the worker keeps the reference decoded, beside inflating the predictions
alone; both again the platform's way, the predictions decoded in the locked-down child; ranking
with 1000 bootstrap resamples x 500 cases x 100 entries in under 2 s.

Synthetic masks: per case one reference ellipsoid (radii ~ 15-25 % of the volume), a prediction
shifted and rescaled a little plus a small false-positive blob far away (the case where pooled
HD95 implementations disagree), spacing 0.8 x 0.8 x 2.0 mm. Times are the best of N runs on this
machine; conversions into each library's input type (torch tensors) are not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere

from evaluator import ScoreOptions, score
from evaluator.metrics.segmentation import case_metrics, label_counts, overlap_metrics
from evaluator.metrics.surface import directed_distances
from evaluator.ranking import bootstrap_ranks, leaderboard
from evaluator.readers.masks import DECOMPRESSOR
from evaluator.readers.sources import forget_digests
from evaluator.synthetic import mask_pair, write_nifti

SPACING = (0.8, 0.8, 2.0)
warnings.filterwarnings("ignore")


def best_of(fn: Callable[[], Any], n: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(n):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def row(name: str, seconds: float, note: str = "") -> None:
    print(f"  {name:<44} {seconds * 1000:>11.1f} ms  {note}")


def bench_pair(shape: tuple[int, int, int], results: dict[str, Any], *, medpy_ok: bool) -> None:
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance
    from monai.metrics.utils import get_mask_edges, get_surface_distance

    torch.set_num_threads(os.cpu_count() or 1)
    key = "x".join(map(str, shape))
    print(f"\n== masks {key}, spacing {SPACING} mm ==")
    ref, pred = mask_pair(shape, seed=11)
    rb, pb = ref.view(bool), pred.view(bool)
    out: dict[str, Any] = {"voxels": int(ref.size), "ref_fraction": float(rb.mean())}
    big = ref.size > 50_000_000
    n_fast = 5

    # ---- Dice
    def floor() -> int:
        return int(np.count_nonzero(rb)) + int(np.count_nonzero(pb))

    t_floor, _ = best_of(floor, n_fast)
    t_naive, naive = best_of(
        lambda: 2 * np.count_nonzero(rb & pb) / (np.count_nonzero(rb) + np.count_nonzero(pb)),
        n_fast,
    )
    t_ours, ours = best_of(
        lambda: overlap_metrics(label_counts(ref, pred, [1], max_label=1)[1])["dice"], n_fast
    )
    tp_f = torch.from_numpy(pred[None, None].astype(np.float32))
    tr_f = torch.from_numpy(ref[None, None].astype(np.float32))
    t_monai_dice, monai_dice = best_of(
        lambda: float(compute_dice(tp_f, tr_f, include_background=True)), 2 if big else 3
    )
    row("memory-read floor (count_nonzero of both)", t_floor)
    row("Dice, numpy count_nonzero(a & b)", t_naive, f"{t_naive / t_floor:.2f}x floor")
    row("Dice, Scanbench", t_ours, f"{t_ours / t_floor:.2f}x floor (target <= 2x)")
    row("Dice, MONAI compute_dice", t_monai_dice, f"{t_monai_dice / t_floor:.1f}x floor")
    assert abs(ours - naive) < 1e-12 and abs(ours - monai_dice) < 1e-6
    out["dice"] = {
        "floor_s": t_floor,
        "numpy_s": t_naive,
        "scanbench_s": t_ours,
        "monai_s": t_monai_dice,
        "ratio_to_floor": t_ours / t_floor,
    }
    if medpy_ok:
        from medpy.metric.binary import dc

        t_medpy_dice, _ = best_of(lambda: dc(pred, ref), 1 if big else 3)
        row("Dice, MedPy dc", t_medpy_dice, f"{t_medpy_dice / t_floor:.1f}x floor")
        out["dice"]["medpy_s"] = t_medpy_dice

    # ---- HD95
    t_hd, res = best_of(lambda: case_metrics(ref, pred, SPACING, metrics=("hd95",), max_label=1), 3)
    hd_ours = res[1]["hd95"]
    t_all, _ = best_of(lambda: case_metrics(ref, pred, SPACING, max_label=1), 3)
    tp_b = torch.from_numpy(pb[None, None].copy())
    tr_b = torch.from_numpy(rb[None, None].copy())
    t_monai, hd_monai_t = best_of(
        lambda: compute_hausdorff_distance(
            tp_b, tr_b, include_background=True, percentile=95, spacing=SPACING
        ),
        1 if big else 2,
    )
    hd_monai = float(hd_monai_t)
    # MONAI's own edges and distances, percentile in float64 (its distances are float32)
    edges_p, edges_r = get_mask_edges(pb, rb, crop=True, always_return_as_numpy=True)
    d1 = get_surface_distance(edges_p, edges_r, distance_metric="euclidean", spacing=SPACING)
    d2 = get_surface_distance(edges_r, edges_p, distance_metric="euclidean", spacing=SPACING)
    hd_monai64 = float(max(np.percentile(d1, 95), np.percentile(d2, 95)))
    # an independent float64 value: scipy's EDT over the union box (the slow exact path)
    edt = directed_distances(pb, rb, SPACING, method="edt")
    assert edt is not None
    hd_edt = float(max(np.percentile(edt[0], 95), np.percentile(edt[1], 95)))
    row("HD95, Scanbench", t_hd, f"{hd_ours:.9f} mm")
    row("all 8 segmentation metrics, Scanbench", t_all)
    speedup = t_monai / t_hd
    row(
        "HD95, MONAI compute_hausdorff_distance",
        t_monai,
        f"{hd_monai:.9f} mm (float32); {speedup:.1f}x Scanbench's time "
        f"(target >= 10x: {'met' if speedup >= 10 else 'NOT met'})",
    )
    print(
        f"  |Scanbench - MONAI| = {abs(hd_ours - hd_monai):.2e} mm (MONAI float32 result), "
        f"{abs(hd_ours - hd_monai64):.2e} mm (MONAI's distances, float64 percentile); "
        f"|Scanbench - scipy EDT float64| = {abs(hd_ours - hd_edt):.2e} mm"
    )
    out["hd95"] = {
        "scanbench_s": t_hd,
        "scanbench_all_metrics_s": t_all,
        "monai_s": t_monai,
        "speedup_vs_monai": t_monai / t_hd,
        "value_mm": hd_ours,
        "monai_value_mm": hd_monai,
        "monai_distances_float64_percentile_mm": hd_monai64,
        "abs_diff_monai_mm": abs(hd_ours - hd_monai),
        "edt_float64_value_mm": hd_edt,
        "abs_diff_edt_mm": abs(hd_ours - hd_edt),
    }
    if medpy_ok:
        from medpy.metric.binary import hd95 as medpy_hd95

        t_medpy, hd_medpy = best_of(lambda: medpy_hd95(pred, ref, voxelspacing=SPACING), 1)
        row(
            "HD95, MedPy hd95 (pools both directions)",
            t_medpy,
            f"{hd_medpy:.6f} mm; {t_medpy / t_hd:.1f}x Scanbench's time",
        )
        out["hd95"].update(
            {
                "medpy_s": t_medpy,
                "speedup_vs_medpy": t_medpy / t_hd,
                "medpy_value_mm": float(hd_medpy),
            }
        )
    results[key] = out


def in_fork(measure: Callable[[], float]) -> float:
    """``measure()`` run in a forked child (this process's memory left as it was)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            os.write(w, struct.pack("d", measure()))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        got = fh.read()
    os.waitpid(pid, 0)
    if len(got) != 8:
        raise RuntimeError("the measuring child failed")
    return float(struct.unpack("d", got)[0])


def bench_end_to_end(results: dict[str, Any], n_cases: int, shape: tuple[int, int, int]) -> None:
    print(f"\n== end to end: {n_cases} cases of {'x'.join(map(str, shape))} .nii.gz ==")
    with tempfile.TemporaryDirectory() as tmp:
        ref_dir, pred_dir = Path(tmp) / "ref", Path(tmp) / "pred"
        ref_dir.mkdir()
        pred_dir.mkdir()
        t0 = time.perf_counter()
        for i in range(n_cases):
            ref, pred = mask_pair(shape, seed=1000 + i, size=0.2)
            write_nifti(ref_dir / f"case_{i:03d}.nii.gz", ref, SPACING)
            write_nifti(pred_dir / f"case_{i:03d}.nii.gz", pred, SPACING)
        files = sorted(ref_dir.iterdir()) + sorted(pred_dir.iterdir())
        size = sum(p.stat().st_size for p in files)
        print(
            f"  (wrote {len(files)} files, {size / 2**20:.1f} MiB, in "
            f"{time.perf_counter() - t0:.1f} s)"
        )

        def decompress_zlib() -> int:
            # the fastest plain zlib inflate: one call, output buffer sized from the gzip trailer
            total = 0
            for p in files:
                data = p.read_bytes()
                total += len(zlib.decompress(data, 31, int.from_bytes(data[-4:], "little")))
            return total

        def decompress_isal() -> int:
            # ISA-L's fastest call on these files: a decompressobj with max_length = the size
            # (isal_zlib.decompress with a bufsize is slower here)
            from isal import isal_zlib

            total = 0
            for p in files:
                data = p.read_bytes()
                d = isal_zlib.decompressobj(wbits=31)
                total += len(d.decompress(data, int.from_bytes(data[-4:], "little")))
            return total

        def decompress_steps(paths: list[Path] = files) -> int:
            # the evaluator's own pattern: 1 MiB pieces that stay in the core's cache and are
            # dropped (faster here than one call, which writes 8 MiB of fresh memory per file)
            from evaluator.readers.masks import _inflate_steps

            total = 0
            for p in paths:
                data = p.read_bytes()
                size = int.from_bytes(data[-4:], "little")
                total += sum(len(c) for c in _inflate_steps(data, 0, size, 1 << 20))
            return total

        decompress_zlib()  # warm the page cache for every contender alike
        # the one-call floors alternate (best of 5 each) so that a burst of load hits both alike;
        # the stepwise one runs in a forked child: in this process it left the allocator in a
        # state that slowed the one-call ISA-L floor by a third and the scoring by 5-8 %
        t_zlib, t_isal, nbytes = float("inf"), float("inf"), 0
        for _ in range(5):
            t, nbytes = best_of(decompress_zlib, 1)
            t_zlib = min(t_zlib, t)
            if DECOMPRESSOR == "isal":
                t_isal = min(t_isal, best_of(decompress_isal, 1)[0])
        t_steps = in_fork(lambda: best_of(decompress_steps, 5)[0])
        row("read + decompress only (zlib, 1 thread)", t_zlib, f"{nbytes / 2**20:.0f} MiB out")
        e2e: dict[str, Any] = {
            "n_cases": n_cases,
            "shape": list(shape),
            "decompressor": DECOMPRESSOR,
            "decompress_zlib_s": t_zlib,
        }
        t_dec = t_zlib
        if DECOMPRESSOR == "isal":
            row(
                "read + decompress only (ISA-L, 1 thread)",
                t_isal,
                f"{t_zlib / t_isal:.2f}x faster than zlib",
            )
            e2e["decompress_isal_s"] = t_isal
            t_dec = min(t_isal, t_zlib)
        row(
            f"read + decompress only ({DECOMPRESSOR}, 1 MiB steps, 1 thread)",
            t_steps,
            f"{t_zlib / t_steps:.2f}x faster than zlib in one call",
        )
        e2e["decompress_steps_s"] = t_steps
        t_dec = min(t_dec, t_steps)
        print(
            f"  floor = the fastest of these ({t_dec * 1000:.1f} ms); evaluator inflates with "
            f"{DECOMPRESSOR}"
        )
        e2e["decompress_s"] = t_dec
        overlap = ("dice", "iou", "sensitivity", "specificity")
        from evaluator.readers import kept

        def score_fresh(o: ScoreOptions) -> Any:
            # as for the first submission a worker scores against this reference: no file
            # digest and no decoded reference mask remembered from the previous run
            forget_digests()
            kept.clear()
            return score("segmentation", ref_dir, pred_dir, options=o)

        for metrics, label in ((None, "all 8 metrics"), (overlap, "overlap metrics only")):
            for workers in (1, os.cpu_count() or 1):
                opts = ScoreOptions(workers=workers, bootstrap=1000, metrics=metrics)
                t, rep = best_of(lambda o=opts: score_fresh(o), 5)
                ratio = t / t_dec
                row(
                    f"score(), {label}, {workers} thread(s)",
                    t,
                    f"{ratio:.2f}x floor, {t / t_zlib:.2f}x zlib-only (target <= 1.5x: "
                    f"{'met' if ratio <= 1.5 else 'NOT met'})",
                )
                tag = "all" if metrics is None else "overlap"
                e2e[f"{tag}_{workers}_threads_s"] = t
                e2e[f"{tag}_{workers}_threads_ratio"] = t / t_dec
                assert rep.meta["n_cases"] == n_cases
        # later submissions against the same reference: a worker keeps the reference's masks
        # decoded (evaluator/readers/kept.py), so only the predictions are inflated; their own
        # floor is printed beside the one of all files
        t_pred = in_fork(lambda: best_of(lambda: decompress_steps(files[n_cases:]), 5)[0])
        row("read + decompress the predictions only (1 MiB steps)", t_pred)
        e2e["decompress_predictions_s"] = t_pred
        for workers in (1, os.cpu_count() or 1):
            opts = ScoreOptions(workers=workers, bootstrap=1000)

            def score_kept(o: ScoreOptions = opts) -> Any:
                forget_digests()
                return score("segmentation", ref_dir, pred_dir, options=o)

            kept.clear()
            score_kept()
            score_kept()  # seen, then kept
            t, _rep = best_of(score_kept, 5)
            row(
                f"score(), all 8 metrics, {workers} thread(s), reference kept",
                t,
                f"{t / t_dec:.2f}x floor of all files, {t / t_pred:.2f}x the predictions' own",
            )
            e2e[f"all_{workers}_threads_kept_s"] = t
        # what the decoding child does with each prediction: inflate it straight to the rows it
        # sends (masks.decode_rows), against decoding the mask and packing its rows
        from evaluator.readers import masks as masks_module

        raws = [p.read_bytes() for p in files[n_cases:]]

        def child_rows() -> None:
            buffer = masks_module.RowsBuffer()
            for raw in raws:
                masks_module.decode_rows(raw, ".nii.gz", buffer)

        def child_masks() -> None:
            with masks_module.reused_voxel_memory():
                for raw in raws:
                    masks_module.pack_mask(masks_module.decode_mask(raw, ".nii.gz"))

        t_rows = in_fork(lambda: best_of(child_rows, 5)[0])
        t_masks = in_fork(lambda: best_of(child_masks, 5)[0])
        row(
            "decoding child: the predictions straight to their rows",
            t_rows,
            f"{t_rows / t_pred:.2f}x inflating them; decoding + packing: {t_masks * 1000:.1f} ms",
        )
        e2e["child_rows_s"], e2e["child_decode_and_pack_s"] = t_rows, t_masks
        # the platform's own path: the participant's files decoded in the locked-down child
        # (evaluator/readers/isolated.py), which sends each mask's rows that hold a voxel
        from evaluator.readers.isolated import DecodeLimits

        iso = ScoreOptions(workers=os.cpu_count() or 1, bootstrap=1000, isolation=DecodeLimits())
        kept.clear()
        score_fresh(iso)  # starts the decoding zygote (once per worker process), not timed
        t, _rep = best_of(lambda: score_fresh(iso), 5)
        row(
            f"score(), all 8 metrics, {iso.workers} threads, decoded in the locked-down child",
            t,
            f"{t / t_dec:.2f}x floor (the platform's path, first submission)",
        )
        e2e["all_isolated_s"] = t
        kept.clear()

        def score_isolated_kept() -> Any:
            forget_digests()
            return score("segmentation", ref_dir, pred_dir, options=iso)

        score_isolated_kept()
        score_isolated_kept()
        t, _rep = best_of(score_isolated_kept, 5)
        row(
            "  the same, reference kept",
            t,
            f"{t / t_dec:.2f}x floor of all files, {t / t_pred:.2f}x the predictions' own",
        )
        e2e["all_isolated_kept_s"] = t
        kept.clear()
        if DECOMPRESSOR != "zlib":
            # the same scoring with the evaluator's inflater switched to zlib (the fallback when
            # python-isal is not installed), for a before/after in one run
            import evaluator.readers.masks as masks_module

            saved = masks_module._INFLATER
            masks_module._INFLATER = zlib
            try:
                for workers in (1, os.cpu_count() or 1):
                    opts = ScoreOptions(workers=workers, bootstrap=1000)
                    t, _rep = best_of(lambda o=opts: score_fresh(o), 5)
                    row(
                        f"score(), all 8 metrics, {workers} thread(s), zlib inflater",
                        t,
                        f"{t / t_dec:.2f}x floor, {t / t_zlib:.2f}x zlib-only",
                    )
                    e2e[f"all_{workers}_threads_zlib_inflater_s"] = t
            finally:
                masks_module._INFLATER = saved
        results["end_to_end"] = e2e


def bench_ranking(results: dict[str, Any]) -> None:
    print("\n== ranking: 100 entries x 500 cases, 1000 bootstrap resamples ==")
    rng = np.random.default_rng(0)
    skill = np.linspace(0.6, 0.8, 100)
    values = {
        f"entry_{e:03d}": {
            f"case_{c:03d}": float(v)
            for c, v in enumerate(np.clip(rng.normal(skill[e], 0.15, 500), 0, 1))
        }
        for e in range(100)
    }
    t_boot, stab = best_of(
        lambda: bootstrap_ranks(values, higher_is_better=True, n_resamples=1000, seed=0), 3
    )
    row(
        "bootstrap rank intervals + Kendall's tau",
        t_boot,
        f"tau {stab.kendall_tau_mean:.3f} (target < 2000 ms)",
    )
    t_board, _ = best_of(
        lambda: leaderboard(values, metric="dice", higher_is_better=True, n_resamples=1000), 1
    )
    row("full leaderboard (+ 4950 Wilcoxon tests, Holm, tiers)", t_board)
    results["ranking"] = {"bootstrap_s": t_boot, "leaderboard_s": t_board}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="only the 256x256x128 masks")
    p.add_argument("--no-medpy", action="store_true", help="skip MedPy (minutes on 512x512x300)")
    p.add_argument("--cases", type=int, default=100, help="cases in the end-to-end run (100)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON")
    p.add_argument("--only-end-to-end", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    results: dict[str, Any] = {}
    if args.only_end_to_end:
        bench_end_to_end(results, args.cases, (256, 256, 128))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        return
    from evaluator.metrics import _compiled

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, numpy {np.__version__}; distance loops: "
        f"{_compiled.kernel_name}"
    )
    shapes = [(256, 256, 128)] + ([] if args.quick else [(512, 512, 300)])
    for shape in shapes:
        bench_pair(shape, results, medpy_ok=not args.no_medpy)
    # The end-to-end run and its floor go to a fresh interpreter: after the large arrays above,
    # allocating each inflated file costs this process more than a fresh one (page faults), which
    # slowed the floor by up to 2x and flattered the ratio.
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e2e.json"
        cmd = [sys.executable, __file__, "--only-end-to-end", "--cases", str(args.cases)]
        subprocess.run([*cmd, "--json", str(out)], check=True)
        results.update(json.loads(out.read_text()))
    bench_ranking(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
