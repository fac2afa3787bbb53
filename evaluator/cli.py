"""``python -m evaluator``: score, rank, predict and metrics-doc from the command line.

Exit codes: 0 success; 1 bad predictions (or bad results files for ``rank``); 2 usage error or a
missing component; 3 bad reference; 4 internal error (a bug: please report it). Every failure
prints exactly one line, ``error: ...``, on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from evaluator._version import __version__
from evaluator.errors import InvalidReference, InvalidSubmission, one_line

__all__ = ["main"]

EXIT_OK, EXIT_SUBMISSION, EXIT_USAGE, EXIT_REFERENCE, EXIT_INTERNAL = 0, 1, 2, 3, 4


class _ResultsError(ValueError):
    pass


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m evaluator",
        description="Scanbench evaluator: score predictions, rank entries, run submissions.",
    )
    p.add_argument("--version", action="version", version=f"scanbench-evaluator {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="score predictions against a reference, write metrics.json")
    s.add_argument("--task", required=True, choices=("classification", "segmentation"))
    s.add_argument("--reference", required=True, type=Path, help="CSV, mask folder or zip")
    s.add_argument("--predictions", required=True, type=Path, help="CSV, mask folder or zip")
    s.add_argument("--output", type=Path, help="where to write metrics.json (default: stdout)")
    s.add_argument("--threshold", type=float, default=0.5, help="decision threshold (0.5)")
    s.add_argument("--nsd-tolerance", type=float, default=1.0, help="NSD tolerance in mm (1.0)")
    s.add_argument(
        "--sens-at-spec", type=float, default=0.9, help="specificity target of sens_at_spec (0.9)"
    )
    s.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (1000)")
    s.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    s.add_argument("--metrics", type=_csv_list, help="comma-separated subset of metrics")
    s.add_argument("--labels", type=_int_list, help="segmentation labels, e.g. 1,2,3")
    s.add_argument(
        "--case-ids", type=Path, help="file with the case ids to score, one per line (a split)"
    )
    s.add_argument(
        "--allow-missing",
        action="store_true",
        help="score missing cases with the worst value instead of rejecting the predictions",
    )
    s.add_argument(
        "--workers",
        type=int,
        help="threads over cases for segmentation (default: CPU count, at most 4)",
    )

    r = sub.add_parser("rank", help="rank entries from their metrics.json files")
    r.add_argument("results", nargs="+", help="metrics.json files, optionally as NAME=PATH")
    r.add_argument(
        "--metric",
        action="append",
        help="metric to rank by (repeat for rank-then-aggregate over several)",
    )
    r.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (1000)")
    r.add_argument("--seed", type=int, default=0, help="bootstrap seed (0)")
    r.add_argument("--alpha", type=float, default=0.05, help="significance level for tiers")
    r.add_argument("--aggregate", choices=("mean", "median"), default="mean")
    direction = r.add_mutually_exclusive_group()
    direction.add_argument("--higher-is-better", dest="higher", action="store_true", default=None)
    direction.add_argument("--lower-is-better", dest="higher", action="store_false")
    r.add_argument("--output", type=Path, help="also write the leaderboard as JSON here")

    d = sub.add_parser(
        "metrics-doc", help="write docs/metrics.md (every metric and convention) from the registry"
    )
    d.add_argument("--output", type=Path, help="where to write it (default: stdout)")

    sub.add_parser(
        "predict",
        help="run a model or container submission in the sandbox (see --help of the command)",
        add_help=False,
    )
    return p


def _write_json(data: Any, output: Path | None) -> None:
    text = json.dumps(data, indent=2, allow_nan=False, sort_keys=False)
    if output is None:
        sys.stdout.write(text + "\n")
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n", encoding="utf-8")


def _cmd_score(args: argparse.Namespace) -> int:
    from evaluator.scoring import ScoreOptions, score

    case_ids = None
    if args.case_ids is not None:
        try:
            lines = args.case_ids.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise _UsageError(f"cannot read --case-ids file: {exc.strerror}") from exc
        case_ids = [ln.strip() for ln in lines if ln.strip()]
    options = ScoreOptions(
        threshold=args.threshold,
        nsd_tolerance=args.nsd_tolerance,
        sens_at_spec_target=args.sens_at_spec,
        bootstrap=args.bootstrap,
        seed=args.seed,
        metrics=args.metrics,
        case_ids=case_ids,
        labels=args.labels,
        on_missing="worst" if args.allow_missing else "error",
        workers=args.workers,
    )
    report = score(args.task, args.reference, args.predictions, options=options)
    _write_json(report.to_json(), args.output)
    return EXIT_OK


class _UsageError(ValueError):
    pass


def _load_results(specs: Sequence[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    loaded: dict[str, dict[str, Any]] = {}
    task: str | None = None
    for spec in specs:
        name, sep, path_text = spec.partition("=")
        path = Path(path_text if sep else spec)
        if not sep:
            name = path.stem if path.name != "metrics.json" else path.parent.name or path.stem
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _ResultsError(f"{path.name}: not a readable metrics.json ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("cases"), dict):
            raise _ResultsError(f"{path.name}: no 'cases' object (is it a metrics.json?)")
        if name in loaded:
            raise _ResultsError(f"{path.name}: entry name {name!r} given twice (use NAME=PATH)")
        loaded[name] = data
        t = (data.get("meta") or {}).get("task")
        if t is not None and task is not None and t != task:
            raise _ResultsError(f"{path.name}: task {t!r} differs from the others ({task!r})")
        task = t or task
    return loaded, task


def _per_case(data: dict[str, Any], metric: str, name: str) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for case, values in data["cases"].items():
        if not isinstance(values, dict) or metric not in values:
            raise _ResultsError(f"entry {name}: case {case}: no value for metric {metric!r}")
        v = values[metric]
        out[str(case)] = None if v is None else float(v)
    return out


def _cmd_rank(args: argparse.Namespace) -> int:
    from evaluator import ranking
    from evaluator.metrics.registry import metric_info

    results, task = _load_results(args.results)
    first = next(iter(results.values()))
    metrics = (
        args.metric
        or [
            m for m in ("dice", "auc_roc", "brier") if any(m in c for c in first["cases"].values())
        ][:1]
    )
    if not metrics:
        raise _ResultsError("no --metric given and no default metric (dice) in the results")

    def direction(metric: str) -> bool:
        if args.higher is not None:
            return bool(args.higher)
        tasks: tuple[Literal["classification", "segmentation"], ...] = (
            ("segmentation", "classification")
            if task not in ("segmentation", "classification")
            else (task,)  # type: ignore[assignment]
        )
        for t in tasks:
            try:
                return metric_info(t, metric).higher_is_better
            except KeyError:
                continue
        raise _UsageError(f"unknown metric {metric!r}: say --higher-is-better or --lower-is-better")

    per_metric = {
        m: {name: _per_case(data, m, name) for name, data in results.items()} for m in metrics
    }
    if len(metrics) == 1:
        board = ranking.leaderboard(
            per_metric[metrics[0]],
            metric=metrics[0],
            higher_is_better=direction(metrics[0]),
            n_resamples=args.bootstrap,
            seed=args.seed,
            alpha=args.alpha,
            aggregate=args.aggregate,
        )
        out = board.to_json()
    else:
        dirs = {m: direction(m) for m in metrics}
        mean_rank, final = ranking.rank_then_aggregate(per_metric, higher_is_better=dirs)
        stab = ranking.bootstrap_ranks(
            per_metric,
            higher_is_better=dirs,
            n_resamples=args.bootstrap,
            seed=args.seed,
            scheme="rank_then_aggregate",
        )
        rows = [
            {
                "entry": e,
                "rank": final[e],
                "score": mean_rank[e],
                "rank_low": stab.rank_low[e],
                "rank_high": stab.rank_high[e],
                "tier": None,
                "significantly_better_than": None,
            }
            for e in mean_rank
        ]
        rows.sort(key=lambda row: (row["rank"], row["entry"]))
        out = {
            "metric": metrics,
            "scheme": "rank_then_aggregate",
            "rows": rows,
            "kendall_tau_mean": stab.kendall_tau_mean,
            "kendall_tau_quantiles": stab.kendall_tau_quantiles,
            "n_resamples": stab.n_resamples,
            "seed": stab.seed,
        }
    _print_table(out)
    if args.output is not None:
        _write_json(out, args.output)
    return EXIT_OK


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _print_table(board: dict[str, Any]) -> None:
    metric = board["metric"]
    label = metric if isinstance(metric, str) else "mean rank over " + ", ".join(metric)
    lines = [f"{'rank':>4}  {'95% CI':>9}  {'tier':>4}  {label:>12}  entry"]
    for row in board["rows"]:
        ci = f"{row['rank_low']}-{row['rank_high']}"
        lines.append(
            f"{row['rank']:>4}  {ci:>9}  {_fmt(row['tier']):>4}  {_fmt(row['score']):>12}  "
            f"{row['entry']}"
        )
    tau = board.get("kendall_tau_mean")
    lines.append(
        f"Kendall's tau between the full ranking and {board['n_resamples']} bootstrap "
        f"resamples: {_fmt(tau)} (seed {board['seed']})"
    )
    sys.stdout.write("\n".join(lines) + "\n")


def _cmd_metrics_doc(args: argparse.Namespace) -> int:
    from evaluator.metrics.registry import metrics_markdown

    text = metrics_markdown()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return EXIT_OK


def _cmd_predict(argv: list[str]) -> int:
    if importlib.util.find_spec("evaluator.sandbox") is None or (
        importlib.util.find_spec("evaluator.sandbox.cli") is None
    ):
        print(
            "error: 'predict' needs the sandbox runner (evaluator.sandbox.cli), which is not "
            "installed in this copy of the evaluator",
            file=sys.stderr,
        )
        return EXIT_USAGE
    module = importlib.import_module("evaluator.sandbox.cli")
    return int(module.predict_main(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if argv and argv[0] == "predict":
        return _cmd_predict(argv[1:])
    if "predict" in argv[:2] and argv[:1] == ["--debug"]:
        return _cmd_predict(argv[2:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "score":
            return _cmd_score(args)
        if args.command == "rank":
            return _cmd_rank(args)
        if args.command == "metrics-doc":
            return _cmd_metrics_doc(args)
        return EXIT_USAGE
    except InvalidSubmission as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SUBMISSION
    except InvalidReference as exc:
        print(f"error: reference: {exc}", file=sys.stderr)
        return EXIT_REFERENCE
    except _ResultsError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_SUBMISSION
    except (_UsageError, ValueError) as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            raise
        print(
            f"error: internal error ({type(exc).__name__}: {one_line(str(exc), limit=200)}); "
            "this is a bug in the evaluator, please report it (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
