"""Overhead of the sandbox per submission, against the model's own compute time.

    .venv/bin/python benchmarks/sandbox_overhead.py [--repeat 5] [--backends docker,bwrap]

For each backend it times, end to end (``backend.run`` called -> returned, outputs validated and
everything removed):
  * an empty run: ``/bin/true`` in the evaluator image (pure sandbox start -> stop);
  * the model runner on a tiny TorchScript classifier and a tiny ONNX segmenter (4 cases), whose
    own ``SCANBENCH_RUNNER`` line gives the model load and compute time inside the sandbox;
and the same runner with no sandbox at all (``python -m evaluator.runner`` on the host), so
columns: end to end; the runner's own time inside (Python start excluded: imports, model load and
compute, from its SCANBENCH_RUNNER line); the model's compute alone; and the sandbox's overhead =
end to end - the runner's own time (interpreter start, staging, limits, output validation,
clean-up); and what the sandbox adds = end to end - the same runner run on the host without a
sandbox (the "none (host)" rows). Medians over ``--repeat`` runs.

Side by side with the Docker backend's empty run, a bare ``docker run --rm`` (the docker CLI) of
the same image running ``/bin/true`` with the same lock-down flags (``docker_run_flags``, derived
from the backend's own settings), and the backend's overhead against it (target: at most 0.1 s);
then where the backend's time goes, stage by stage (``DockerBackend.last_stages``), and the
runner's import times for ONNX and TorchScript runs (which framework each one imported).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.sandbox import (  # noqa: E402
    BubblewrapBackend,
    DockerBackend,
    InputSpec,
    Intensity,
    Limits,
    OutputKind,
    RunSpec,
    SandboxBackend,
    run_model_submission,
)
from evaluator.sandbox.docker_backend import docker_run_flags  # noqa: E402
from tests.sandbox.models import nifti_cases, onnx_segmenter, torchscript_classifier  # noqa: E402

LIMITS = Limits(time_limit_s=300, memory_bytes=2 * 2**30, cpus=1, output_bytes=64 * 2**20)
SPECS = {
    "torchscript": InputSpec(image_size=(16, 16), intensity=Intensity.SCALE, scale=1 / 255),
    "onnx": InputSpec(image_size=(6, 12, 12), intensity=Intensity.NONE, output=OutputKind.MASK),
}


def _runner_stats(text: str) -> dict[str, float]:
    for line in text.splitlines():
        if line.startswith("SCANBENCH_RUNNER "):
            return dict(json.loads(line.split(" ", 1)[1]))
    return {}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--backends", default="docker,bwrap")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="scanbench-bench-"))
    png_inputs = work / "png"
    png_inputs.mkdir()
    import numpy as np
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.full((24, 24), 40 + 160 * (i % 2), np.uint8)).save(
            png_inputs / f"c{i}.png"
        )
    nifti_cases(work / "nii", work / "ref", n=4)
    models = {
        "torchscript": (torchscript_classifier(work / "model.pt"), png_inputs),
        "onnx": (onnx_segmenter(work / "model.onnx"), work / "nii"),
    }
    counter = iter(range(10**6))

    def out() -> Path:
        return work / f"out{next(counter)}"

    rows: list[tuple[str, str, float, float, float, float]] = []
    # No sandbox: the runner in the host's Python, same model, same inputs, started as in the
    # sandbox (a copy of the package as scanbench_runner, nothing else of the project imported).
    runner_copy = work / "lib" / "scanbench_runner"
    runner_copy.mkdir(parents=True)
    for source in (ROOT / "evaluator" / "runner").glob("*.py"):
        shutil.copyfile(source, runner_copy / source.name)
    for kind, (model, inputs) in models.items():
        spec_file = work / f"{kind}.json"
        spec_file.write_text(SPECS[kind].to_json())
        totals, computes, inside = [], [], []
        for _ in range(args.repeat):
            target = out()
            target.mkdir()
            elapsed, completed = _timed(
                lambda m=model, i=inputs, s=spec_file, t=target, k=kind: subprocess.run(
                    [
                        sys.executable,
                        "-s",
                        "-B",
                        "-m",
                        "scanbench_runner",
                        "--model",
                        str(m),
                        "--format",
                        "torchscript" if k == "torchscript" else "onnx",
                        "--spec",
                        str(s),
                        "--inputs",
                        str(i),
                        "--outputs",
                        str(t),
                    ],
                    env={**os.environ, "PYTHONPATH": str(work / "lib"), "SCANBENCH_THREADS": "1"},
                    capture_output=True,
                    text=True,
                    check=True,
                )
            )
            stats = _runner_stats(completed.stdout)  # type: ignore[attr-defined]
            totals.append(elapsed)
            computes.append(stats.get("compute_s", float("nan")))
            inside.append(stats.get("total_s", float("nan")))
        total = _median(totals)
        rows.append(
            (
                "none (host)",
                f"runner, {kind}",
                total,
                _median(inside),
                _median(computes),
                total - _median(inside),
            )
        )

    backends: list[SandboxBackend] = []
    for name in args.backends.split(","):
        backend: SandboxBackend = DockerBackend() if name == "docker" else BubblewrapBackend()
        problems = backend.check()
        if problems:
            print(f"skipping {name}: {problems[0]}", file=sys.stderr)
            continue
        backends.append(backend)

    bare_docker: float | None = None
    stage_times: dict[str, list[float]] = {}
    runner_imports: dict[str, list[dict[str, float]]] = {}
    for backend in backends:
        empties, bares = [], []
        for _ in range(args.repeat):
            if isinstance(backend, DockerBackend):  # interleaved, so both see the same load
                bares.append(_bare_docker_run(backend.evaluator_image, png_inputs))
            elapsed, _result = _timed(
                lambda backend=backend: backend.run(
                    RunSpec(
                        input_dir=png_inputs,
                        output_dir=out(),
                        command=("/bin/true",),
                        limits=LIMITS,
                    )
                )
            )
            empties.append(elapsed)
            if isinstance(backend, DockerBackend):
                for stage, seconds in backend.last_stages.items():
                    stage_times.setdefault(stage, []).append(seconds)
        if bares:
            bare_docker = _median(bares)
            rows.append(
                ("bare docker", "docker run --rm /bin/true", bare_docker, 0.0, 0.0, bare_docker)
            )
        rows.append(
            (backend.name, "empty run (/bin/true)", _median(empties), 0.0, 0.0, _median(empties))
        )
        for kind, (model, inputs) in models.items():
            totals, computes, inside = [], [], []
            for _ in range(args.repeat):
                elapsed, result = _timed(
                    lambda m=model, i=inputs, k=kind, backend=backend: run_model_submission(
                        model_path=m,
                        input_dir=i,
                        output_dir=out(),
                        input_spec=SPECS[k],
                        limits=LIMITS,
                        backend=backend,
                    )
                )
                assert result.ok, result.logs_tail  # type: ignore[attr-defined]
                totals.append(elapsed)
                stats = _runner_stats(result.logs_tail)  # type: ignore[attr-defined]
                runner_imports.setdefault(kind, []).append(stats)
                computes.append(stats.get("compute_s", float("nan")))
                inside.append(stats.get("total_s", float("nan")))
            total = _median(totals)
            rows.append(
                (
                    backend.name,
                    f"runner, {kind}",
                    total,
                    _median(inside),
                    _median(computes),
                    total - _median(inside),
                )
            )

    print(
        f"median of {args.repeat} runs, seconds, 4 cases per model run; "
        f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPUs"
    )
    print(
        f"{'sandbox':<12} {'what':<24} {'end to end':>11} {'runner itself':>13} "
        f"{'model compute':>14} "
        f"{'sandbox overhead':>17} {'added vs host':>13}"
    )
    host = {what: total for name, what, total, *_ in rows if name == "none (host)"}
    for backend_name, what, total, runner, compute, overhead in rows:
        added = total - host[what] if what in host else total
        print(
            f"{backend_name:<12} {what:<24} {total:>11.3f} {runner:>13.3f} {compute:>14.4f} "
            f"{overhead:>17.3f} {added:>13.3f}"
        )
    docker_empty = next(
        (total for name, what, total, *_ in rows if name == "docker" and what.startswith("empty")),
        None,
    )
    if bare_docker is not None and docker_empty is not None:
        overhead = docker_empty - bare_docker
        print(
            f"\noverhead vs bare docker run: {overhead:.3f} s "
            f"(docker backend {docker_empty:.3f} s, bare docker run {bare_docker:.3f} s; "
            f"target <= 0.1 s: {'met' if overhead <= 0.1 else 'NOT met'})"
        )
    if stage_times:
        print("docker backend, empty run, median seconds per stage:")
        for stage, values in stage_times.items():
            print(f"  {stage:<22} {_median(values):.3f}")
    if runner_imports:
        print("runner inside the sandbox, median seconds (all backends):")
        for kind, all_stats in runner_imports.items():
            print(
                f"  {kind:<12} own imports {_median([s.get('import_s', 0) for s in all_stats]):.3f}"
                f", framework import "
                f"{_median([s.get('framework_import_s', 0) for s in all_stats]):.3f}, "
                f"imported torch: {any(s.get('torch_imported') for s in all_stats)}, "
                f"onnxruntime: {any(s.get('onnxruntime_imported') for s in all_stats)}"
            )
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _bare_docker_run(image: str, inputs: Path) -> float:
    """Seconds for the docker CLI's ``docker run --rm`` of ``/bin/true`` in ``image``, with the
    Docker backend's lock-down flags and the same read-only ``/input`` bind mount."""
    command = [
        "docker",
        "run",
        "--rm",
        *docker_run_flags(LIMITS),
        f"--mount=type=bind,source={inputs},target=/input,readonly",
        image,
        "/bin/true",
    ]
    elapsed, _ = _timed(lambda: subprocess.run(command, check=True, capture_output=True))
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
