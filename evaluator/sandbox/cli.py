"""``python -m evaluator predict``: run a model file or a container image in the sandbox.

    python -m evaluator predict --submission model.onnx --input-spec spec.json \\
        --inputs DIR --output DIR [--backend auto|docker|bwrap] [--time-limit S] [--memory SIZE] \\
        [--cpus N] [--gpus N]
    python -m evaluator predict --submission image.tar --inputs DIR --output DIR   # docker save
    python -m evaluator predict --image NAME --inputs DIR --output DIR              # on the worker

Exit code 0 when predictions were written; 1 when the run failed (time, memory, exit code, invalid
output: the participant's message goes to stdout, the organizer's log tail to stderr with
``--show-logs``); 2 for a usage error or a submission refused before it ran.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from evaluator.errors import InvalidSubmission
from evaluator.runner.inputspec import InputSpec

from .docker_backend import DockerBackend
from .models import run_model_submission
from .selection import BACKEND_NAMES, get_backend
from .spec import Limits, RunResult, RunSpec
from .tarball import TarballLimits, load_image_tarball

__all__ = ["parse_size", "predict_main"]

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """``"4g"``, ``"512M"``, ``"1.5GiB"``, ``"1048576"`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 4g or 512m)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluator predict",
        description="Run a model file (.pt, .onnx) or a container image in the sandbox.",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--submission", type=Path, help="model file (.pt/.onnx) or docker save .tar")
    what.add_argument("--image", help="an image already on this Docker engine (organizers)")
    parser.add_argument("--inputs", type=Path, required=True, help="test inputs, mounted at /input")
    parser.add_argument("--output", type=Path, required=True, help="empty folder for predictions")
    parser.add_argument("--input-spec", type=Path, help="JSON input spec (model files)")
    parser.add_argument("--backend", choices=(*BACKEND_NAMES, "bubblewrap"), default=None)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--memory", type=parse_size, default=parse_size("4g"), help="e.g. 4g")
    parser.add_argument("--cpus", type=float, default=1.0)
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--output-limit", type=parse_size, default=parse_size("1g"))
    parser.add_argument("--show-logs", action="store_true", help="print the log tail to stderr")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _report(result: RunResult, *, show_logs: bool, as_json: bool) -> int:
    if as_json:
        print(
            json.dumps(
                {
                    "status": result.status.value,
                    "backend": result.backend,
                    "exit_code": result.exit_code,
                    "message": result.participant_message,
                    "wall_s": round(result.wall_s, 3),
                    "setup_s": round(result.setup_s, 3),
                    "teardown_s": round(result.teardown_s, 3),
                    "files": list(result.output_files),
                }
            )
        )
    else:
        print(f"{result.status.value}: {result.participant_message} (backend {result.backend})")
    if show_logs:
        print(result.logs_tail, file=sys.stderr)
    return 0 if result.ok else 1


def predict_main(argv: list[str]) -> int:
    """Entry point of ``python -m evaluator predict``; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        limits = Limits(
            time_limit_s=args.time_limit,
            memory_bytes=args.memory,
            cpus=args.cpus,
            gpus=args.gpus,
            output_bytes=args.output_limit,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if not args.inputs.is_dir():
        parser.error(f"--inputs {args.inputs} is not a folder")
    backend = get_backend(args.backend)
    problems = backend.check()
    if problems:
        print(f"sandbox backend {backend.name} cannot run: {problems[0]}", file=sys.stderr)
        return 2
    try:
        submission: Path | None = args.submission
        if submission is not None and submission.name.lower().endswith((".pt", ".pth", ".onnx")):
            if args.input_spec is None:
                parser.error("a model file needs --input-spec (the phase's input specification)")
            spec = InputSpec.from_json(args.input_spec.read_text())
            result = run_model_submission(
                model_path=submission,
                input_dir=args.inputs,
                output_dir=args.output,
                input_spec=spec,
                limits=limits,
                backend=backend,
            )
            return _report(result, show_logs=args.show_logs, as_json=args.json)
        if not isinstance(backend, DockerBackend):
            print("container images need the Docker backend", file=sys.stderr)
            return 2
        image = args.image
        if submission is not None:
            image = load_image_tarball(submission, backend.client, TarballLimits())
        result = backend.run(
            RunSpec(input_dir=args.inputs, output_dir=args.output, image=image, limits=limits)
        )
        return _report(result, show_logs=args.show_logs, as_json=args.json)
    except InvalidSubmission as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
