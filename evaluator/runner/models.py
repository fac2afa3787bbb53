"""Loading a TorchScript or ONNX model and calling it on one prepared case."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["import_framework", "load_model"]

Predict = Callable[[np.ndarray[Any, Any]], np.ndarray[Any, Any]]


def _threads() -> int:
    try:
        return max(1, int(os.environ.get("SCANBENCH_THREADS", "0")) or len(os.sched_getaffinity(0)))
    except (ValueError, OSError):
        return 1


def import_framework(model_format: str) -> None:
    """Import the one framework ``model_format`` needs (PyTorch or onnxruntime), nothing else."""
    if model_format == "torchscript":
        import torch  # noqa: F401
    elif model_format == "onnx":
        import onnxruntime  # noqa: F401
    else:
        raise ValueError(f"unknown model format {model_format!r}")


def load_model(path: Path, model_format: str) -> Predict:
    if model_format == "torchscript":
        return _load_torchscript(path)
    if model_format == "onnx":
        return _load_onnx(path)
    raise ValueError(f"unknown model format {model_format!r}")


def _load_torchscript(path: Path) -> Predict:
    import torch

    torch.set_num_threads(_threads())
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    module = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
    module.eval()

    def predict(batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        with torch.inference_mode():
            result = module(torch.from_numpy(batch).to(device))
        if isinstance(result, (tuple, list)):
            result = result[0]
        if isinstance(result, dict):
            result = next(iter(result.values()))
        return np.asarray(result.detach().float().cpu().numpy())

    return predict


def _load_onnx(path: Path) -> Predict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.inter_op_num_threads = 1
    providers = [
        p
        for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
        if p in ort.get_available_providers()
    ]
    session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    input_name = session.get_inputs()[0].name

    def predict(batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return np.asarray(session.run(None, {input_name: batch})[0], dtype=np.float32)

    return predict
