"""The CNN baselines (challenges/baselines/cnn.py) on small generated data: each writes a
predictions file the evaluator scores, beats the trivial prediction, and exports TorchScript.

Training lengths are scaled down (``cnn.EPOCH_SCALE``) so the module stays well under 3 minutes
on 2 busy cores.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from challenges.baselines import cnn  # noqa: E402
from challenges.baselines.registry import PhaseData, TrainCase  # noqa: E402
from evaluator.scoring import ScoreOptions, score  # noqa: E402
from evaluator.synthetic import ellipsoid_mask, write_nifti  # noqa: E402

FAST = ScoreOptions(bootstrap=0, workers=1)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")


@pytest.fixture(autouse=True)
def _small_and_isolated(
    monkeypatch: pytest.MonkeyPatch, settings: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    monkeypatch.setattr(cnn, "EPOCH_SCALE", 0.25)
    monkeypatch.delenv(cnn.WEIGHTS_ENV, raising=False)
    settings.VAR_DIR = tmp_path_factory.getbasetemp() / "var"  # type: ignore[attr-defined]
    yield
    cnn.set_pretrained_weights(None)


# --- generated data -----------------------------------------------------------------------------


def _png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    Image.fromarray(np.asarray(arr, dtype=np.uint8)).save(path)
    return path


def classification_data(
    folder: Path, n_train: int = 40, n_test: int = 20
) -> tuple[PhaseData, Path]:
    """64x64 noisy PNGs; class 1 has a bright blob somewhere. Returns data, reference CSV."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    cases: list[TrainCase] = []
    labels: list[int] = []
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(n_train + n_test):
        label = i % 2
        img = rng.normal(80, 20, (64, 64))
        if label:
            cy, cx = rng.uniform(14, 50, 2)
            r = rng.uniform(5, 9)
            img += 90 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2)))
        cid = f"c{i:03d}"
        path = _png(folder / f"{cid}.png", np.clip(img, 0, 255))
        cases.append(TrainCase(cid, path, None, label if i < n_train else None, None))
        labels.append(label)
    ref = folder / "reference.csv"
    with ref.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["case_id", "label"])
        w.writerows(
            [c.case_id, lab] for c, lab in zip(cases[n_train:], labels[n_train:], strict=True)
        )
    work = folder / "work"
    work.mkdir()
    data = PhaseData(
        "classification", "image2d", ["no", "yes"], cases[:n_train], cases[n_train:], 0, work
    )
    return data, ref


def segmentation2d_data(folder: Path, n: int = 12, n_test: int = 4) -> tuple[PhaseData, Path]:
    """64x64 PNGs with one bright ellipse; masks PNG 0/1. Returns data, reference folder."""
    rng = np.random.default_rng(3)
    inputs, masks, ref = folder / "inputs", folder / "masks", folder / "reference"
    for d in (inputs, masks, ref):
        d.mkdir(parents=True, exist_ok=True)
    train, test = [], []
    for i in range(n):
        m = ellipsoid_mask(
            (64, 64), rng.uniform(20, 44, 2).tolist(), rng.uniform(5, 12, 2).tolist()
        )
        img = rng.normal(60, 15, (64, 64)) + 100 * m
        cid = f"s{i:03d}"
        path = _png(inputs / f"{cid}.png", np.clip(img, 0, 255))
        if i < n - n_test:
            train.append(TrainCase(cid, path, None, None, _png(masks / f"{cid}.png", m)))
        else:
            _png(ref / f"{cid}.png", m)
            test.append(TrainCase(cid, path, None, None, None))
    work = folder / "work"
    work.mkdir()
    return PhaseData("segmentation", "image2d", [], train, test, 0, work), ref


def _write_nrrd(path: Path, arr: np.ndarray, spacing: tuple[float, ...]) -> Path:
    import nrrd

    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag(spacing),
        "space origin": np.array([-12.5, 30.0, 4.0]),
        "encoding": "gzip",
    }
    nrrd.write(str(path), arr, header)
    return path


def segmentation3d_data(folder: Path, n: int = 4, n_test: int = 2) -> tuple[PhaseData, Path]:
    """32x32x8 volumes (NIfTI and NRRD alternately) with one bright ellipsoid; the reference
    masks in the input's format and header. Returns data, reference folder."""
    rng = np.random.default_rng(5)
    inputs, masks, ref = folder / "inputs", folder / "masks", folder / "reference"
    for d in (inputs, masks, ref):
        d.mkdir(parents=True, exist_ok=True)
    spacing = (0.8, 0.8, 2.5)
    train, test = [], []
    for i in range(n):
        shape = (32, 32, 8)
        m = ellipsoid_mask(shape, [*rng.uniform(12, 20, 2), 4], [*rng.uniform(4, 8, 2), 2.5])
        img = (rng.normal(-50, 30, shape) + 250 * m).astype(np.int16)
        cid = f"v{i:03d}"
        ext = ".nii.gz" if i % 2 == 0 else ".nrrd"
        write = write_nifti if ext == ".nii.gz" else _write_nrrd
        path = write(inputs / f"{cid}{ext}", img, spacing)
        if i < n - n_test:
            train.append(TrainCase(cid, path, None, None, write(masks / f"{cid}{ext}", m, spacing)))
        else:
            write(ref / f"{cid}{ext}", m, spacing)
            test.append(TrainCase(cid, path, None, None, None))
    work = folder / "work"
    work.mkdir()
    return PhaseData("segmentation", "image3d", [], train, test, 0, work), ref


def _constant_csv(data: PhaseData, path: Path) -> Path:
    path.write_text("case_id,score\n" + "".join(f"{c.case_id},0.5\n" for c in data.test))
    return path


def _empty_zip(data: PhaseData, path: Path) -> Path:
    from challenges.baselines.data import load_image, mask_bytes_like

    with zipfile.ZipFile(path, "w") as zf:
        for c in data.test:
            assert c.input_path is not None
            suffix, body = mask_bytes_like(c.input_path, np.zeros(load_image(c.input_path).shape))
            zf.writestr(f"{c.case_id}{suffix}", body)
    return path


# --- tests --------------------------------------------------------------------------------------


def _names() -> dict[str, object]:
    from challenges.baselines.registry import registered

    return {b.name: b for b in registered() if b.family == "cnn"}


def test_registered_and_applies(tmp_path: Path) -> None:
    cnn_baselines = _names()
    assert set(cnn_baselines) == {cnn.LENET, cnn.RESNET, cnn.PRETRAINED, cnn.UNET2D, cnn.UNET25D}
    cls, _ = classification_data(tmp_path / "c", n_train=4, n_test=2)
    seg, _ = segmentation2d_data(tmp_path / "s", n=3, n_test=1)
    applies = {n: b.applies(cls) for n, b in cnn_baselines.items()}  # type: ignore[attr-defined]
    assert applies == {cnn.LENET: True, cnn.RESNET: True, cnn.PRETRAINED: True,
                       cnn.UNET2D: False, cnn.UNET25D: False}  # fmt: skip
    assert cnn_baselines[cnn.UNET2D].applies(seg)  # type: ignore[attr-defined]
    assert not cnn_baselines[cnn.UNET25D].applies(seg)  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("run", [cnn.run_lenet, cnn.run_resnet, cnn.run_pretrained])
def test_classifiers_beat_chance(tmp_path: Path, run: object) -> None:
    data, ref = classification_data(tmp_path)
    pred = run(data)  # type: ignore[operator]
    assert pred.parent == data.work_dir and pred.suffix == ".csv"
    auc = score("classification", ref, pred, options=FAST).aggregates["auc_roc"]
    trivial = score("classification", ref, _constant_csv(data, tmp_path / "t.csv"), options=FAST)
    assert trivial.aggregates["auc_roc"] == pytest.approx(0.5)
    assert auc is not None and auc > 0.75, auc
    exported = list(data.work_dir.glob("*.pt"))
    assert len(exported) == 1
    module = torch.jit.load(str(exported[0]))
    assert module(torch.zeros(1, 1, 64, 64)).shape == (1, 2)


@pytest.mark.slow
def test_classifier_is_deterministic_and_multiclass(tmp_path: Path) -> None:
    data, _ = classification_data(tmp_path / "a", n_train=12, n_test=4)
    labels = [
        TrainCase(c.case_id, c.input_path, None, i % 3, None) for i, c in enumerate(data.train)
    ]
    three = PhaseData(
        "classification", "image2d", ["a", "b", "c"], labels, data.test, 0, data.work_dir
    )
    first = cnn.run_lenet(three).read_text()
    assert first.splitlines()[0] == "case_id,class_0,class_1,class_2"
    assert cnn.run_lenet(three).read_text() == first


@pytest.mark.slow
def test_pretrained_cache_and_organizer_weights(tmp_path: Path) -> None:
    from django.conf import settings

    first = cnn.pretrained_backbone()
    cached = list((Path(settings.VAR_DIR) / "cache" / "pretrained").glob("*.pt"))
    assert len(cached) == 1
    again = cnn.pretrained_backbone()  # from the cache: identical tensors
    assert all(torch.equal(first[k], again[k]) for k in first)

    # an organizer's weights: a state dict of the Small ResNet (here: random ones)
    theirs = cnn.SmallResNet(5).state_dict()
    path = tmp_path / "theirs.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in theirs.items()}}, path)
    cnn.set_pretrained_weights(path)
    got = cnn.pretrained_backbone()
    assert all(torch.equal(got[k], theirs[k]) for k in got)
    # ... or a TorchScript export of it
    cnn.set_pretrained_weights(None)
    scripted = tmp_path / "scripted.pt"
    cnn._export(cnn.SmallResNet(2), torch.zeros(1, 1, 64, 64), scripted)
    assert set(cnn.load_weights(scripted)) == set(cnn.SmallResNet(2).state_dict())
    with pytest.raises(ValueError, match="do not fit"):
        torch.save(cnn.LeNet(2).state_dict(), tmp_path / "lenet.pt")
        cnn.set_pretrained_weights(tmp_path / "lenet.pt")


@pytest.mark.slow
def test_unet2d_beats_empty_masks(tmp_path: Path) -> None:
    data, ref = segmentation2d_data(tmp_path)
    pred = cnn.run_unet2d(data)
    with zipfile.ZipFile(pred) as zf:
        assert sorted(zf.namelist()) == sorted(f"{c.case_id}.png" for c in data.test)
    dice = score("segmentation", ref, pred, options=FAST).aggregates["dice"]
    empty = score("segmentation", ref, _empty_zip(data, tmp_path / "e.zip"), options=FAST)
    assert dice is not None and dice > (empty.aggregates["dice"] or 0.0) + 0.3, dice
    module = torch.jit.load(str(data.work_dir / f"{cnn.slug(cnn.UNET2D)}.pt"))
    assert module(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.slow
def test_unet25d_beats_empty_masks_on_the_input_grid(tmp_path: Path) -> None:
    data, ref = segmentation3d_data(tmp_path)
    pred = cnn.run_unet25d(data)
    with zipfile.ZipFile(pred) as zf:
        assert sorted(zf.namelist()) == ["v002.nii.gz", "v003.nrrd"]
    report = score("segmentation", ref, pred, options=FAST)  # checks shape, spacing, origin
    empty = score("segmentation", ref, _empty_zip(data, tmp_path / "e.zip"), options=FAST)
    dice = report.aggregates["dice"]
    assert dice is not None and dice > (empty.aggregates["dice"] or 0.0) + 0.3, dice


# --- model phases: the exported network, run by the model runner ------------------------------


def _run_runner(model: Path, spec: dict[str, object], cases: list[TrainCase], tmp: Path) -> Path:
    """The model runner of the sandbox (evaluator.runner), here on the host, on a folder that
    holds only the test inputs."""
    import shutil

    from evaluator.runner.__main__ import run as runner_run
    from evaluator.runner.inputspec import InputSpec

    inputs, outputs = tmp / "runner-in", tmp / "runner-out"
    inputs.mkdir()
    outputs.mkdir()
    for c in cases:
        assert c.input_path is not None
        shutil.copy(c.input_path, inputs / c.input_path.name)
    assert runner_run(model, "torchscript", InputSpec.from_dict(spec), inputs, outputs) == 0
    return outputs


@pytest.mark.slow
@pytest.mark.parametrize("activation", ["none", "softmax"])
def test_classifier_model_file_gives_its_predictions_through_the_runner(
    tmp_path: Path, activation: str
) -> None:
    data, _ = classification_data(tmp_path / "c", n_train=16, n_test=6)
    # the runner scales intensities (here min-max) and resamples to image_size (the images'
    # own 64x64); the exported model normalises per image as the baseline does, which undoes
    # any affine scaling, so the probabilities must be the baseline's own
    spec = {"image_size": [64, 64], "intensity": "minmax", "output": "class_scores",
            "class_names": ["no", "yes"], "activation": activation}  # fmt: skip
    data = PhaseData(**{**data.__dict__, "input_spec": spec})
    pred = cnn.run_lenet(data)
    assert (data.work_dir / cnn.MODEL_FILE).is_file()
    out = _run_runner(data.work_dir / cnn.MODEL_FILE, spec, data.test, tmp_path)
    with (out / "predictions.csv").open() as fh:
        rows = {r["case_id"]: float(r["yes"]) for r in csv.DictReader(fh)}
    with pred.open() as fh:
        own = {r["case_id"]: float(r["score"]) for r in csv.DictReader(fh)}
    assert set(rows) == set(own)
    for case_id, p in own.items():
        assert rows[case_id] == pytest.approx(p, abs=1e-4), case_id


@pytest.mark.slow
def test_unet2d_model_file_gives_its_masks_through_the_runner(tmp_path: Path) -> None:
    from PIL import Image

    data, _ = segmentation2d_data(tmp_path)
    spec = {"image_size": [64, 64], "intensity": "zscore", "output": "mask"}
    data = PhaseData(**{**data.__dict__, "input_spec": spec})
    pred = cnn.run_unet2d(data)
    out = _run_runner(data.work_dir / cnn.MODEL_FILE, spec, data.test, tmp_path)
    with zipfile.ZipFile(pred) as zf:
        for c in data.test:
            own = np.asarray(Image.open(zf.open(f"{c.case_id}.png")))
            runner = np.asarray(Image.open(out / f"{c.case_id}.png"))
            assert own.shape == runner.shape
            assert own.any()
            # the same network on the same normalised pixels: at most a few boundary pixels
            # differ, where a logit is within float error of 0
            assert (own != runner).mean() < 0.002, c.case_id


def test_no_model_file_on_a_predictions_phase_or_a_3d_spec(tmp_path: Path) -> None:
    data, _ = classification_data(tmp_path / "c", n_train=4, n_test=2)
    model = cnn.LeNet(2)
    assert cnn._deploy(data, model, output="class_scores", name="x") is None
    three_d = PhaseData(**{**data.__dict__, "input_spec": {"image_size": [8, 8, 8]}})
    assert cnn._deploy(three_d, model, output="class_scores", name="x") is None
    masks = PhaseData(**{**data.__dict__, "input_spec": {"image_size": [8, 8], "output": "mask"}})
    assert cnn._deploy(masks, model, output="class_scores", name="x") is None
    assert not (data.work_dir / cnn.MODEL_FILE).exists()
