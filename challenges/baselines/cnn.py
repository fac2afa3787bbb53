"""CNN baselines (PyTorch): LeNet-style CNN, Small ResNet, ResNet pretrained then fine-tuned
(classification of 2-D images), U-Net 2-D and U-Net 2.5-D (segmentation). docs/baselines_cnn.md.

Imported by the registry only where torch imports. Every baseline trains on the phase's train
split with fixed seeds, ``torch.set_num_threads(2)``, on CUDA when available (CPU otherwise), and
writes its predictions plus a TorchScript export of the trained model (``<slug>.pt``) into
``PhaseData.work_dir``. Training length is a fixed number of optimisation steps (sized so that
each baseline trains within about a minute on 2 CPU cores for ~100 images), multiplied by
:data:`EPOCH_SCALE` (tests set it small).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from torch import Tensor, nn

from challenges.baselines.data import load_image, load_mask, n_classes, write_masks, write_scores
from challenges.baselines.registry import Baseline, PhaseData, register

logger = logging.getLogger(__name__)

__all__ = [
    "EPOCH_SCALE",
    "TRAIN_SECONDS",
    "WEIGHTS_ENV",
    "LeNet",
    "SmallResNet",
    "UNet",
    "load_weights",
    "pretrained_backbone",
    "set_pretrained_weights",
    "slug",
    "synthetic_pretraining_set",
    "threads",
]

#: multiplies every training length (steps, pretraining epochs); tests set it to ~0.1-0.3
EPOCH_SCALE: float = float(os.environ.get("SCANBENCH_BASELINE_EPOCH_SCALE", "1.0"))
#: weights an organizer brings for "ResNet, pretrained then fine-tuned" (state dict or TorchScript)
WEIGHTS_ENV = "SCANBENCH_BASELINE_WEIGHTS"
#: seconds the last run of each baseline spent training (pretraining excluded), by name
TRAIN_SECONDS: dict[str, float] = {}

IMAGE_SIZE = 64
THREADS = 2
_PAD = 4  # random-crop padding and the five-crop TTA margin, in pixels
PRETRAIN_VERSION = 1  # bump when the synthetic set or the architecture changes (cache key)
PRETRAIN_IMAGES = 2000
PRETRAIN_CLASSES = 4
PRETRAIN_EPOCHS = 4

_weights_override: Path | None = None

LENET = "LeNet-style CNN"
RESNET = "Small ResNet"
PRETRAINED = "ResNet, pretrained then fine-tuned"
UNET2D = "U-Net 2-D"
UNET25D = "U-Net 2.5-D"


def slug(name: str) -> str:
    """File-name form of a baseline name: ``"U-Net 2-D"`` -> ``"u-net-2-d"``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _steps(base: int) -> int:
    return max(1, round(base * EPOCH_SCALE))


_threads_chosen: int | None = None


def threads() -> int:
    """Threads for torch: ``$SCANBENCH_BASELINE_THREADS``, else :data:`THREADS` (2), or 1 when
    the machine is oversubscribed (1-minute load average at or above its cores): two OpenMP
    threads that spin-wait for a busy core train several times slower than one thread. Chosen
    once per process, so that repeated runs compute alike."""
    global _threads_chosen
    if _threads_chosen is None:
        env = os.environ.get("SCANBENCH_BASELINE_THREADS", "").strip()
        if env.isdigit() and int(env) > 0:
            _threads_chosen = int(env)
        else:
            cores = len(os.sched_getaffinity(0))
            busy = os.getloadavg()[0] >= cores
            _threads_chosen = 1 if busy or cores < THREADS else THREADS
    return _threads_chosen


def _setup(seed: int) -> torch.device:
    torch.set_num_threads(threads())
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # for libraries that draw from numpy's global state
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _normalise(a: NDArray[Any]) -> NDArray[np.float32]:
    """Per-image (per-volume) intensity normalisation: clip to the 0.5-99.5 percentiles, then
    zero mean and unit variance, so CT (HU) and MR (arbitrary units) look alike."""
    a = np.asarray(a, dtype=np.float32)
    lo, hi = np.percentile(a, [0.5, 99.5])
    a = np.clip(a, lo, hi)
    std = float(a.std())
    return ((a - float(a.mean())) / (std if std > 1e-6 else 1.0)).astype(np.float32)


def _export(model: nn.Module, example: Tensor, path: Path) -> Path:
    """A traced TorchScript copy of ``model`` (on the CPU, eval mode) at ``path``."""
    model = model.to("cpu").eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.trace is deprecated in favour of export
        traced = torch.jit.trace(model, example.cpu())  # type: ignore[no-untyped-call]
        traced.save(str(path))
    return path


#: the file a CNN baseline leaves in its work folder on a model phase: its network wrapped for
#: the phase's input specification, which the platform submits as a model file
MODEL_FILE = "model.pt"


def _normalise_t(x: Tensor) -> Tensor:
    """:func:`_normalise` in torch, for one (1, 1, ...) input inside an exported model: the same
    percentiles (linear interpolation), clipping and population standard deviation."""
    flat = x.reshape(-1)
    q = torch.quantile(flat, torch.tensor([0.005, 0.995], dtype=flat.dtype))
    x = torch.clamp(x, q[0], q[1])
    std = x.std(correction=0)
    return (x - x.mean()) / torch.where(std > 1e-6, std, torch.ones_like(std))


class _DeployedClassifier(nn.Module):
    """A classifier as the model runner calls it: (1, C, H, W) after the phase's intensity
    scaling in, (1, classes) out. It does what the baseline does to an image itself: channels
    averaged to grey, the per-image normalisation (which undoes any affine scaling the runner
    applied), resizing to 64x64 and the five-crop average of softmax probabilities; ``log``
    returns log-probabilities for a phase whose runner applies a softmax."""

    def __init__(self, net: nn.Module, log: bool) -> None:
        super().__init__()
        self.net, self.log = net, log

    def forward(self, x: Tensor) -> Tensor:
        x = _normalise_t(x.float().mean(1, keepdim=True))
        x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True)
        padded = F.pad(x, (_PAD,) * 4)
        total = torch.zeros(1)
        for i, j in ((0, 0), (0, 2 * _PAD), (2 * _PAD, 0), (2 * _PAD, 2 * _PAD), (_PAD, _PAD)):
            crop = padded[:, :, i : i + IMAGE_SIZE, j : j + IMAGE_SIZE]
            total = total + F.softmax(self.net(crop), 1)
        probs = total / 5
        return torch.log(probs) if self.log else probs


class _DeployedUNet(nn.Module):
    """A 2-D U-Net as the model runner calls it: (1, C, H, W) in, (1, 1, H, W) foreground
    logits out (the runner keeps > 0, or > 0.5 after a sigmoid: the same voxels)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        x = _normalise_t(x.float().mean(1, keepdim=True))
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = _ceil4(h) - h, _ceil4(w) - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        logits: Tensor = self.net(x)[..., :h, :w]
        return logits


def _deploy(data: PhaseData, model: nn.Module, *, output: str, name: str) -> Path | None:
    """On a model phase whose input specification this network can serve (2-D images,
    ``output`` the spec's output kind), write :data:`MODEL_FILE`: the network wrapped in its
    own pre- and post-processing and traced for the spec's input shape. None elsewhere (a
    predictions phase, a 3-D spec, another output kind), with the reason logged."""
    spec = data.input_spec
    if not spec:
        return None
    size = [int(v) for v in spec.get("image_size", ())]
    channels = int(spec.get("channels", 1))
    if len(size) != 2 or spec.get("output", "class_scores") != output:
        logger.info("%s: no model file: the phase's input spec %s is not %s on 2-D", name,
                    spec, output)  # fmt: skip
        return None
    model = model.to("cpu").eval()
    if output == "class_scores":
        wrapped: nn.Module = _DeployedClassifier(model, log=spec.get("activation") == "softmax")
    else:
        wrapped = _DeployedUNet(model)
    return _export(wrapped, torch.rand(1, channels, *size), data.work_dir / MODEL_FILE)


# --- models -------------------------------------------------------------------------------------


class LeNet(nn.Module):
    """Two 5x5 convolutions with max-pooling, then two fully connected layers (64x64 input)."""

    def __init__(self, n_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 5, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.fc1 = nn.Linear(32 * (IMAGE_SIZE // 4) ** 2, 128)
        self.fc2 = nn.Linear(128, n_classes)
        self.drop = nn.Dropout(0.3)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.drop(F.relu(self.fc1(torch.flatten(x, 1))))
        out: Tensor = self.fc2(x)
        return out


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class SmallResNet(nn.Module):
    """A stem and four residual blocks (16-16-32-64-64 channels, three stride-2 stages), global
    average pooling and one linear head. ``features`` is what pretraining transfers."""

    def __init__(self, n_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            _Residual(16, 16, 1),
            _Residual(16, 32, 2),
            _Residual(32, 64, 2),
            _Residual(64, 64, 2),
        )
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(torch.flatten(F.adaptive_avg_pool2d(self.features(x), 1), 1))
        return out


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions, each with group normalisation (per sample, so training on
    patches and predicting on whole slices normalise alike, which batch statistics gathered on
    mostly empty patches did not) and a ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A 3-level 2-D U-Net (16-32-64 channels); one output channel of foreground logits.
    Height and width must be multiples of 4."""

    def __init__(self, in_channels: int = 1, base: int = 16) -> None:
        super().__init__()
        self.enc1 = _double_conv(in_channels, base)
        self.enc2 = _double_conv(base, base * 2)
        self.bottom = _double_conv(base * 2, base * 4)
        self.up2 = nn.ConvTranspose2d(base * 4, base * 2, 2, stride=2)
        self.dec2 = _double_conv(base * 4, base * 2)
        self.up1 = nn.ConvTranspose2d(base * 2, base, 2, stride=2)
        self.dec1 = _double_conv(base * 2, base)
        self.out = nn.Conv2d(base, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottom(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        logits: Tensor = self.out(d1)
        return logits


# --- classification -----------------------------------------------------------------------------


def _to_2d(a: NDArray[Any]) -> NDArray[Any]:
    """A greyscale 2-D array from a 2-D image (channels last/first and singleton axes averaged
    or dropped)."""
    a = np.squeeze(a)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        a = a[..., :3].mean(axis=-1)
    elif a.ndim == 3 and a.shape[0] in (3, 4):
        a = a[:3].mean(axis=0)
    while a.ndim > 2:
        a = a[..., a.shape[-1] // 2]
    if a.ndim != 2:
        raise ValueError(f"not a 2-D image (shape {a.shape})")
    return a


def _images_64(paths: Sequence[Path | None]) -> Tensor:
    """(N, 1, 64, 64) float32: each image greyscale, normalised, resized (area/bilinear)."""
    out = []
    for p in paths:
        if p is None:
            raise ValueError("an image case without an input file")
        t = torch.from_numpy(_normalise(_to_2d(load_image(p))))[None, None]
        out.append(F.interpolate(t, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True))
    return torch.cat(out)


def _augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Random flips, rotation (+-10 degrees), random crop with 4-px zero padding (a shift) and
    Gaussian noise; drawn on the CPU from ``gen`` so runs repeat exactly."""
    b = x.shape[0]
    flip_w = torch.rand(b, generator=gen) < 0.5
    flip_h = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip_w[:, None, None, None], x.flip(-1), x)
    x = torch.where(flip_h[:, None, None, None], x.flip(-2), x)
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(10.0)
    shift = torch.randint(-_PAD, _PAD + 1, (b, 2), generator=gen).float() * 2 / x.shape[-1]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle), -torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle), torch.cos(angle)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x + 0.1 * torch.randn(x.shape, generator=gen)


def _five_crop_probs(model: nn.Module, x: Tensor, device: torch.device) -> NDArray[np.float64]:
    """Softmax probabilities averaged over five crops (four corners and the centre) of the
    image padded by 4 px."""
    model.eval()
    padded = F.pad(x, (_PAD,) * 4)
    offsets = [(0, 0), (0, 2 * _PAD), (2 * _PAD, 0), (2 * _PAD, 2 * _PAD), (_PAD, _PAD)]
    probs = []
    with torch.inference_mode():
        for i, j in offsets:
            crop = padded[:, :, i : i + IMAGE_SIZE, j : j + IMAGE_SIZE]
            probs.append(
                torch.cat([F.softmax(model(c.to(device)), 1).cpu() for c in torch.split(crop, 64)])
            )
    return torch.stack(probs).mean(0).double().numpy()


def _train_classifier(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    seed: int,
    device: torch.device,
    lr: float = 1e-3,
    batch: int = 16,
) -> nn.Module:
    """Adam with a cosine schedule for ``steps`` mini-batches of augmented images; the loss is
    cross-entropy weighted by inverse class frequency."""
    gen = torch.Generator().manual_seed(seed)
    model = model.to(device).train()
    counts = torch.bincount(y, minlength=int(y.max()) + 1).float().clamp(min=1)
    weight = (counts.sum() / (len(counts) * counts)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    n = x.shape[0]
    order = torch.randperm(n, generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + min(batch, n) > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + batch]
        pos += len(idx)
        xb = _augment(x[idx], gen).to(device)
        loss = F.cross_entropy(model(xb), y[idx].to(device), weight=weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
    return model.eval()


def _classification_data(data: PhaseData) -> tuple[Tensor, Tensor, Tensor, int]:
    k = n_classes(data)
    x = _images_64([c.input_path for c in data.train])
    y = torch.tensor([int(c.label) for c in data.train if c.label is not None], dtype=torch.long)
    if len(y) != x.shape[0] or int(y.min()) < 0 or int(y.max()) >= k:
        raise ValueError("every train case needs a label in 0..n_classes-1")
    return x, y, _images_64([c.input_path for c in data.test]), k


def _run_classifier(
    data: PhaseData, name: str, make: Callable[[int], nn.Module], base_steps: int, lr: float
) -> Path:
    device = _setup(data.seed)
    x, y, x_test, k = _classification_data(data)
    started = time.perf_counter()
    model = _train_classifier(
        make(k), x, y, steps=_steps(base_steps), seed=data.seed, device=device, lr=lr
    )
    TRAIN_SECONDS[name] = time.perf_counter() - started
    return _finish_classifier(data, name, model, x_test, device)


def _finish_classifier(
    data: PhaseData, name: str, model: nn.Module, x_test: Tensor, device: torch.device
) -> Path:
    logger.info("%s: trained in %.1f s", name, TRAIN_SECONDS.get(name, 0.0))
    probs = _five_crop_probs(model, x_test, device)
    path = write_scores(data, probs, slug(name))
    _export(model, x_test[:1], data.work_dir / f"{slug(name)}.pt")
    _deploy(data, model, output="class_scores", name=name)
    return path


def _applies_classification(data: PhaseData) -> bool:
    return (
        data.task == "classification"
        and data.input_kind == "image2d"
        and len(data.train) >= 2
        and all(c.input_path is not None and c.label is not None for c in data.train)
        and all(c.input_path is not None for c in data.test)
    )


def run_lenet(data: PhaseData) -> Path:
    return _run_classifier(data, LENET, LeNet, base_steps=400, lr=1e-3)


def run_resnet(data: PhaseData) -> Path:
    return _run_classifier(data, RESNET, SmallResNet, base_steps=300, lr=2e-3)


# --- pretraining --------------------------------------------------------------------------------


def synthetic_pretraining_set(
    n: int = PRETRAIN_IMAGES, seed: int = 0
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """``n`` deterministic 64x64 images and their proxy-task label: how many bright blobs
    (0-3, of random size, contrast and shape) lie on a random smooth texture (low-frequency
    noise of random scale, a gradient, stripes for some). Normalised like real inputs."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32)
    images = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    labels = rng.integers(0, PRETRAIN_CLASSES, n)
    for i in range(n):
        img = gaussian_filter(rng.normal(0, 1, (IMAGE_SIZE, IMAGE_SIZE)), rng.uniform(1, 6)).astype(
            np.float32
        )
        img /= img.std() + 1e-6
        img += rng.uniform(-1, 1) * (xx * np.cos(a := rng.uniform(0, np.pi)) + yy * np.sin(a)) / 32
        if rng.random() < 0.3:
            img += 0.8 * np.sin(xx * rng.uniform(0.3, 1.2) + yy * rng.uniform(-1, 1))
        for _ in range(int(labels[i])):
            cy, cx = rng.uniform(10, 54, 2)
            ry, rx = rng.uniform(3, 9, 2)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
            img += rng.uniform(2, 4) * np.exp(-(inside**2))
        img += rng.normal(0, rng.uniform(0.05, 0.4), img.shape)
        images[i] = _normalise(img)
    return images, labels.astype(np.int64)


def _cache_dir() -> Path:
    try:
        from django.conf import settings

        var = Path(settings.VAR_DIR)
    except Exception:  # outside Django (a script): the same default as config/settings.py
        var = Path(os.environ.get("SCANBENCH_VAR_DIR", Path(__file__).resolve().parents[2] / "var"))
    return var / "cache" / "pretrained"


def set_pretrained_weights(path: Path | None) -> None:
    """Use an organizer's weights (``manage.py add_baselines --weights PATH``) instead of the
    synthetic pretraining for "ResNet, pretrained then fine-tuned"; ``None`` restores the
    default. The file is checked now (a ValueError when it does not fit the Small ResNet)."""
    global _weights_override
    if path is not None:
        _backbone_from(load_weights(Path(path)))
    _weights_override = None if path is None else Path(path)


def load_weights(path: Path) -> dict[str, Tensor]:
    """A state dict from a TorchScript archive, a ``torch.save``d state dict (also wrapped as
    ``{"state_dict": ...}`` or ``{"model": ...}``), loaded with ``weights_only=True``; keys
    lose a ``module.`` prefix (DataParallel). Never unpickles arbitrary objects."""
    path = Path(path)
    state: Any
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.load is deprecated (still supported)
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        state = module.state_dict()
    except Exception:  # not TorchScript: a plain state dict
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path.name}: not a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def _backbone_from(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The ``features.*`` entries of ``state`` that fit :class:`SmallResNet` (names and shapes);
    a ValueError when fewer than all of them match."""
    wanted = {
        k: v.shape for k, v in SmallResNet(2).state_dict().items() if k.startswith("features.")
    }
    got = {k: v for k, v in state.items() if k in wanted and v.shape == wanted[k]}
    if len(got) < len(wanted):
        missing = sorted(set(wanted) - set(got))
        raise ValueError(
            f"the weights do not fit the Small ResNet backbone ({len(missing)} of {len(wanted)} "
            f"tensors missing or of another shape, e.g. {missing[0]})"
        )
    return got


def _weights_source() -> Path | None:
    if _weights_override is not None:
        return _weights_override
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    return Path(env) if env else None


def pretrained_backbone(seed: int = 0) -> dict[str, Tensor]:
    """The Small ResNet backbone weights fine-tuning starts from: an organizer's weights when
    given (:func:`set_pretrained_weights` or ``$SCANBENCH_BASELINE_WEIGHTS``), otherwise the
    backbone trained once on :func:`synthetic_pretraining_set` and cached under
    ``VAR_DIR/cache/pretrained/<hash>.pt`` (the hash covers the set, the schedule and the
    architecture, so a change retrains)."""
    source = _weights_source()
    if source is not None:
        return _backbone_from(load_weights(source))
    epochs = max(1, round(PRETRAIN_EPOCHS * EPOCH_SCALE))
    n = PRETRAIN_IMAGES if EPOCH_SCALE >= 1 else max(400, round(PRETRAIN_IMAGES * EPOCH_SCALE))
    key = json.dumps(
        {"v": PRETRAIN_VERSION, "n": n, "epochs": epochs, "seed": seed, "torch": "2"},
        sort_keys=True,
    )
    path = _cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        try:
            return _backbone_from(load_weights(path))
        except (ValueError, RuntimeError, OSError) as exc:  # a corrupt cache: train again
            logger.warning("pretrained cache %s unusable (%s); retraining", path.name, exc)
    device = _setup(seed)
    images, labels = synthetic_pretraining_set(n, seed)
    started = time.perf_counter()
    model = _train_classifier(
        SmallResNet(PRETRAIN_CLASSES),
        torch.from_numpy(images)[:, None],
        torch.from_numpy(labels),
        steps=epochs * math.ceil(n / 32),
        seed=seed,
        device=device,
        lr=2e-3,
        batch=32,
    )
    logger.info("pretrained the Small ResNet in %.1f s", time.perf_counter() - started)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(state, str(tmp))
    os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    return _backbone_from(state)


def run_pretrained(data: PhaseData) -> Path:
    backbone = pretrained_backbone()
    device = _setup(data.seed)
    x, y, x_test, k = _classification_data(data)
    net = SmallResNet(k)
    net.load_state_dict(backbone, strict=False)
    started = time.perf_counter()
    model = _train_classifier(net, x, y, steps=_steps(200), seed=data.seed, device=device, lr=5e-4)
    TRAIN_SECONDS[PRETRAINED] = time.perf_counter() - started
    return _finish_classifier(data, PRETRAINED, model, x_test, device)


# --- segmentation -------------------------------------------------------------------------------


def _foreground_label(masks: Sequence[NDArray[Any]]) -> int:
    """The label the binary U-Nets predict: the most frequent non-zero label of the train
    masks (1 almost always)."""
    counts = np.zeros(1, dtype=np.int64)
    for m in masks:
        c = np.bincount(np.clip(m, 0, None).ravel().astype(np.int64))
        if len(c) > len(counts):
            counts = np.pad(counts, (0, len(c) - len(counts)))
        counts[: len(c)] += c
    return int(np.argmax(counts[1:]) + 1) if len(counts) > 1 and counts[1:].any() else 1


def _ceil4(n: int) -> int:
    return int(math.ceil(n / 4) * 4)


class _PatchSampler:
    """Random square patches from a list of (C, H, W) images and (H, W) binary masks, with
    random flips and rot90; images smaller than the patch are zero-padded. Half of the patches
    are centred (give or take a quarter patch) on a foreground pixel of an image that has one:
    the image is drawn among those first, so that slices of a volume where most slices hold no
    lesion still give the network lesions to learn from."""

    def __init__(
        self, images: list[NDArray[np.float32]], masks: list[NDArray[np.float32]], size: int
    ) -> None:
        self.size = size
        self.images, self.masks = [], []
        for img, m in zip(images, masks, strict=True):
            ph, pw = max(0, size - img.shape[1]), max(0, size - img.shape[2])
            pads = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
            self.images.append(np.pad(img, ((0, 0), *pads)))
            self.masks.append(np.pad(m, pads))
        self.fg = [np.argwhere(m > 0) for m in self.masks]
        self.with_fg = [i for i, f in enumerate(self.fg) if len(f)]

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[Tensor, Tensor]:
        xs, ys = [], []
        s = self.size
        for _ in range(batch):
            centred = bool(self.with_fg) and rng.random() < 0.5
            if centred:
                i = self.with_fg[int(rng.integers(len(self.with_fg)))]
            else:
                i = int(rng.integers(len(self.images)))
            img, m = self.images[i], self.masks[i]
            h, w = m.shape
            if centred:
                cy, cx = self.fg[i][rng.integers(len(self.fg[i]))]
                y0 = int(np.clip(cy - s // 2 + rng.integers(-s // 4, s // 4 + 1), 0, h - s))
                x0 = int(np.clip(cx - s // 2 + rng.integers(-s // 4, s // 4 + 1), 0, w - s))
            else:
                y0, x0 = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
            pi, pm = img[:, y0 : y0 + s, x0 : x0 + s], m[y0 : y0 + s, x0 : x0 + s]
            if rng.random() < 0.5:
                pi, pm = pi[:, :, ::-1], pm[:, ::-1]
            if rng.random() < 0.5:
                pi, pm = pi[:, ::-1], pm[::-1]
            k = int(rng.integers(4))
            pi, pm = np.rot90(pi, k, axes=(1, 2)), np.rot90(pm, k)
            xs.append(np.ascontiguousarray(pi))
            ys.append(np.ascontiguousarray(pm))
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))[:, None]


def _dice_bce(logits: Tensor, target: Tensor, pos_weight: float = 1.0) -> Tensor:
    bce = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=torch.tensor(pos_weight, device=logits.device)
    )
    p = torch.sigmoid(logits)
    inter = (p * target).sum()
    dice = (2 * inter + 1) / (p.sum() + target.sum() + 1)
    return bce + (1 - dice)


def _train_unet(
    sampler: _PatchSampler,
    in_channels: int,
    *,
    steps: int,
    seed: int,
    device: torch.device,
    batch: int = 8,
    pos_weight: float = 1.0,
) -> UNet:
    """Adam with a cosine schedule on Dice + BCE (``pos_weight`` on the foreground term), then
    the batch-norm statistics gathered afresh, as an equal-weight average over 40 batches of
    the trained network: the running averages of training trail a network that is still
    changing, and on rare-foreground data they left it predicting nothing at all."""
    rng = np.random.default_rng(seed)
    model = UNet(in_channels).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    for _ in range(steps):
        xb, yb = sampler.sample(rng, batch)
        loss = _dice_bce(model(xb.to(device)), yb.to(device), pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative (equal-weight) average
    with torch.no_grad():
        for _ in range(40):
            model(sampler.sample(rng, batch)[0].to(device))
    return model.eval()


def _predict_logits(model: nn.Module, x: Tensor, device: torch.device) -> Tensor:
    """Logits for (N, C, H, W) inputs of any size (replicate-padded to a multiple of 4), in
    batches of 8, on the CPU."""
    h, w = x.shape[-2:]
    ph, pw = _ceil4(h) - h, _ceil4(w) - w
    out = []
    with torch.inference_mode():
        for chunk in torch.split(x, 8):
            padded = F.pad(chunk, (0, pw, 0, ph), mode="replicate") if ph or pw else chunk
            out.append(model(padded.to(device))[..., :h, :w].float().cpu())
    return torch.cat(out)


def _patch_size(shapes: Sequence[tuple[int, int]]) -> int:
    largest = max(max(s) for s in shapes)
    return min(128, _ceil4(largest))


def _applies_segmentation(kind: str) -> Callable[[PhaseData], bool]:
    def applies(data: PhaseData) -> bool:
        return (
            data.task == "segmentation"
            and data.input_kind == kind
            and len(data.train) >= 1
            and all(c.input_path is not None and c.mask_path is not None for c in data.train)
            and all(c.input_path is not None for c in data.test)
        )

    return applies


def _read(path: Path | None) -> NDArray[np.float32]:
    if path is None:
        raise ValueError("a case without an input file")
    return load_image(path)


def run_unet2d(data: PhaseData) -> Path:
    device = _setup(data.seed)
    images = [_normalise(_to_2d(_read(c.input_path)))[None] for c in data.train]
    labels = [np.asarray(load_mask(c.mask_path), dtype=np.int64) for c in data.train if c.mask_path]
    labels = [_to_2d(m).astype(np.int64) for m in labels]
    fg = _foreground_label(labels)
    masks = [(m == fg).astype(np.float32) for m in labels]
    size = _patch_size([i.shape[1:] for i in images])
    started = time.perf_counter()
    model = _train_unet(
        _PatchSampler(images, masks, size), 1, steps=_steps(250), seed=data.seed, device=device
    )
    TRAIN_SECONDS[UNET2D] = time.perf_counter() - started
    logger.info("%s: trained in %.1f s", UNET2D, TRAIN_SECONDS[UNET2D])
    out: dict[str, NDArray[Any]] = {}
    for case in data.test:
        raw = _read(case.input_path)
        img = _normalise(_to_2d(raw))
        logits = _predict_logits(model, torch.from_numpy(img)[None, None], device)[0, 0]
        mask = (logits.numpy() > 0).astype(np.uint8) * fg
        out[case.case_id] = mask.reshape(raw.shape) if mask.size == raw.size else mask
    path = write_masks(data, out, slug(UNET2D))
    _export(model, torch.zeros(1, 1, size, size), data.work_dir / f"{slug(UNET2D)}.pt")
    if fg == 1:  # the runner writes 1 for the foreground of a one-channel output
        _deploy(data, model, output="mask", name=UNET2D)
    return path


#: in-plane size the 2.5-D U-Net works at (larger slices are downsampled, logits upsampled back)
MAX_INPLANE = 256


class _Volume:
    """A volume as (slices, H, W) along its shortest axis, normalised and downsampled in-plane
    so that the larger in-plane side is at most :data:`MAX_INPLANE`."""

    def __init__(self, arr: NDArray[Any]) -> None:
        arr = np.squeeze(arr)
        if arr.ndim == 2:
            arr = arr[..., None]
        if arr.ndim != 3:
            raise ValueError(f"not a 3-D volume (shape {arr.shape})")
        self.shape = arr.shape
        self.axis = int(np.argmin(arr.shape[::-1]))  # the shortest axis, the last one on ties
        self.axis = arr.ndim - 1 - self.axis
        self.inplane = tuple(n for i, n in enumerate(arr.shape) if i != self.axis)
        f = max(1.0, max(self.inplane) / MAX_INPLANE)
        self.small = (max(4, round(self.inplane[0] / f)), max(4, round(self.inplane[1] / f)))

    def slices(self, arr: NDArray[Any], *, is_mask: bool = False) -> NDArray[np.float32]:
        s = np.moveaxis(np.squeeze(arr).reshape(self.shape), self.axis, 0).astype(np.float32)
        if self.small != self.inplane:
            t = torch.from_numpy(np.ascontiguousarray(s))[:, None]
            if is_mask:
                t = F.interpolate(t, size=self.small, mode="area") > 0.5
            else:
                t = F.interpolate(t, size=self.small, mode="bilinear", antialias=True)
            s = t[:, 0].float().numpy()
        return s

    def stacked(self, slices: NDArray[np.float32]) -> NDArray[np.float32]:
        """(S, 3, H, W): each slice with its two neighbours (clamped at the ends) as channels."""
        n = slices.shape[0]
        idx = np.clip(np.arange(n)[:, None] + np.array([-1, 0, 1])[None], 0, n - 1)
        return np.ascontiguousarray(slices[idx])

    def back(self, logits: Tensor) -> NDArray[np.uint8]:
        """(S, 1, h, w) logits to a binary mask on the volume's own grid."""
        if self.small != self.inplane:
            logits = F.interpolate(logits, size=self.inplane, mode="bilinear")
        m = (logits[:, 0] > 0).numpy().astype(np.uint8)
        return np.ascontiguousarray(np.moveaxis(m, 0, self.axis))


def run_unet25d(data: PhaseData) -> Path:
    device = _setup(data.seed)
    labels = []
    images: list[NDArray[np.float32]] = []
    masks_2d: list[NDArray[np.float32]] = []
    for case in data.train:
        raw = _read(case.input_path)
        vol = _Volume(raw)
        assert case.mask_path is not None
        labels.append(np.asarray(load_mask(case.mask_path)).reshape(vol.shape))
        stacked = vol.stacked(vol.slices(_normalise(raw)))
        images.extend(stacked)
    fg = _foreground_label(labels)
    for lab in labels:
        vol = _Volume(lab)
        masks_2d.extend(vol.slices((lab == fg).astype(np.float32), is_mask=True))
    # Small patches: lesions are a few hundred voxels of a volume, and a 64-pixel patch centred
    # on one is about 1-5 % lesion where a 128-pixel one is a quarter of that.
    size = min(64, _patch_size([i.shape[1:] for i in images]))
    started = time.perf_counter()
    model = _train_unet(
        _PatchSampler(images, masks_2d, size),
        3,
        steps=_steps(1000),
        seed=data.seed,
        device=device,
        pos_weight=5.0,
    )
    TRAIN_SECONDS[UNET25D] = time.perf_counter() - started
    logger.info("%s: trained in %.1f s", UNET25D, TRAIN_SECONDS[UNET25D])
    out: dict[str, NDArray[Any]] = {}
    for case in data.test:
        raw = _read(case.input_path)
        vol = _Volume(raw)
        x = torch.from_numpy(vol.stacked(vol.slices(_normalise(raw))))
        mask = vol.back(_predict_logits(model, x, device)) * np.uint8(fg)
        out[case.case_id] = mask.reshape(np.squeeze(raw).shape).reshape(raw.shape)
    path = write_masks(data, out, slug(UNET25D))
    _export(model, torch.zeros(1, 3, size, size), data.work_dir / f"{slug(UNET25D)}.pt")
    return path


register(
    Baseline(
        name=LENET,
        description="Two conv + two fully connected layers on 64x64 greyscale inputs, trained "
        "with flips, small rotations, noise and random crops; five-crop test-time averaging.",
        family="cnn",
        applies=_applies_classification,
        run=run_lenet,
    )
)
register(
    Baseline(
        name=RESNET,
        description="A small residual network (four residual blocks, 16-64 channels) trained "
        "from scratch on 64x64 inputs with the same augmentations and five-crop averaging.",
        family="cnn",
        applies=_applies_classification,
        run=run_resnet,
    )
)
register(
    Baseline(
        name=PRETRAINED,
        description="The small residual network pretrained on 2,000 synthetic blob/texture "
        "images (or an organizer's weights), then fine-tuned on the train split.",
        family="cnn",
        applies=_applies_classification,
        run=run_pretrained,
    )
)
register(
    Baseline(
        name=UNET2D,
        description="A 3-level 2-D U-Net (16 base channels) trained on patches with Dice + BCE, "
        "flips and rot90; one binary mask per test image.",
        family="cnn",
        applies=_applies_segmentation("image2d"),
        run=run_unet2d,
    )
)
register(
    Baseline(
        name=UNET25D,
        description="A 2-D U-Net applied slice by slice along the shortest axis with the two "
        "neighbouring slices as channels; per-volume intensity normalisation.",
        family="cnn",
        applies=_applies_segmentation("image3d"),
        run=run_unet25d,
    )
)
