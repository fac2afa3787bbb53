"""What an organizer's scoring program costs against the built-in metrics, on the same file.

One 10,000-case CSV of binary predictions is scored three ways, side by side in one run:

* the built-in evaluator (``evaluator.scoring.score``: accuracy, AUC and the rest, with
  intervals), in this process;
* a Codabench-style scoring program (reads ``ref/truth.csv`` and ``res/predictions.csv``,
  writes ``scores.json`` with accuracy) run by ``evaluator.sandbox.scoring_run`` in each sandbox
  backend that works here (Docker, bubblewrap): start-up of the sandbox, Python and the program;
* the same program run directly with ``python3`` on the host, no sandbox: the floor.

Times are medians of ``--repeat`` runs; the accuracies of all three must agree (printed).

    .venv/bin/python benchmarks/program_bench.py [--cases 10000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluator.sandbox import (  # noqa: E402
    DockerBackend,
    Limits,
    program_read,
    scoring_run,
)
from evaluator.sandbox.bwrap_backend import BubblewrapBackend  # noqa: E402
from evaluator.scoring import ScoreOptions, score  # noqa: E402

SCORE_PY = """\
import csv, json, sys
from pathlib import Path
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
truth = {r["case_id"]: r["label"] for r in csv.DictReader(open(inp / "ref" / "truth.csv"))}
pred = {r["case_id"]: str(int(float(r["score"]) >= 0.5))
        for r in csv.DictReader(open(inp / "res" / "predictions.csv"))}
acc = sum(pred.get(k) == v for k, v in truth.items()) / len(truth)
(out / "scores.json").write_text(json.dumps({"accuracy": acc}))
"""


_RUNS = itertools.count()  # a fresh output folder per sandboxed run


def _data(folder: Path, n: int) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.3).astype(int)
    p = np.clip(0.3 + 0.4 * (2 * y - 1) * rng.random(n) + 0.1 * rng.normal(size=n), 0, 1)
    ref, res, program = folder / "ref", folder / "res", folder / "program"
    for d in (ref, res, program):
        d.mkdir(mode=0o755)
    ids = [f"c{i:05d}" for i in range(n)]
    (ref / "truth.csv").write_text(
        "case_id,label\n" + "".join(f"{c},{v}\n" for c, v in zip(ids, y, strict=True))
    )
    (res / "predictions.csv").write_text(
        "case_id,score\n" + "".join(f"{c},{v:.4f}\n" for c, v in zip(ids, p, strict=True))
    )
    (program / "metadata.yaml").write_text(
        "command: python3 /app/program/score.py /app/input /app/output\n"
    )
    (program / "score.py").write_text(SCORE_PY)
    for f in [*ref.iterdir(), *res.iterdir(), *program.iterdir()]:
        f.chmod(0o644)
    return ref, res, program


def _median(fn, repeat: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    times, value = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="program-bench-"))
    folder.chmod(0o755)
    ref, res, program_dir = _data(folder, args.cases)
    rows: list[tuple[str, float, float]] = []

    def builtin() -> float:
        report = score(
            "classification", ref / "truth.csv", res / "predictions.csv",
            options=ScoreOptions(bootstrap=0, workers=1, metrics=["accuracy", "auc_roc"]),
        )  # fmt: skip
        return float(report.aggregates["accuracy"] or 0.0)

    # the built-in reader wants case_id,label; the same file serves both
    t, acc = _median(builtin, args.repeat)
    rows.append(("built-in evaluator (accuracy + AUC, in process)", t, float(acc)))  # type: ignore[arg-type]

    def host() -> float:
        out = folder / "host-out"
        out.mkdir(exist_ok=True)
        inp = folder / "host-in"
        if not inp.exists():
            inp.mkdir()
            (inp / "ref").symlink_to(ref)
            (inp / "res").symlink_to(res)
        subprocess.run([sys.executable, str(program_dir / "score.py"), str(inp), str(out)],
                       check=True)  # fmt: skip
        return float(json.loads((out / "scores.json").read_text())["accuracy"])

    t, acc = _median(host, args.repeat)
    rows.append(("scoring program, host python, no sandbox", t, float(acc)))  # type: ignore[arg-type]

    program = program_read(program_dir)
    for name, backend in (("docker", DockerBackend()), ("bubblewrap", BubblewrapBackend())):
        problems = backend.check()
        if problems:
            print(f"{name}: skipped ({'; '.join(problems)})")
            continue

        def sandboxed(backend=backend) -> float:  # type: ignore[no-untyped-def]
            out = folder / f"out-{backend.name}-{next(_RUNS)}"
            scored = scoring_run(
                program=program, reference_dir=ref, results_dir=res, output_dir=out,
                limits=Limits(time_limit_s=60), backend=backend, label="program-bench",
            )  # fmt: skip
            return scored.scores["accuracy"]

        t, acc = _median(sandboxed, args.repeat)
        rows.append((f"scoring program in the {name} sandbox", t, float(acc)))  # type: ignore[arg-type]

    print(f"{args.cases} cases, median of {args.repeat} runs")
    print(f"{'how':<52} {'seconds':>8} {'accuracy':>9}")
    for how, t, acc in rows:
        print(f"{how:<52} {t:8.3f} {acc:9.4f}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
