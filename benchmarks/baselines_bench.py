"""What each baseline costs and scores: training time (fit + predict + writing the predictions
file) and the primary score on the test split, per phase.

On every phase of the demo challenges in the database (``manage.py setup_demo``; any
challenge with ``--challenge SLUG``), read as the platform reads them
(:func:`challenges.baselines.data.phase_data`), else, when there are none, on two generated
challenges (32x32 PNGs where class 1 has a bright blob; 48x48 PNGs of bright ellipses to
segment). Nothing is written to the database: the scores are computed here (AUC on the whole
test split for classification, mean Dice for segmentation), with the test labels the platform
keeps (this is a trusted tool). The first classical row of an image phase includes computing
the image features, which the other five reuse. Every registered baseline runs, the CNN ones
included where torch imports, so their rows appear here without changing this file.

    .venv/bin/python benchmarks/baselines_bench.py [--challenge SLUG ...] [--generated]
        [--families trivial,classical]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from challenges.baselines.registry import PhaseData

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

DEMOS = (
    "synthetic-lesions",
    "breast-cancer-wdbc",
    "chest-xray-pneumonia",
    "nuclei-segmentation",
    "lesion-segmentation-3d",
)


@dataclass
class Target:
    title: str
    data: PhaseData
    labels: dict[str, int]  # classification: test case -> class
    masks: dict[str, Path]  # segmentation: test case -> reference mask


def _generated(folder: Path) -> list[Target]:
    from PIL import Image

    from challenges.baselines.registry import PhaseData, TrainCase
    from evaluator.synthetic import ellipsoid_mask

    def png(path: Path, arr: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), mode="L").save(path)
        return path

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    train, test, labels = [], [], {}
    for i in range(200):
        label = int(rng.random() < 0.3)
        img = rng.normal(80, 12, (32, 32))
        if label:
            cy, cx = rng.uniform(8, 24, 2)
            img += 25 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 2.0**2))
        path = png(folder / "cls" / f"img_{i:03d}.png", img)
        if i < 120:
            train.append(TrainCase(f"img_{i:03d}", path, None, label, None))
        else:
            test.append(TrainCase(f"img_{i:03d}", path, None, None, None))
            labels[f"img_{i:03d}"] = label
    cls = PhaseData("classification", "image2d", ["no blob", "blob"], train, test, 0, folder)
    train, test, masks = [], [], {}
    for i in range(40):
        mask = ellipsoid_mask(
            (64, 64), rng.uniform(20, 44, 2).tolist(), rng.uniform(5, 12, 2).tolist()
        )
        img = rng.normal(60, 15, (64, 64)) + 50 * mask
        case_id = f"seg_{i:03d}"
        path = png(folder / "seg" / f"{case_id}.png", img)
        mask_path = png(folder / "seg-labels" / f"{case_id}.png", mask)
        if i < 20:
            train.append(TrainCase(case_id, path, None, None, mask_path))
        else:
            test.append(TrainCase(case_id, path, None, None, None))
            masks[case_id] = mask_path
    seg = PhaseData("segmentation", "image2d", ["blob"], train, test, 0, folder)
    return [
        Target("generated: blob or not (PNG, 120 train / 80 test)", cls, labels, {}),
        Target("generated: blob segmentation (PNG, 20 train / 20 test)", seg, {}, masks),
    ]


def _from_database(slugs: list[str], folder: Path) -> list[Target]:
    from django.conf import settings
    from django.db import DatabaseError

    from challenges.baselines.data import phase_data
    from challenges.models import Case, Phase

    db = settings.DATABASES["default"]
    if "sqlite" in db["ENGINE"] and not Path(str(db["NAME"])).is_file():
        print("(no database; using generated challenges)")
        return []  # connecting would create an empty SQLite file
    try:
        phases = list(
            Phase.objects.filter(challenge__slug__in=slugs)
            .select_related("challenge", "dataset")
            .order_by("challenge__slug", "slug")
        )
    except DatabaseError as exc:
        print(f"(no database: {exc.__class__.__name__}; using generated challenges)")
        return []
    targets = []
    private = Path(settings.SCANBENCH_PRIVATE_ROOT)
    for phase in phases:
        try:
            data = phase_data(phase, folder / f"{phase.challenge.slug}-{phase.slug}")
        except ValueError as exc:
            print(f"skipped {phase}: {exc}")
            continue
        test = Case.objects.filter(dataset=phase.dataset, split="test")
        labels = {c: int(v) for c, v in test.values_list("case_id", "label") if v.strip()}
        masks = {c: private / f for c, f in test.values_list("case_id", "label_file") if f}
        targets.append(Target(f"{phase.challenge.slug}/{phase.slug}", data, labels, masks))
    return targets


def _score(target: Target, path: Path) -> float:
    import zipfile

    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from challenges.baselines.data import load_mask

    if target.masks:
        dice = []
        with zipfile.ZipFile(path) as zf:
            names = {n.split(".", 1)[0]: n for n in zf.namelist()}
            for case_id, ref_path in target.masks.items():
                out = Path(tempfile.mkdtemp()) / names[case_id]
                out.write_bytes(zf.read(names[case_id]))
                pred, ref = load_mask(out) > 0, load_mask(ref_path) > 0
                total = pred.sum() + ref.sum()
                dice.append(1.0 if total == 0 else 2 * (pred & ref).sum() / total)
        return float(np.mean(dice))
    frame = pd.read_csv(path, dtype={"case_id": str}).set_index("case_id")
    y = np.array([target.labels[c] for c in frame.index])
    if "score" in frame.columns:
        return float(roc_auc_score(y, frame["score"].to_numpy()))
    return float(roc_auc_score(y, frame.to_numpy(), multi_class="ovr"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--challenge", action="append", help="challenge slug (default: demos)")
    parser.add_argument("--families", default="", help="e.g. trivial,classical (default: all)")
    parser.add_argument("--generated", action="store_true", help="only the generated challenges")
    args = parser.parse_args()
    import django

    django.setup()
    from challenges.baselines.registry import baselines_for

    families = {f for f in args.families.split(",") if f}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        targets = [] if args.generated else _from_database(args.challenge or list(DEMOS), folder)
        if not targets:
            targets = _generated(folder / "generated")
        print(f"{'phase':<56} {'baseline':<44} {'family':<9} {'train s':>8} {'score':>7}")
        for target in targets:
            data = target.data
            metric = "Dice" if target.masks else "AUC"
            for baseline in baselines_for(data):
                if families and baseline.family not in families:
                    continue
                own = replace(data, work_dir=data.work_dir / baseline.name.replace(" ", "_"))
                own.work_dir.mkdir(parents=True, exist_ok=True)
                started = time.perf_counter()
                try:
                    path = baseline.run(own)
                except Exception as exc:  # one failing baseline does not stop the table
                    print(f"{target.title:<56} {baseline.name:<44} failed: {exc}")
                    continue
                seconds = time.perf_counter() - started
                score = _score(target, path)
                print(
                    f"{target.title:<56} {baseline.name:<44} {baseline.family:<9} "
                    f"{seconds:>8.2f} {score:>7.3f} {metric}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
