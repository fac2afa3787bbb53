"""Write the three imaging demo bundles from real images fetched from the package registry.

No image is committed: each source is a package on PyPI that ships real images, fetched once
into a cache folder (``var/cache/demo-data``; a second run downloads nothing) and turned into a
bundle under ``var/demo-bundles`` (docs/data.md, "Imaging demos"):

* ``chest-xray-pneumonia``: classification, the 16 paediatric chest X-rays of the validation
  folder in the ``pneumonia-model-package==0.3.0`` wheel (Kermany et al. 2018, CC BY 4.0),
  greyscale PNG 128x128, labelled from the file name (NORMAL -> 0, bacteria -> 1); the case ids
  are anonymous (the file names would give the label away);
* ``nuclei-segmentation``: 2-D segmentation, the fluorescence image of nuclei and its instance
  mask in the ``stardist==0.9.2`` wheel (2018 Data Science Bowl), cut into 16 tiles of 128x128,
  binary mask = instance > 0, PNG (pixels counted as 1 mm);
* ``lesion-segmentation-3d``: 3-D segmentation, the 5 NRRD cases with lesion masks in the
  ``pyradiomics==3.0.1`` source archive (its wheels hold no data), anisotropic spacing kept.

The wheels are fetched with ``python -m pip download --no-deps`` (the current interpreter's pip);
the pyradiomics source archive directly from the configured package index (PEP 691 JSON, the
sha256 checked), because ``pip download`` of an sdist builds its metadata, which needs build
tools this project does not install. A source that cannot be fetched is skipped with one line
``skipped <slug>: <reason>``; the others are still written. Every bundle is written to a
temporary folder and renamed into place, and the same sources always give the same bytes (so a
re-import reuses the stored copy).

Usage: python scripts/make_imaging_demos.py [--out DIR] [--cache DIR] [--only SLUG ...]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "var" / "demo-bundles"
DEFAULT_CACHE = ROOT / "var" / "cache" / "demo-data"

PNEUMONIA = "pneumonia-model-package==0.3.0"
STARDIST = "stardist==0.9.2"
PYRADIOMICS = ("pyradiomics", "3.0.1")
XRAY_SIZE = 128
TILE = 128
LESION_CASES = ("brain1", "brain2", "breast1", "lung1", "lung2")
#: Stratified by kind of scan: each kind in the test split (brain MR, lung CT) has one case of
#: its kind in train; the one breast MR crop is in train. (A seeded draw put breast1 in test with
#: no breast scan to learn from, and the public part of the board was that one case.)
LESION_SPLIT = {
    "brain1": "test", "brain2": "train", "breast1": "train", "lung1": "train", "lung2": "test",
}  # fmt: skip


class FetchError(RuntimeError):
    """A source could not be had (registry unreachable, file missing): the demo is skipped."""


# --- fetching ---------------------------------------------------------------------------------


def _cached(cache: Path, pattern: str) -> Path | None:
    found = sorted(p for p in cache.glob(pattern) if p.is_file())
    return found[0] if found else None


def fetch_wheel(spec: str, cache: Path) -> Path:
    """The wheel of ``name==version`` in ``cache``, downloaded with pip unless already there."""
    name, version = spec.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    if (hit := _cached(cache, pattern)) is not None:
        return hit
    cache.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    # Short timeouts: offline (packets dropped), set-up must not hang for pip's default minutes.
    cmd += ["--quiet", "--disable-pip-version-check", "--timeout", "30", "--retries", "2"]
    cmd += ["-d", str(cache), spec]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"pip download {spec} failed: {exc}") from exc
    if (hit := _cached(cache, pattern)) is None:
        lines = [ln for ln in done.stderr.splitlines() if ln.strip() and "is ignored" not in ln]
        reason = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise FetchError(f"pip download {spec} failed: {reason}")
    return hit


def _index_url() -> str:
    """The package index pip uses: PIP_INDEX_URL, else pip's configured index-url, else PyPI."""
    if url := os.environ.get("PIP_INDEX_URL"):
        return url
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".index-url"):
            return value.strip().strip("'\"")
    return "https://pypi.org/simple"


def fetch_sdist(name: str, version: str, cache: Path) -> Path:
    """The source archive ``name-version.tar.gz`` in ``cache``, fetched from the index's
    PEP 691 JSON page (its sha256 checked) unless already there."""
    target = cache / f"{name}-{version}.tar.gz"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    page = _index_url().rstrip("/") + f"/{name}/"
    if not page.startswith(("https://", "http://")):
        raise FetchError(f"{target.name}: the index {page} is not an HTTP(S) URL")
    tmp = target.with_name(target.name + ".part")
    try:
        accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
        req = urllib.request.Request(page, headers=accept)  # noqa: S310 (http(s) only)
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (http(s) only)
            listing = json.load(resp)
        entry = next(f for f in listing["files"] if f["filename"] == target.name)
        url = urllib.parse.urljoin(page, entry["url"])
        if not url.startswith(("https://", "http://")):
            raise FetchError(f"{target.name}: not an HTTP(S) URL: {url}")
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=30) as resp, tmp.open("wb") as fh:  # noqa: S310
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                fh.write(chunk)
    except StopIteration:
        raise FetchError(f"{target.name}: not listed on {page}") from None
    except (OSError, ValueError, KeyError) as exc:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"fetching {target.name} from {page} failed: {exc}") from exc
    want = entry.get("hashes", {}).get("sha256")
    if want and digest.hexdigest() != want:
        tmp.unlink(missing_ok=True)
        raise FetchError(f"{target.name}: sha256 {digest.hexdigest()} differs from the index's")
    tmp.replace(target)
    return target


# --- writing helpers --------------------------------------------------------------------------


def _png(path: Path, array: Any) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode="L").save(path, format="PNG")


def _csv(path: Path, header: str, rows: list[str]) -> None:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")


def _seeded_split(ids: list[str], n_test: int, seed: int) -> dict[str, str]:
    order = np.random.default_rng(seed).permutation(len(ids))
    test = {ids[i] for i in order[:n_test]}
    return {i: "test" if i in test else "train" for i in ids}


def _write_kit(bundle: Path, readme: str, script: str) -> None:
    kit = bundle / "starting-kit"
    kit.mkdir(parents=True, exist_ok=True)
    (kit / "README.md").write_text(textwrap.dedent(readme).lstrip(), encoding="utf-8")
    (kit / "train_and_predict.py").write_text(textwrap.dedent(script).lstrip(), encoding="utf-8")


def _finish(tmp: Path, bundle: Path) -> Path:
    """Move the finished bundle into place (the old one is removed only now)."""
    if bundle.exists():
        shutil.rmtree(bundle)
    tmp.replace(bundle)
    return bundle


def _fresh(out: Path, slug: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{slug}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp, out / slug


# --- chest X-rays -----------------------------------------------------------------------------


def write_chest_xray(out: Path, cache: Path) -> Path:
    from PIL import Image

    wheel = fetch_wheel(PNEUMONIA, cache)
    prefix = "pneumonia_model_package/datasets/pneumonia-data/val/"
    with zipfile.ZipFile(wheel) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(prefix) and n.endswith(".jpeg"))
        raw = {n: zf.read(n) for n in names}
    if len(names) != 16:
        raise FetchError(f"{wheel.name}: expected 16 X-rays in {prefix}, found {len(names)}")
    labels = {}
    for n in names:
        stem = n.rsplit("/", 1)[1]
        if stem.startswith("NORMAL"):
            labels[n] = 0
        elif "bacteria" in stem:
            labels[n] = 1
        else:
            raise FetchError(f"{stem}: neither NORMAL nor bacteria")
    # Anonymous case ids in a seeded order: the file names would give the label away.
    order = np.random.default_rng(2018).permutation(len(names))
    case_of = {names[j]: f"cxr{k + 1:02d}" for k, j in enumerate(order)}
    # Stratified split: 3 test cases of each class, 5 train cases of each.
    split: dict[str, str] = {}
    for label in (0, 1):
        group = sorted(case_of[n] for n in names if labels[n] == label)
        split.update(_seeded_split(group, 3, seed=12 + label))
    tmp, bundle = _fresh(out, "chest-xray-pneumonia")
    for n in names:
        with Image.open(io.BytesIO(raw[n])) as im:
            grey = im.convert("L").resize((XRAY_SIZE, XRAY_SIZE), Image.Resampling.LANCZOS)
            _png(tmp / "images" / f"{case_of[n]}.png", np.asarray(grey))
    rows = sorted(f"{case_of[n]},{split[case_of[n]]},{labels[n]}" for n in names)
    _csv(tmp / "cases.csv", "case_id,split,label", rows)
    (tmp / "challenge.yaml").write_text(XRAY_YAML, encoding="utf-8")
    _write_kit(tmp, XRAY_KIT_README, XRAY_KIT_SCRIPT)
    return _finish(tmp, bundle)


XRAY_YAML = """\
slug: chest-xray-pneumonia
title: "Chest X-rays: normal or pneumonia? (16 real images)"
summary: >
  Binary image classification on 16 real paediatric chest X-rays. Input: one greyscale image
  of 128x128 pixels per case (PNG). Output: the probability that the image shows pneumonia
  (class 1). Balanced classes: 8 normal, 8 pneumonia (bacterial); split stratified with a fixed
  seed into 10 train cases (5 + 5) and 6 test cases (3 + 3). Scored by the area under the ROC
  curve (primary), sensitivity and specificity at the threshold 0.5, accuracy and balanced
  accuracy. A demo of an image challenge: far too few cases to learn much.
task: classification
classes: [normal, pneumonia]
input: >
  One greyscale PNG of 128x128 pixels per case, inputs/<case_id>.png (the X-ray resized from
  about 1000-1800 pixels, aspect ratio not kept; 8 bits, no pixel spacing).
output: "A CSV with columns case_id,score: the probability of class 1 (pneumonia)."
licence: CC BY 4.0
attribution: >
  D. S. Kermany et al., Identifying Medical Diagnoses and Treatable Diseases by Image-Based Deep
  Learning, Cell 172(5), 2018; data: Labeled Optical Coherence Tomography (OCT) and Chest X-Ray
  Images for Classification, Mendeley Data, v2 (CC BY 4.0). These are the 16 images of the
  validation folder, as shipped in the PyPI package pneumonia-model-package 0.3.0; converted to
  greyscale, resized to 128x128 and renamed by Scanbench.
published: true
dataset:
  cases: cases.csv
  inputs: images
  public_fraction: 0.5
  seed: 2018
starting_kit: starting-kit
phases:
  - slug: open
    title: Open phase
    submission_kind: predictions
    opens: 2026-01-01T00:00:00Z
    daily_limit: 10
    total_limit: 200
    metrics: [auc_roc, sensitivity, specificity, accuracy, balanced_accuracy]
    primary_metric: auc_roc
"""

XRAY_KIT_README = """\
    # Starting kit: chest X-rays

    A baseline that writes a valid submission from two files of the challenge's **Data** tab:

    * `train.zip`: `inputs/<case_id>.png` (greyscale, 128x128) and `labels.csv` (`case_id,label`,
      0 normal, 1 pneumonia);
    * `test-inputs.zip`: `inputs/<case_id>.png` of the test cases.

    Unzip this kit next to them and run (Python 3.10+, numpy and Pillow):

    ```
    python starting-kit/train_and_predict.py --train train.zip --test test-inputs.zip \\
        --out predictions.csv
    ```

    `predictions.csv` holds `case_id,score` for every test case (the probability of pneumonia);
    upload it on the **Submit** tab. The model: a 16-bin intensity histogram per image, fed to a
    logistic regression (plain numpy, L2-regularised). It is a baseline to beat.

    To score yourself before submitting, hold some train cases out: `--holdout 4` trains on the
    others, writes predictions for the 4 held-out cases to `--out` and their labels to
    `holdout-reference.csv`; then score with this repository's evaluator:

    ```
    python starting-kit/train_and_predict.py --train train.zip --holdout 4 --out holdout.csv
    python -m evaluator score --task classification --reference holdout-reference.csv \\
        --predictions holdout.csv
    ```
"""

XRAY_KIT_SCRIPT = '''\
    """Baseline for the chest X-ray demo: 16-bin intensity histogram + logistic regression."""

    from __future__ import annotations

    import argparse
    import csv
    import io
    import zipfile

    import numpy as np
    from PIL import Image


    def read_zip(path):
        """{case_id: image array} and, for the train zip, {case_id: label}."""
        images, labels = {}, {}
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.startswith("inputs/") and name.endswith(".png"):
                    case_id = name[len("inputs/") : -len(".png")]
                    with Image.open(io.BytesIO(zf.read(name))) as im:
                        images[case_id] = np.asarray(im.convert("L"), dtype=np.float64)
                elif name == "labels.csv":
                    rows = csv.DictReader(io.StringIO(zf.read(name).decode()))
                    labels = {r["case_id"]: int(r["label"]) for r in rows}
        return images, labels


    def features(image):
        hist, _ = np.histogram(image, bins=16, range=(0, 256))
        return hist / hist.sum()


    def fit(x, y, l2=0.1, steps=3000, lr=0.5):
        mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
        z = (x - mean) / std
        w, b = np.zeros(z.shape[1]), 0.0
        for _ in range(steps):
            p = 1 / (1 + np.exp(-(z @ w + b)))
            w -= lr * (z.T @ (p - y) / len(y) + l2 * w)
            b -= lr * float(np.mean(p - y))
        return mean, std, w, b


    def predict(model, x):
        mean, std, w, b = model
        return 1 / (1 + np.exp(-(((x - mean) / std) @ w + b)))


    def main():
        ap = argparse.ArgumentParser(description=__doc__)
        ap.add_argument("--train", required=True, help="train.zip from the Data tab")
        ap.add_argument("--test", help="test-inputs.zip from the Data tab")
        ap.add_argument("--out", default="predictions.csv")
        ap.add_argument("--holdout", type=int, default=0, help="score on N held-out train cases")
        args = ap.parse_args()
        images, labels = read_zip(args.train)
        train_ids = sorted(labels)
        if args.holdout:
            rng = np.random.default_rng(0)
            held = set(rng.choice(train_ids, size=args.holdout, replace=False).tolist())
            test_images = {i: images[i] for i in sorted(held)}
            train_ids = [i for i in train_ids if i not in held]
            with open("holdout-reference.csv", "w", newline="") as fh:
                fh.write("case_id,label\\n" + "".join(f"{i},{labels[i]}\\n" for i in sorted(held)))
        elif args.test:
            test_images, _ = read_zip(args.test)
        else:
            ap.error("give --test, or --holdout N")
        x = np.array([features(images[i]) for i in train_ids])
        y = np.array([labels[i] for i in train_ids], dtype=np.float64)
        model = fit(x, y)
        test_ids = sorted(test_images)
        scores = predict(model, np.array([features(test_images[i]) for i in test_ids]))
        with open(args.out, "w", newline="") as fh:
            rows = "".join(f"{i},{s:.6f}\\n" for i, s in zip(test_ids, scores))
            fh.write("case_id,score\\n" + rows)
        print(f"wrote {args.out}: {len(test_ids)} cases")


    if __name__ == "__main__":
        main()
'''


# --- nuclei -----------------------------------------------------------------------------------


def write_nuclei(out: Path, cache: Path) -> Path:
    from PIL import Image

    wheel = fetch_wheel(STARDIST, cache)
    with zipfile.ZipFile(wheel) as zf:
        try:
            img_raw = zf.read("stardist/data/images/img2d.tif")
            mask_raw = zf.read("stardist/data/images/mask2d.tif")
        except KeyError as exc:
            raise FetchError(f"{wheel.name}: {exc}") from exc
    with Image.open(io.BytesIO(img_raw)) as im:
        image = np.asarray(im).astype(np.int64)
    with Image.open(io.BytesIO(mask_raw)) as im:
        instances = np.asarray(im).astype(np.int64)
    if image.shape != (4 * TILE, 4 * TILE) or instances.shape != image.shape:
        raise FetchError(f"{wheel.name}: unexpected shapes {image.shape}, {instances.shape}")
    if image.max() > 255:  # 16-bit TIFF: scale to 8 bits (the shipped one already fits)
        image = image * 255 // image.max()
    binary = (instances > 0).astype(np.uint8)
    tmp, bundle = _fresh(out, "nuclei-segmentation")
    ids = []
    for r in range(4):
        for c in range(4):
            case_id = f"tile_r{r}c{c}"
            ids.append(case_id)
            window = (slice(r * TILE, (r + 1) * TILE), slice(c * TILE, (c + 1) * TILE))
            _png(tmp / "images" / f"{case_id}.png", image[window])
            _png(tmp / "labels" / f"{case_id}.png", binary[window])
    split = _seeded_split(ids, 6, seed=2018)
    _csv(tmp / "cases.csv", "case_id,split", [f"{i},{split[i]}" for i in ids])
    fraction = float(binary.mean())
    (tmp / "challenge.yaml").write_text(
        NUCLEI_YAML.replace("{fraction}", f"{100 * fraction:.0f}"), encoding="utf-8"
    )
    _write_kit(tmp, SEG_KIT_README.replace("{demo}", "nuclei"), SEG_KIT_SCRIPT)
    return _finish(tmp, bundle)


NUCLEI_YAML = """\
slug: nuclei-segmentation
title: "Cell nuclei: segment every nucleus (2-D fluorescence)"
summary: >
  Binary 2-D segmentation. Input: one greyscale fluorescence microscopy tile of 128x128 pixels
  (PNG). Output: a mask of the same size, 1 on nuclei and 0 elsewhere. The 16 tiles are cut
  from one real 512x512 image of the 2018 Data Science Bowl with 125 annotated nuclei; split
  with a fixed seed into 10 train and 6 test tiles. About {fraction} % of the pixels are nuclei.
  Pixels have no physical size here: 1 pixel counts as 1 mm for the distances. Scored by Dice
  (primary; overlap, higher is better), the 95th-percentile Hausdorff distance (HD95, in
  pixels, lower is better) and the normalised surface Dice (NSD, 2-pixel tolerance).
task: segmentation
classes: [nucleus]
input: >
  One PNG per case, inputs/<case_id>.png: 128x128 pixels, 8-bit greyscale (fluorescence
  intensity), no spacing (1 pixel = 1 mm).
output: >
  One PNG mask per test case named <case_id>.png (128x128, 8-bit, 0 background, 1 nucleus), in a
  zip or a folder.
licence: CC0 1.0 (BBBC038, Broad Bioimage Benchmark Collection); StarDist code BSD-3-Clause
attribution: >
  2018 Data Science Bowl, BBBC038v1 (J. C. Caicedo et al., Nature Methods 16, 2019; Broad
  Bioimage Benchmark Collection, CC0). The image and its instance mask as shipped with StarDist
  0.9.2 (U. Schmidt, M. Weigert et al., MICCAI 2018; BSD-3-Clause) on PyPI; tiled and binarised
  by Scanbench.
published: true
dataset:
  cases: cases.csv
  inputs: images
  labels: labels
  public_fraction: 0.5
  seed: 2018
starting_kit: starting-kit
phases:
  - slug: open
    title: Open phase
    submission_kind: predictions
    opens: 2026-01-01T00:00:00Z
    daily_limit: 10
    total_limit: 200
    metrics: [dice, hd95, nsd]
    primary_metric: dice
    nsd_tolerance_mm: 2.0
"""


# --- 3-D lesions ------------------------------------------------------------------------------


def write_lesions(out: Path, cache: Path) -> Path:
    import nrrd

    archive = fetch_sdist(*PYRADIOMICS, cache)
    wanted = {
        f"pyradiomics-3.0.1/data/{c}_{k}.nrrd" for c in LESION_CASES for k in ("image", "label")
    }
    found: dict[str, bytes] = {}
    with tarfile.open(archive, "r:gz") as tf:
        for member in tf:
            if member.name in wanted and member.isfile():
                fh = tf.extractfile(member)
                if fh is not None:
                    found[member.name] = fh.read()
    if missing := sorted(wanted - set(found)):
        raise FetchError(f"{archive.name}: missing {', '.join(missing)}")
    tmp, bundle = _fresh(out, "lesion-segmentation-3d")
    fractions = []
    for case in LESION_CASES:
        image_raw = found[f"pyradiomics-3.0.1/data/{case}_image.nrrd"]
        (tmp / "images").mkdir(exist_ok=True)
        (tmp / "images" / f"{case}.nrrd").write_bytes(image_raw)  # the original bytes
        src = tmp / f".{case}_label.nrrd"
        src.write_bytes(found[f"pyradiomics-3.0.1/data/{case}_label.nrrd"])
        label, header = nrrd.read(str(src))
        src.unlink()
        binary = (np.asarray(label) > 0).astype(np.uint8)
        fractions.append(float(binary.mean()))
        keep = {
            k: header[k]
            for k in ("space", "space directions", "space origin", "kinds")
            if k in header
        }
        (tmp / "labels").mkdir(exist_ok=True)
        buffer = io.BytesIO()
        nrrd.write(buffer, binary, {**keep, "encoding": "gzip"})
        # pynrrd stamps the writing time in a comment: drop it, so the bytes are reproducible
        body = re.sub(rb"\n# on [^\n]*\(GMT\)\.\n", b"\n", buffer.getvalue(), count=1)
        (tmp / "labels" / f"{case}.nrrd").write_bytes(body)
    _csv(tmp / "cases.csv", "case_id,split", [f"{c},{LESION_SPLIT[c]}" for c in LESION_CASES])
    text = LESION_YAML.replace("{fmin}", f"{100 * min(fractions):.3f}").replace(
        "{fmax}", f"{100 * max(fractions):.2f}"
    )
    (tmp / "challenge.yaml").write_text(text, encoding="utf-8")
    _write_kit(tmp, SEG_KIT_README.replace("{demo}", "3-D lesions"), SEG_KIT_SCRIPT)
    return _finish(tmp, bundle)


LESION_YAML = """\
slug: lesion-segmentation-3d
title: "Lesions in 3-D scans: segment the lesion (MR and CT, 5 real cases)"
summary: >
  Binary 3-D segmentation. Input: one 3-D scan per case (NRRD): two brain MR (256x256x23-25
  voxels of 0.78x0.78x6.5 mm), one breast MR crop (45x120x21, 0.66x0.66x2.1 mm) and two lung CT
  (512x512x48-61, about 0.6x0.6x5 mm). Output: a mask on the same voxel grid, 1 inside the
  lesion, 0 elsewhere. The lesions are small: {fmin}-{fmax} % of the voxels. Split by kind of
  scan into 3 train cases (brain2, breast1, lung1) and 2 test cases (brain1, lung2), so that
  each test scan has one scan of its kind to learn from. Scored by Dice (primary; overlap,
  higher is better), the 95th-percentile Hausdorff distance (HD95, in mm with the anisotropic
  spacing, lower is better) and the normalised surface Dice (NSD, 2 mm tolerance).
task: segmentation
classes: [lesion]
input: >
  One NRRD per case, inputs/<case_id>.nrrd: a 3-D int16 volume (MR intensity or CT Hounsfield
  units) with its spacing, origin and axis directions in the header (anisotropic: slices 2.1-6.5
  mm apart).
output: >
  One mask per test case named <case_id>.nrrd (or .nii.gz) on the input's grid (same shape,
  spacing and directions), 0 background, 1 lesion; in a zip or a folder.
licence: BSD-3-Clause (pyradiomics repository, test data)
attribution: >
  The test data of PyRadiomics (J. J. M. van Griethuysen et al., Computational Radiomics System
  to Decode the Radiographic Phenotype, Cancer Research 77(21), 2017; github.com/AIM-Harvard/
  pyradiomics, BSD-3-Clause), from its source archive pyradiomics-3.0.1.tar.gz on PyPI; masks
  binarised (label > 0) by Scanbench.
published: true
dataset:
  cases: cases.csv
  inputs: images
  labels: labels
  public_fraction: 0.5
  seed: 2020
starting_kit: starting-kit
phases:
  - slug: open
    title: Open phase
    submission_kind: predictions
    opens: 2026-01-01T00:00:00Z
    daily_limit: 10
    total_limit: 200
    metrics: [dice, hd95, nsd]
    primary_metric: dice
    nsd_tolerance_mm: 2.0
"""

SEG_KIT_README = """\
    # Starting kit: {demo}

    A baseline that writes a valid submission from two files of the challenge's **Data** tab:

    * `train.zip`: `inputs/<case_id>.<ext>` (the images) and `labels/<case_id>.<ext>` (the masks);
    * `test-inputs.zip`: `inputs/<case_id>.<ext>` of the test cases.

    Unzip this kit next to them and run (Python 3.10+, numpy and Pillow; pynrrd for NRRD, scipy
    to keep the largest 3-D component):

    ```
    python starting-kit/train_and_predict.py --train train.zip --test test-inputs.zip \\
        --out predictions.zip
    ```

    `predictions.zip` holds one mask per test case, `<case_id>.png` or `<case_id>.nrrd`, on the
    input's grid; upload it on the **Submit** tab. The model: each image is standardised (its
    own mean and standard deviation), and the intensity band [low, high] that gives the best
    mean Dice on the train cases is learnt from histograms; a 3-D mask keeps only its largest
    connected component. A baseline to beat, not to win with.

    To score yourself before submitting, hold some train cases out: `--holdout 1` trains on the
    others, writes the held-out predictions to `--out` and their masks to `holdout-reference/`;
    then score with this repository's evaluator:

    ```
    python starting-kit/train_and_predict.py --train train.zip --holdout 1 --out holdout.zip
    python -m evaluator score --task segmentation --reference holdout-reference \\
        --predictions holdout.zip
    ```
"""

SEG_KIT_SCRIPT = '''\
    """Baseline for the segmentation demos: a learnt band of standardised intensities."""

    from __future__ import annotations

    import argparse
    import io
    import os
    import shutil
    import tempfile
    import zipfile

    import numpy as np

    BINS = np.linspace(-5, 10, 301)  # standardised intensities


    def read_image(name, raw):
        """(array, NRRD header or None) of a PNG or NRRD file's bytes."""
        if name.endswith(".png"):
            from PIL import Image

            with Image.open(io.BytesIO(raw)) as im:
                return np.asarray(im), None
        import nrrd

        with tempfile.NamedTemporaryFile(suffix=".nrrd", delete=False) as fh:
            fh.write(raw)
        try:
            data, header = nrrd.read(fh.name)
        finally:
            os.unlink(fh.name)
        return np.asarray(data), header


    def write_mask(zf, case_id, mask, header):
        buffer = io.BytesIO()
        if header is None:
            from PIL import Image

            Image.fromarray(mask.astype(np.uint8), mode="L").save(buffer, format="PNG")
            zf.writestr(f"{case_id}.png", buffer.getvalue())
            return
        import nrrd

        keep = {k: header[k] for k in ("space", "space directions", "space origin") if k in header}
        nrrd.write(buffer, mask.astype(np.uint8), {**keep, "encoding": "gzip"})
        zf.writestr(f"{case_id}.nrrd", buffer.getvalue())


    def read_zip(path):
        """{case_id: (image, header)} and {case_id: (mask bytes name, mask array)}."""
        images, masks = {}, {}
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                folder, _, base = name.partition("/")
                if not base or folder not in ("inputs", "labels"):
                    continue
                case_id = base.split(".", 1)[0]
                array, header = read_image(base, zf.read(name))
                if folder == "inputs":
                    images[case_id] = (array, header)
                else:
                    masks[case_id] = (base, zf.read(name), array)
        return images, masks


    def standardise(image):
        x = image.astype(np.float64)
        return (x - x.mean()) / (x.std() + 1e-6)


    def fit(images, masks):
        """The band [BINS[i], BINS[j]) of standardised intensity with the best mean train Dice,
        from per-case histograms (every band at once via cumulative sums)."""
        total = 0.0
        for case_id, (_, _, mask) in masks.items():
            z = standardise(images[case_id][0])
            fg = mask > 0
            all_h = np.cumsum(np.histogram(z, BINS)[0])
            fg_h = np.cumsum(np.histogram(z[fg], BINS)[0])
            all_band = all_h[None, :] - np.concatenate([[0], all_h[:-1]])[:, None]
            fg_band = fg_h[None, :] - np.concatenate([[0], fg_h[:-1]])[:, None]
            dice = 2 * fg_band / np.maximum(all_band + fg.sum(), 1)
            total = total + np.where(all_band >= 0, dice, 0)
        i, j = np.unravel_index(np.argmax(np.triu(total)), total.shape)
        return float(BINS[i]), float(BINS[j + 1])


    def predict(band, image):
        z = standardise(image)
        mask = (z >= band[0]) & (z < band[1])
        if mask.ndim == 3 and mask.any():
            try:
                from scipy import ndimage
            except ImportError:
                return mask
            labelled, n = ndimage.label(mask)
            sizes = np.bincount(labelled.ravel())[1:]
            mask = labelled == (int(np.argmax(sizes)) + 1)
        return mask


    def main():
        ap = argparse.ArgumentParser(description=__doc__)
        ap.add_argument("--train", required=True, help="train.zip from the Data tab")
        ap.add_argument("--test", help="test-inputs.zip from the Data tab")
        ap.add_argument("--out", default="predictions.zip")
        ap.add_argument("--holdout", type=int, default=0, help="score on N held-out train cases")
        args = ap.parse_args()
        images, masks = read_zip(args.train)
        train_ids = sorted(masks)
        if args.holdout:
            rng = np.random.default_rng(0)
            held = sorted(rng.choice(train_ids, size=args.holdout, replace=False).tolist())
            test_images = {i: images[i] for i in held}
            train_ids = [i for i in train_ids if i not in held]
            shutil.rmtree("holdout-reference", ignore_errors=True)
            os.makedirs("holdout-reference")
            for i in held:
                name, raw, _ = masks[i]
                with open(os.path.join("holdout-reference", name), "wb") as fh:
                    fh.write(raw)
        elif args.test:
            test_images, _ = read_zip(args.test)
        else:
            ap.error("give --test, or --holdout N")
        band = fit(images, {i: masks[i] for i in train_ids})
        print(f"learnt band of standardised intensity: [{band[0]:.2f}, {band[1]:.2f})")
        with zipfile.ZipFile(args.out, "w", zipfile.ZIP_DEFLATED) as zf:
            for case_id, (image, header) in sorted(test_images.items()):
                write_mask(zf, case_id, predict(band, image), header)
        print(f"wrote {args.out}: {len(test_images)} masks")


    if __name__ == "__main__":
        main()
'''


# --- main -------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[[Path, Path], Path]] = {
    "chest-xray-pneumonia": write_chest_xray,
    "nuclei-segmentation": write_nuclei,
    "lesion-segmentation-3d": write_lesions,
}


def build_all(out: Path, cache: Path, only: list[str] | None = None) -> dict[str, Path | str]:
    """Write each demo bundle; per slug its folder, or the reason it was skipped (a string)."""
    results: dict[str, Path | str] = {}
    for slug, build in BUILDERS.items():
        if only and slug not in only:
            continue
        try:
            results[slug] = build(out, cache)
        except FetchError as exc:
            results[slug] = str(exc)
        finally:
            for leftover in out.glob(f".{slug}.tmp-*"):
                shutil.rmtree(leftover, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--only", nargs="*", choices=sorted(BUILDERS))
    args = parser.parse_args()
    for slug, result in build_all(args.out, args.cache, args.only).items():
        if isinstance(result, Path):
            print(f"built {slug} {result}")
        else:
            print(f"skipped {slug}: {result}")


if __name__ == "__main__":
    main()
