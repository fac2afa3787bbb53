"""Classical baselines: six scikit-learn classifiers, on the feature table where the phase has
one (named as they always were: "kNN (k=5)", ...) and on hand-made image features otherwise
("kNN (k=5) on image features", ...).

Image features (:func:`image_features`), 75 per image, then standardised inside the pipelines:

* a 16-bin histogram of the intensities normalised to [0, 1] by the image's 1st and 99th
  percentiles (the fraction of voxels per bin);
* first-order statistics of the raw intensities: mean, standard deviation, minimum, maximum,
  percentiles 1, 10, 25, 50, 75, 90, 99, skewness, kurtosis, the histogram's entropy, and the
  fraction of voxels more than 2 standard deviations above the mean;
* GLCM texture (scikit-image ``graycomatrix``/``graycoprops`` on 32 grey levels, symmetric,
  normalised): contrast, homogeneity, energy and correlation at distances 1 and 2 and angles
  0, 45, 90 and 135 degrees (3-D: averaged over the three central slices of the last axis).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from challenges.baselines.data import load_image, write_scores
from challenges.baselines.registry import Baseline, PhaseData, register

GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 2)
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_PROPS = ("contrast", "homogeneity", "energy", "correlation")
#: images are subsampled to at most this many pixels per side for the texture features
GLCM_MAX_SIDE = 128


def classifiers(seed: int = 0) -> dict[str, Any]:
    """The six classifiers, by their leaderboard name on a feature table."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeClassifier

    return {
        "kNN (k=5)": make_pipeline(StandardScaler(), KNeighborsClassifier(5)),
        "SVM (RBF)": make_pipeline(
            StandardScaler(), CalibratedClassifierCV(SVC(random_state=seed), ensemble=False)
        ),
        "Decision tree": DecisionTreeClassifier(max_depth=5, random_state=seed),
        "Random forest": RandomForestClassifier(200, random_state=seed),
        "Naive Bayes": GaussianNB(),
        "Logistic regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    }


_DESCRIPTIONS = {
    "kNN (k=5)": "k-nearest neighbours (k=5, Euclidean) on standardised {what}.",
    "SVM (RBF)": "Support vector machine, RBF kernel, Platt-calibrated, on standardised {what}.",
    "Decision tree": "One decision tree (depth at most 5) on the {what}.",
    "Random forest": "Random forest of 200 trees on the {what}.",
    "Naive Bayes": "Gaussian naive Bayes on the {what}.",
    "Logistic regression": "L2-regularised logistic regression on standardised {what}.",
}


# --- image features ------------------------------------------------------------------------------


def _glcm(image2d: np.ndarray, lo: float, hi: float) -> np.ndarray:
    from skimage.feature import graycomatrix, graycoprops

    step = max(1, int(np.ceil(max(image2d.shape) / GLCM_MAX_SIDE)))
    small = image2d[::step, ::step]
    q = np.clip((small - lo) / max(hi - lo, 1e-12), 0, 1)
    levels = np.minimum((q * GLCM_LEVELS).astype(np.uint8), GLCM_LEVELS - 1)
    m = graycomatrix(  # type: ignore[no-untyped-call]
        levels, list(GLCM_DISTANCES), list(GLCM_ANGLES), levels=GLCM_LEVELS,
        symmetric=True, normed=True,
    )  # fmt: skip
    props = [graycoprops(m, p).ravel() for p in GLCM_PROPS]  # type: ignore[no-untyped-call]
    values = np.concatenate(props)
    out: np.ndarray = np.nan_to_num(values, nan=0.0)
    return out


def image_features(image: np.ndarray) -> np.ndarray:
    """75 hand-made features of one 2-D or 3-D image (module docstring)."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim > 3:
        x = x.reshape(x.shape[:3])
    flat = x.ravel()
    lo, hi = np.percentile(flat, [1, 99])
    norm = np.clip((flat - lo) / max(hi - lo, 1e-12), 0, 1)
    hist = np.histogram(norm, bins=16, range=(0.0, 1.0))[0] / max(flat.size, 1)
    mean, std = float(flat.mean()), float(flat.std())
    z = (flat - mean) / std if std > 0 else np.zeros_like(flat)
    nonzero = hist[hist > 0]
    stats = [
        mean, std, float(flat.min()), float(flat.max()),
        *np.percentile(flat, [1, 10, 25, 50, 75, 90, 99]),
        float((z**3).mean()), float((z**4).mean() - 3.0),
        float(-(nonzero * np.log2(nonzero)).sum()), float((z > 2).mean()),
    ]  # fmt: skip
    if x.ndim == 2:
        texture = _glcm(x, lo, hi)
    else:
        mid = x.shape[-1] // 2
        picks = sorted({max(0, mid - 1), mid, min(x.shape[-1] - 1, mid + 1)})
        texture = np.mean([_glcm(x[..., i], lo, hi) for i in picks], axis=0)
    return np.concatenate([hist, np.asarray(stats, dtype=np.float64), texture])


_CACHE: dict[tuple[str, ...], np.ndarray] = {}


def feature_matrix(cases: list[Any]) -> np.ndarray:
    """One row per case: the table row, or the image's features (kept for the next baseline
    of the same run: the six classifiers share one pass over the images)."""
    if all(c.features is not None for c in cases):
        return np.vstack([np.asarray(c.features, dtype=float) for c in cases])
    key = tuple(str(c.input_path) for c in cases)
    if key not in _CACHE:
        if len(_CACHE) >= 4:
            _CACHE.clear()
        _CACHE[key] = np.vstack([image_features(load_image(c.input_path)) for c in cases])
    return _CACHE[key]


def _fit_predict(name: str, data: PhaseData) -> np.ndarray:
    x_train, x_test = feature_matrix(data.train), feature_matrix(data.test)
    y = np.array([c.label for c in data.train], dtype=int)
    model = classifiers(data.seed)[name]
    model.fit(x_train, y)
    proba = model.predict_proba(x_test)
    k = max(len(data.classes), 2)
    scores = np.zeros((len(data.test), k))
    for j, cls in enumerate(model.classes_):  # a class absent from train keeps probability 0
        if 0 <= int(cls) < k:
            scores[:, int(cls)] = proba[:, j]
    return scores


def _runner(name: str, slug: str) -> Callable[[PhaseData], Path]:
    def run(data: PhaseData) -> Path:
        return write_scores(data, _fit_predict(name, data), slug)

    return run


def _has_two_classes(data: PhaseData) -> bool:
    return len({c.label for c in data.train}) >= 2


def _on_table(data: PhaseData) -> bool:
    return data.task == "classification" and data.input_kind == "table" and _has_two_classes(data)


def _on_images(data: PhaseData) -> bool:
    return (
        data.task == "classification"
        and data.input_kind in ("image2d", "image3d")
        and _has_two_classes(data)
    )


TABLE: list[Baseline] = []
IMAGE: list[Baseline] = []
for _name, _text in _DESCRIPTIONS.items():
    _slug = _name.lower().replace(" ", "-").replace("(", "").replace(")", "").replace("=", "")
    TABLE.append(
        register(
            Baseline(
                name=_name,
                description=_text.format(what="table's features"),
                family="classical",
                applies=_on_table,
                run=_runner(_name, _slug),
            )
        )
    )
    IMAGE.append(
        register(
            Baseline(
                name=f"{_name} on image features",
                description=_text.format(
                    what="image features (intensity histogram, statistics, GLCM texture)"
                ),
                family="classical",
                applies=_on_images,
                run=_runner(_name, f"{_slug}-image"),
            )
        )
    )
