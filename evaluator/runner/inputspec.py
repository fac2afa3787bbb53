"""The phase's declared input specification for model-file submissions (stdlib only)."""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Activation", "InputSpec", "Intensity", "OutputKind"]


class Intensity(enum.StrEnum):
    NONE = "none"  # values as stored
    MINMAX = "minmax"  # per case, to [0, 1]
    ZSCORE = "zscore"  # per case, mean 0 and standard deviation 1
    WINDOW = "window"  # clip to ``window`` then to [0, 1] (CT windows, e.g. (-1000, 400))
    SCALE = "scale"  # multiply by ``scale`` (e.g. 1/255 for 8-bit images)


class OutputKind(enum.StrEnum):
    CLASS_SCORES = "class_scores"  # the model returns (1, C): one CSV row per case
    MASK = "mask"  # the model returns (1, C, *image_size): one label mask per case


class Activation(enum.StrEnum):
    NONE = "none"
    SIGMOID = "sigmoid"
    SOFTMAX = "softmax"


@dataclass(frozen=True, slots=True)
class InputSpec:
    """How every case is turned into the model's input, and what its output means.

    The model receives a float32 array of shape ``(1, channels, *image_size)``: the case's image
    (NIfTI, PNG or ``.npy`` in ``/input``, one file per case, the case id is the name without the
    extension) resampled linearly to ``image_size`` and scaled by ``intensity``. For ``MASK`` the
    argmax over the channel axis (or ``> 0`` / ``> 0.5`` for one channel) is resampled back to the
    case's own grid with nearest neighbours and saved with the input's header.
    """

    image_size: tuple[int, ...]
    channels: int = 1
    intensity: Intensity = Intensity.MINMAX
    window: tuple[float, float] | None = None
    scale: float = 1.0
    output: OutputKind = OutputKind.CLASS_SCORES
    class_names: tuple[str, ...] = ()
    activation: Activation = Activation.NONE
    mask_format: str = "same"  # "same" as the input, "nii.gz" or "png"

    def __post_init__(self) -> None:
        if len(self.image_size) not in (2, 3) or min(self.image_size) < 1:
            raise ValueError("image_size must be 2 or 3 positive integers")
        if not 1 <= self.channels <= 64:
            raise ValueError("channels must be between 1 and 64")
        if self.intensity is Intensity.WINDOW and (
            self.window is None or not self.window[0] < self.window[1]
        ):
            raise ValueError("intensity 'window' needs window=(low, high) with low < high")
        if self.mask_format not in ("same", "nii.gz", "png"):
            raise ValueError("mask_format must be 'same', 'nii.gz' or 'png'")
        if self.mask_format == "png" and len(self.image_size) != 2:
            raise ValueError("png masks need a 2-D image_size")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        window = data.get("window")
        return cls(
            image_size=tuple(int(v) for v in data["image_size"]),
            channels=int(data.get("channels", 1)),
            intensity=Intensity(data.get("intensity", "minmax")),
            window=(float(window[0]), float(window[1])) if window else None,
            scale=float(data.get("scale", 1.0)),
            output=OutputKind(data.get("output", "class_scores")),
            class_names=tuple(str(n) for n in data.get("class_names", ())),
            activation=Activation(data.get("activation", "none")),
            mask_format=str(data.get("mask_format", "same")),
        )

    @classmethod
    def from_json(cls, text: str) -> InputSpec:
        return cls.from_dict(json.loads(text))
