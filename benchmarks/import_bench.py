"""What the importer's imaging checks cost: the dry run of a segmentation bundle against reading
every volume once with nibabel.

The dry run (``challenges.services.bundles.bundle_checked``, what the console's upload report
and ``import_challenge`` both run) compares every mask with its image (shape, spacing,
orientation), reads every mask's labels, and measures the task card's summary (sizes, spacings,
foreground fraction, what an empty mask scores). The floor beside it is what any importer that
looks at the data must at least do: ``nibabel.load(...).get_fdata()`` of every image and mask.

    .venv/bin/python benchmarks/import_bench.py [--cases 20] [--shape 256 256 64]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def _bundle(folder: Path, n: int, shape: tuple[int, ...]) -> Path:
    from evaluator.synthetic import write_nifti

    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    rng = np.random.default_rng(0)
    rows = ["case_id,split"]
    for i in range(n):
        case_id = f"case_{i:03d}"
        rows.append(f"{case_id},{'train' if i < n // 2 else 'test'}")
        image = rng.normal(size=shape).astype(np.float32)
        mask = np.zeros(shape, dtype=np.uint8)
        c = [s // 2 for s in shape]
        r = [max(1, s // 6) for s in shape]
        mask[tuple(slice(ci - ri, ci + ri) for ci, ri in zip(c, r, strict=True))] = 1
        write_nifti(folder / "images" / f"{case_id}.nii.gz", image, (0.8, 0.8, 2.5))
        write_nifti(folder / "labels" / f"{case_id}.nii.gz", mask, (0.8, 0.8, 2.5))
    (folder / "cases.csv").write_text("\n".join(rows) + "\n")
    manifest = {
        "slug": "bench-seg", "title": "Bench", "summary": "Bench.", "task": "segmentation",
        "classes": ["lesion"], "licence": "CC0 1.0", "attribution": "Generated.",
        "dataset": {"cases": "cases.csv", "inputs": "images", "labels": "labels"},
        "phases": [{"slug": "open", "title": "Open", "metrics": ["dice", "hd95"]}],
    }  # fmt: skip
    (folder / "challenge.yaml").write_text(yaml.safe_dump(manifest))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=[256, 256, 64])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import django

    django.setup()
    import nibabel as nib

    from challenges.services.bundles import bundle_checked

    with tempfile.TemporaryDirectory() as tmp:
        bundle = _bundle(Path(tmp) / "bundle", args.cases, tuple(args.shape))
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        floors, checks = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for p in sorted((bundle / "images").glob("*.nii.gz")) + sorted(
                (bundle / "labels").glob("*.nii.gz")
            ):
                nib.load(str(p)).get_fdata()
            floors.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with bundle_checked(bundle) as plan:
                assert plan is not None
            checks.append(time.perf_counter() - t0)
    floor, check = float(np.median(floors)), float(np.median(checks))
    print(
        f"bundle: {args.cases} cases of {'x'.join(map(str, args.shape))} voxels, image + mask "
        f"(.nii.gz, {size / 2**20:.1f} MiB); medians of {args.repeat}"
    )
    print(f"{'nibabel: read every image and mask once (floor)':<58} {floor:8.2f} s")
    print(f"{'Scanbench dry run: all checks + the task-card summary':<58} {check:8.2f} s")
    print(f"{'ratio':<58} {check / floor:8.2f}x")


if __name__ == "__main__":
    main()
