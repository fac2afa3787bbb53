"""Model-file submissions: a TorchScript (``.pt``) or ONNX (``.onnx``) file run by the runner.

The file is never deserialized on the host (a ``.pt`` is a zip of pickles): it is only checked by
its magic bytes, then copied into the run with the runner package and the phase's input spec, and
loaded by the evaluator image's Python inside the sandbox.
"""

from __future__ import annotations

import enum
import math
import os
import shutil
from pathlib import Path

from evaluator.errors import InvalidSubmission
from evaluator.runner.inputspec import InputSpec, OutputKind

from .base import SandboxBackend, make_scratch_dir
from .spec import Limits, Mount, OutputPolicy, RunResult, RunSpec

__all__ = ["ModelFormat", "check_model_file", "run_model_submission"]

_RUNNER_SOURCE = Path(__file__).resolve().parents[1] / "runner"
_MOUNT = "/opt/scanbench"
DEFAULT_MAX_MODEL_BYTES = 2 * 1024**3


class ModelFormat(enum.StrEnum):
    TORCHSCRIPT = "torchscript"
    ONNX = "onnx"


def check_model_file(path: Path, *, max_bytes: int = DEFAULT_MAX_MODEL_BYTES) -> ModelFormat:
    """The model's format, from its name and magic bytes; raises :class:`InvalidSubmission`.

    Cheap enough for the upload view. Does not load the model.
    """
    name = path.name.lower()
    if not path.is_file() or path.is_symlink():
        raise InvalidSubmission("the model is not a regular file", file=path.name)
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidSubmission(
            f"the model is larger than {max_bytes // 2**20} MiB", file=path.name
        )
    with path.open("rb") as handle:
        magic = handle.read(4)
    if name.endswith((".pt", ".pth", ".torchscript")):
        if magic != b"PK\x03\x04":
            raise InvalidSubmission(
                "not a TorchScript archive (save it with torch.jit.save)", file=path.name
            )
        return ModelFormat.TORCHSCRIPT
    if name.endswith(".onnx"):
        if size < 16 or magic[:1] not in (b"\x08", b"\x12", b"\x1a", b"\x22", b"\x3a", b"\x42"):
            raise InvalidSubmission("not an ONNX model (a protobuf ModelProto)", file=path.name)
        return ModelFormat.ONNX
    raise InvalidSubmission(
        "a model submission must be a TorchScript file (.pt) or an ONNX file (.onnx)",
        file=path.name,
    )


def _policy(spec: InputSpec) -> OutputPolicy:
    if spec.output is OutputKind.CLASS_SCORES:
        return OutputPolicy(suffixes=(), exact_names=("predictions.csv",), max_depth=1)
    return OutputPolicy(suffixes=(".nii.gz", ".png"), max_depth=1)


def run_model_submission(
    *,
    model_path: Path,
    input_dir: Path,
    output_dir: Path,
    input_spec: InputSpec,
    limits: Limits,
    backend: SandboxBackend,
    max_model_bytes: int = DEFAULT_MAX_MODEL_BYTES,
    label: str | None = None,
) -> RunResult:
    """Run ``model_path`` on every case of ``input_dir``; validated predictions in ``output_dir``.

    Classification writes ``predictions.csv`` (``case_id,score`` or ``case_id,class_0,...``);
    segmentation writes ``<case_id>.nii.gz`` (or ``.png``) masks on each input's grid.
    Raises :class:`InvalidSubmission` for a file that is not a model of a supported format.
    """
    model_format = check_model_file(model_path, max_bytes=max_model_bytes)
    scratch = make_scratch_dir("scanbench-model-")
    try:
        staging = scratch / "opt"
        runner = staging / "scanbench_runner"
        model_dir = staging / "model"
        runner.mkdir(parents=True)
        model_dir.mkdir()
        for source in sorted(_RUNNER_SOURCE.glob("*.py")):
            shutil.copyfile(source, runner / source.name)
        model_name = "model.onnx" if model_format is ModelFormat.ONNX else "model.pt"
        shutil.copyfile(model_path, model_dir / model_name)
        (staging / "spec.json").write_text(input_spec.to_json())
        for dirpath, _dirs, files in os.walk(staging):
            os.chmod(dirpath, 0o755)  # noqa: S103 -- read by the sandbox user
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o644)
        spec = RunSpec(
            input_dir=input_dir,
            output_dir=output_dir,
            image=None,
            command=(
                "python3",
                "-s",
                "-B",
                "-m",
                "scanbench_runner",
                "--model",
                f"{_MOUNT}/model/{model_name}",
                "--format",
                model_format.value,
                "--spec",
                f"{_MOUNT}/spec.json",
            ),
            environment={
                "PYTHONPATH": _MOUNT,
                "SCANBENCH_THREADS": str(max(1, math.ceil(limits.cpus))),
                "OMP_NUM_THREADS": str(max(1, math.ceil(limits.cpus))),
            },
            mounts=(Mount(source=staging, target=_MOUNT),),
            limits=limits,
            output_policy=_policy(input_spec),
            label=label or f"model:{model_format.value}",
        )
        return backend.run(spec)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
