"""``python3 -m scanbench_runner --model M --format F --spec S`` inside the sandbox.

Exit codes: 0 done; 2 the model or the spec cannot be loaded; 3 a case failed; 86 out of memory
(bubblewrap's address-space limit makes allocations fail rather than waking an OOM killer).
Prints one ``SCANBENCH_RUNNER {json}`` line with timings, for organizers and the benchmark:
``import_s`` (the runner's own imports, NumPy mostly), ``framework_import_s`` (PyTorch or
onnxruntime, whichever the model needs: only that one is imported), ``load_s`` (that import plus
loading the model), ``compute_s``, ``total_s``, and ``torch_imported`` / ``onnxruntime_imported``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

_IMPORT_STARTED = time.perf_counter()  # the standard library's imports are not counted

import numpy as np  # noqa: E402

from .images import find_cases, load_case, prepare, resize, save_mask  # noqa: E402
from .inputspec import Activation, InputSpec, OutputKind  # noqa: E402
from .models import import_framework, load_model  # noqa: E402

_IMPORT_S = time.perf_counter() - _IMPORT_STARTED

EXIT_BAD_MODEL = 2
EXIT_CASE_FAILED = 3
EXIT_OUT_OF_MEMORY = 86


def _activate(
    values: np.ndarray[Any, Any], activation: Activation, axis: int
) -> np.ndarray[Any, Any]:
    if activation is Activation.SIGMOID:
        return 1.0 / (1.0 + np.exp(-values))
    if activation is Activation.SOFTMAX:
        shifted = np.exp(values - values.max(axis=axis, keepdims=True))
        return shifted / shifted.sum(axis=axis, keepdims=True)
    return values


def run(model: Path, model_format: str, spec: InputSpec, inputs: Path, outputs: Path) -> int:
    started = time.perf_counter()
    framework_s = 0.0
    try:
        import_framework(model_format)
        framework_s = time.perf_counter() - started
        predict = load_model(model, model_format)
    except MemoryError:
        raise
    except Exception as exc:  # a participant's model: anything can go wrong, say what
        print(
            f"runner: cannot load the {model_format} model: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return EXIT_BAD_MODEL
    loaded = time.perf_counter()
    compute = 0.0
    rows: list[list[str]] = []
    width = 0
    cases = find_cases(inputs)
    for path in cases:
        try:
            case = load_case(path, spec)
            batch = prepare(case, spec)
            tick = time.perf_counter()
            raw = predict(batch)
            compute += time.perf_counter() - tick
            if spec.output is OutputKind.CLASS_SCORES:
                scores = _activate(raw.reshape(-1).astype(np.float64), spec.activation, axis=0)
                if width and scores.size != width:
                    raise ValueError(f"model returned {scores.size} scores, earlier cases {width}")
                width = scores.size
                rows.append([case.case_id, *(f"{v:.6g}" for v in scores)])
            else:
                logits = raw.reshape(raw.shape[-len(spec.image_size) - 1 :])
                if logits.shape[1:] != spec.image_size:
                    raise ValueError(
                        f"model returned shape {raw.shape}, expected (1, C, *image_size)"
                    )
                if logits.shape[0] == 1:
                    cut = 0.5 if spec.activation is Activation.SIGMOID else 0.0
                    probs = _activate(logits, spec.activation, axis=0)
                    labels = (probs[0] > cut).astype(np.uint8)
                else:
                    labels = np.argmax(logits, axis=0).astype(np.int16)
                labels = resize(labels, case.array.shape[1:], nearest=True)
                save_mask(case, labels, outputs, spec.mask_format)
        except MemoryError:
            raise
        except Exception as exc:
            print(f"runner: case {path.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            traceback.print_exc(limit=3)
            return EXIT_CASE_FAILED
    if spec.output is OutputKind.CLASS_SCORES:
        if spec.class_names and len(spec.class_names) == width:
            header = list(spec.class_names)
        elif width == 1:
            header = ["score"]
        else:
            header = [f"class_{i}" for i in range(width)]
        with (outputs / "predictions.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["case_id", *header])
            writer.writerows(rows)
    stats = {
        "cases": len(cases),
        "import_s": round(_IMPORT_S, 4),
        "framework_import_s": round(framework_s, 4),
        "load_s": round(loaded - started, 4),
        "compute_s": round(compute, 4),
        "total_s": round(time.perf_counter() - started, 4),
        "torch_imported": "torch" in sys.modules,
        "onnxruntime_imported": "onnxruntime" in sys.modules,
    }
    print("SCANBENCH_RUNNER " + json.dumps(stats), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scanbench_runner")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--format", choices=("torchscript", "onnx"), required=True)
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--inputs", type=Path, default=Path("/input"))
    parser.add_argument("--outputs", type=Path, default=Path("/output"))
    args = parser.parse_args(argv)
    try:
        spec = InputSpec.from_json(args.spec.read_text())
        return run(args.model, args.format, spec, args.inputs, args.outputs)
    except MemoryError:
        print("runner: out of memory", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY


if __name__ == "__main__":
    sys.exit(main())
