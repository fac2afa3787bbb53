"""Benchmark: what decoding participants' files in the locked-down child costs, and what the
hardened readers save on hostile files, side by side with the peer readers in one run.

    .venv/bin/python benchmarks/decode_bench.py [--repeat 5]

1. Scoring time of the same submission with the predictions decoded in this process
   (``ScoreOptions()``) and in the decoding child (``ScoreOptions(isolation=DecodeLimits())``):
   a 10,000-case CSV and a 20-case ``.nii.gz`` zip (96x96x48). Medians of ``--repeat`` runs; the
   zygote's one-off start per worker process is printed on its own.
2. Peak memory (max RSS, each in a fresh interpreter) of reading a 1 MB gzip NRRD that declares
   2 GiB of voxels: pynrrd's ``nrrd.read`` (the reader Scanbench used before, the peer here)
   against Scanbench's reader with the reference shape, which refuses it from the header.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator import ScoreOptions, score  # noqa: E402
from evaluator.readers.isolated import DecodeLimits  # noqa: E402
from evaluator.synthetic import write_nifti  # noqa: E402


def _median_time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _csv_case(tmp: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    n = 10_000
    y = rng.integers(0, 2, n)
    s = np.clip(y * 0.3 + rng.random(n) * 0.7, 0, 1)
    ref = tmp / "ref.csv"
    ref.write_text("case_id,label\n" + "".join(f"c{i},{y[i]}\n" for i in range(n)))
    pred = tmp / "pred.csv"
    pred.write_text("case_id,score\n" + "".join(f"c{i},{s[i]:.6f}\n" for i in range(n)))
    return ref, pred


def _nifti_case(tmp: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(1)
    ref, pred = tmp / "ref", tmp / "pred"
    ref.mkdir()
    pred.mkdir()
    shape = (96, 96, 48)
    zz, yy, xx = np.indices(shape)
    for i in range(20):
        c = rng.integers(30, 60, 3)
        r = (xx - c[0]) ** 2 + (yy - c[1]) ** 2 + ((zz - c[2] // 2) * 2) ** 2
        a = (r < 300).astype(np.uint8)
        b = (np.roll(r, 2, axis=0) < 280).astype(np.uint8)
        write_nifti(ref / f"c{i:02d}.nii.gz", a, (0.8, 0.8, 2.0))
        write_nifti(pred / f"c{i:02d}.nii.gz", b, (0.8, 0.8, 2.0))
    archive = tmp / "pred.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for p in sorted(pred.iterdir()):
            zf.write(p, p.name)
    return ref, archive


_PEAK = """
import resource, sys
sys.path.insert(0, {root!r})
data = open({path!r}, 'rb').read()
try:
    {body}
    outcome = 'read'
except Exception as exc:
    outcome = type(exc).__name__
print(outcome, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak(path: Path, body: str) -> tuple[str, int]:
    code = _PEAK.format(root=str(ROOT), path=str(path), body=body)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0], int(out[1]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        iso = DecodeLimits()
        (tmp / "warm").mkdir()
        warm_ref, warm_pred = _csv_case(tmp / "warm")
        t = time.perf_counter()
        score(
            "classification", warm_ref, warm_pred, options=ScoreOptions(isolation=iso, bootstrap=0)
        )
        out["zygote_start_and_first_decode_s"] = round(time.perf_counter() - t, 3)

        (tmp / "csv").mkdir()
        ref, pred = _csv_case(tmp / "csv")
        for name, opts in (
            ("in_process", ScoreOptions(bootstrap=0)),
            ("isolated", ScoreOptions(isolation=iso, bootstrap=0)),
        ):
            # a new mtime each run defeats the parsed-table cache: every run parses the file
            def run(opts: ScoreOptions = opts) -> None:
                pred.touch()
                score("classification", ref, pred, options=opts)

            out[f"csv_10000_cases_{name}_s"] = round(_median_time(run, args.repeat), 4)

        (tmp / "seg").mkdir()
        ref_dir, archive = _nifti_case(tmp / "seg")
        metrics = ["dice", "hd95"]
        for name, opts in (
            ("in_process", ScoreOptions(metrics=metrics, bootstrap=0)),
            ("isolated", ScoreOptions(metrics=metrics, bootstrap=0, isolation=iso)),
        ):
            out[f"nifti_20_cases_{name}_s"] = round(
                _median_time(
                    lambda opts=opts: score("segmentation", ref_dir, archive, options=opts),
                    args.repeat,
                ),
                4,
            )

        bomb = tmp / "bomb.nrrd"
        header = (
            "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 2048 2048 512\nencoding: gzip\n"
            "space directions: (1,0,0) (0,1,0) (0,0,1)\n\n"
        )
        with bomb.open("wb") as fh:  # streamed: this process never holds the gigabyte
            fh.write(header.encode())
            with gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=9) as gz:
                block = b"\0" * (1 << 24)
                for _ in range(64):
                    gz.write(block)
        out["bomb_file_bytes"] = bomb.stat().st_size
        outcome, mib = _peak(bomb, f"import nrrd; nrrd.read({str(bomb)!r})")
        out["bomb_pynrrd_peak_mib"], out["bomb_pynrrd_outcome"] = mib, outcome
        outcome, mib = _peak(
            bomb,
            "from evaluator.readers.masks import decode_mask; "
            "decode_mask(data, '.nrrd', expected_shape=(512, 512, 300))",
        )
        out["bomb_scanbench_peak_mib"], out["bomb_scanbench_outcome"] = mib, outcome
        outcome, mib = _peak(bomb, "pass")
        out["interpreter_with_file_peak_mib"] = mib
    width = max(map(len, out))
    for k, v in out.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
