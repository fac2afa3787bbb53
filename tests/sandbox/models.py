"""Tiny honest models the tests make: a TorchScript classifier and an ONNX segmenter."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def torchscript_classifier(path: Path) -> Path:
    """(1, 1, H, W) -> (1, 1): the mean intensity, a perfect score for bright-vs-dark cases."""
    import torch

    class MeanScore(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2, 3)).reshape(1, 1)

    torch.jit.save(torch.jit.script(MeanScore()), str(path))
    return path


def onnx_segmenter(path: Path, spatial: int = 3) -> Path:
    """(1, 1, *S) -> (1, 2, *S) logits with channel 1 = x - 0.5: foreground where x > 0.5."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kernel = (1,) * spatial
    weight = numpy_helper.from_array(
        np.array([-1.0, 1.0], dtype=np.float32).reshape(2, 1, *kernel), name="W"
    )
    bias = numpy_helper.from_array(np.array([0.5, -0.5], dtype=np.float32), name="B")
    dims = ["d", "h", "w"][-spatial:]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["y"], kernel_shape=list(kernel))],
        "segmenter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, *dims])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, *dims])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def nifti_cases(
    inputs: Path, reference: Path, n: int = 3, shape: tuple[int, ...] = (6, 12, 12)
) -> None:
    """Volumes with a bright box (the foreground) and the matching reference masks."""
    import nibabel as nib

    inputs.mkdir(parents=True, exist_ok=True)
    reference.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    affine = np.diag([1.5, 0.8, 0.8, 1.0])
    for i in range(n):
        mask = np.zeros(shape, dtype=np.uint8)
        mask[1 : 4 + i % 2, 2:8, 3 : 9 + i % 3] = 1
        image = (mask * 0.8 + 0.1 + rng.uniform(-0.05, 0.05, shape)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, affine), str(inputs / f"case{i}.nii.gz"))
        nib.save(nib.Nifti1Image(mask, affine), str(reference / f"case{i}.nii.gz"))
