"""The prepared GPU check: run a model through the gpu worker's sandbox with a GPU and record it.

On a machine with an NVIDIA GPU, the NVIDIA container toolkit (the engine lists the nvidia
runtime) and the CUDA variant of the evaluator image (docs/sandbox.md):

    SCANBENCH_EVALUATOR_IMAGE=<cuda evaluator tag> .venv/bin/python scripts/gpu_check.py [OUT.json]

It asks ``nvidia-smi`` for the card, writes a TorchScript model whose score is 1 when its input
tensor is on a CUDA device and 0 on the CPU, runs it with ``python -m evaluator predict --backend
docker --gpus 1`` (the code path of the gpu worker: the same backend, limits and device request),
and prints one JSON record: date, card, driver, image, the sandbox's result and whether the model
saw the GPU. Exit code 0 only when every case ran on the GPU. Not run in CI (no GPU there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _card() -> list[dict[str, str]]:
    query = "name,driver_version,memory.total"
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    keys = query.split(",")
    return [dict(zip(keys, (v.strip() for v in line.split(",")), strict=True)) for line in
            out.strip().splitlines()]  # fmt: skip


def _model(path: Path) -> None:
    import torch

    class OnCuda(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full((1, 1), 1.0 if x.is_cuda else 0.0, device=x.device)

    torch.jit.save(torch.jit.script(OnCuda()), str(path))


def main() -> int:
    from PIL import Image

    record: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "image": os.environ.get("SCANBENCH_EVALUATOR_IMAGE", "(default CPU image)"),
    }
    record["cards"] = _card()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)  # noqa: S103 -- the sandbox user (uid 65534) reads the inputs
        inputs, output = work / "inputs", work / "output"
        inputs.mkdir()
        output.mkdir()
        for i in range(4):
            Image.new("L", (16, 16), color=40 * i).save(inputs / f"case{i}.png")
        _model(work / "model.pt")
        spec = work / "spec.json"
        spec.write_text(
            json.dumps({"image_size": [16, 16], "intensity": "scale", "scale": 1 / 255})
        )
        run = subprocess.run(
            [sys.executable, "-m", "evaluator", "predict", "--submission", str(work / "model.pt"),
             "--input-spec", str(spec), "--inputs", str(inputs), "--output", str(output),
             "--backend", "docker", "--gpus", "1", "--json"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
        record["sandbox"] = json.loads(run.stdout) if run.stdout.strip() else run.stderr[-2000:]
        predictions = next(output.glob("*.csv"), None)
        scores = []
        if predictions is not None:
            for line in predictions.read_text().splitlines()[1:]:
                scores.append(float(line.rsplit(",", 1)[-1]))
        record["cases"] = len(scores)
        record["ran_on_gpu"] = bool(scores) and all(s == 1.0 for s in scores)
    text = json.dumps(record, indent=2)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text + "\n")
    return 0 if record["ran_on_gpu"] else 1


if __name__ == "__main__":
    sys.exit(main())
