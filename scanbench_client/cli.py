"""``scanbench``: log in, read a challenge, download its data, submit and watch the score, read
the leaderboard, and score predictions locally with the server's own evaluator (docs/client.md).

Exit codes (those of ``python -m evaluator`` where they mean the same): 0 success; 1 the server
refused the request, the evaluation failed, or (``score``) the predictions are invalid; 2 usage
error (bad arguments, a missing file, not logged in); 3 (``score``) bad reference; 4 internal
error (a bug: please report it). Every failure prints exactly one line, ``error: ...``, on
stderr, after any progress notes (which go to stderr too; results go to stdout).
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from scanbench_client._version import __version__
from scanbench_client.client import Client, ScanbenchError, config_path, load_config

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFERENCE, EXIT_INTERNAL = 0, 1, 2, 3, 4

#: ``download --split``: which generated files (challenges/services/data.py) each split is;
#: a challenge with several data sets prefixes every name with ``<dataset>-``
SPLITS: dict[str, tuple[str, ...]] = {
    "train": ("train.zip", "train.csv"),
    "test": ("test-inputs.zip", "test-inputs.csv"),
    "sample": ("sample-submission.zip", "sample-submission.csv"),
    "kit": ("starting-kit.zip",),
}


class UsageError(ValueError):
    pass


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "..."


# --- output helpers -----------------------------------------------------------------------------


class ProgressBar:
    """A plain-text progress bar on stderr, redrawn at most a few times a second; silent when
    stderr is not a terminal (logs, CI, pipes)."""

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._last = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < 0.2 and (total is None or done < total):
            return
        self._last = now
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"\r{self.label} [{bar:<30}] {frac:6.1%} {_size(done)}/{_size(total)}"
        else:
            text = f"\r{self.label} {_size(done)}"
        self.stream.write(text)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _note(text: str) -> None:
    """A progress message: stderr, so that stdout stays the command's result."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _table(rows: list[list[str]], right: set[int] | None = None) -> None:
    right = right or set()
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        _out("  ".join(cells).rstrip())


def _split_target(text: str) -> tuple[str, str | None]:
    slug, _, phase = text.partition("/")
    if not slug:
        raise UsageError(f"expected CHALLENGE/PHASE, got {text!r}")
    return slug, phase or None


def _phase_of(client: Client, target: str) -> tuple[str, str]:
    """``slug/phase``; a bare ``slug`` means its one open phase."""
    slug, phase = _split_target(target)
    if phase:
        return slug, phase
    phases = client.challenge(slug).get("phases", [])
    open_ = [p["slug"] for p in phases if p.get("status") == "open"]
    if len(open_) == 1:
        return slug, open_[0]
    names = ", ".join(f"{slug}/{p['slug']}" for p in phases) or "none"
    raise UsageError(f"say which phase: CHALLENGE/PHASE (phases: {names})")


# --- commands -----------------------------------------------------------------------------------


def _cmd_login(args: argparse.Namespace) -> int:
    saved = load_config()
    username = args.username or saved.get("username")
    if not username:
        if not sys.stdin.isatty():
            raise UsageError("give --username (no terminal to ask on)")
        username = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {username}: ")
    if not password:
        raise UsageError("an empty password")
    client = Client.login(args.url, username, password)
    _note(f"Logged in to {client.url} as {username}; token saved in {config_path()}")
    return EXIT_OK


def _cmd_challenges(client: Client, args: argparse.Namespace) -> int:
    items = client.challenges()
    if args.json:
        _out(json.dumps(items, indent=2))
        return EXIT_OK
    if not items:
        _out("No challenges.")
        return EXIT_OK
    rows = [["CHALLENGE", "TASK", "PHASES", "TITLE"]]
    for c in items:
        phases = ", ".join(f"{p['slug']} ({p.get('status', '?')})" for p in c.get("phases", []))
        rows.append([c["slug"], str(c.get("task_type", "")), phases, str(c.get("title", ""))])
    _table(rows)
    return EXIT_OK


def _empty(v: Any) -> bool:
    return v is None or v == "" or v == [] or v == {}


def _card_lines(value: Any, indent: str = "  ") -> list[str]:
    """A task card's nested values as indented ``key: value`` lines, empty ones left out."""
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if _empty(v):
                continue
            label = str(k).replace("_", " ")
            nested = isinstance(v, dict) or (
                isinstance(v, list) and any(isinstance(x, dict | list) for x in v)
            )
            if nested:
                lines.append(f"{indent}{label}:")
                lines += _card_lines(v, indent + "  ")
            else:
                lines.append(f"{indent}{label}: {_fmt(v)}")
    elif isinstance(value, list):
        for item in value:
            first, *rest = _card_lines(item, indent + "  ") or [f"{indent}  -"]
            lines.append(f"{indent}- {first.strip()}")
            lines += rest
    else:
        lines.append(f"{indent}{_fmt(value)}")
    return lines


def _balance_lines(balance: list[dict[str, Any]]) -> list[str]:
    """``train: 398 cases: benign 247 (62.1 %), malignant 151 (37.9 %)``."""
    lines = []
    for row in balance:
        classes = ", ".join(
            f"{c.get('name')} {c.get('n')}"
            + (f" ({c['percent']:.1f} %)" if isinstance(c.get("percent"), int | float) else "")
            for c in row.get("classes") or []
        )
        lines.append(f"  {row.get('split')}: {row.get('total')} cases: {classes}")
    return lines


def _metric_lines(phases: list[dict[str, Any]]) -> list[str]:
    lines = []
    for phase in phases:
        lines.append(f"  phase {phase.get('phase')}:")
        for m in phase.get("metrics") or []:
            notes = [n for n in ("primary" if m.get("primary") else "", m.get("direction")) if n]
            unit = f" [{m['unit']}]" if m.get("unit") else ""
            lines.append(f"    {m.get('name')}{unit} ({', '.join(notes)}): {m.get('description')}")
    return lines


def _task_card_lines(card: dict[str, Any]) -> list[str]:
    rest = dict(card)
    rest.pop("task_type", None)  # printed in the title
    lines: list[str] = []
    balance = rest.pop("balance", None)
    phases = rest.pop("phases", None)
    if isinstance(balance, list) and balance:
        lines += ["\nClass balance:", *_balance_lines(balance)]
    if isinstance(phases, list) and phases:
        lines += ["\nMetrics:", *_metric_lines(phases)]
    others = _card_lines(rest)
    if others:
        lines += ["\nMore of the task card:", *others]
    return lines


def _cmd_show(client: Client, args: argparse.Namespace) -> int:
    c = client.challenge(args.challenge)
    if args.json:
        _out(json.dumps(c, indent=2))
        return EXIT_OK
    _out(f"{c.get('title', c['slug'])}  ({c['slug']}, {c.get('task_type', '')})")
    if c.get("summary"):
        _out(f"\n{str(c['summary']).strip()}")
    for key, label in (
        ("input_description", "Input"),
        ("output_description", "Output (what you submit)"),
    ):
        if c.get(key):
            _out(f"\n{label}:\n  {str(c[key]).strip()}")
    if c.get("classes"):
        _out(f"\nClasses: {_fmt(c['classes'])}")
    _out(f"\nLicence: {c.get('licence') or '-'}")
    if c.get("attribution"):
        _out(f"Cite: {str(c['attribution']).strip()}")
    joined = "yes" if c.get("joined") else "no"
    status = c.get("membership_status")
    _out(f"Joined: {joined}" + (f" ({status})" if status and c.get("joined") else ""))
    _out("\nPhases:")
    for p in c.get("phases", []):
        _out(
            f"  {c['slug']}/{p['slug']}: {p.get('title', '')} [{p.get('status', '?')}], "
            f"opens {p.get('opens_at') or '-'}, closes {p.get('closes_at') or '-'}, "
            f"submit {p.get('submission_kind') or '-'}, ranked by {p.get('primary_metric') or '-'}"
        )
    if isinstance(c.get("task_card"), dict):
        for line in _task_card_lines(c["task_card"]):
            _out(line)
    if c.get("terms") and not c.get("joined"):
        _out(f"\nTerms (accept them with `scanbench join {c['slug']} --accept-terms`):")
        _out(f"  {c['terms']}")
    return EXIT_OK


def _cmd_join(client: Client, args: argparse.Namespace) -> int:
    if not args.accept_terms:
        terms = client.challenge(args.challenge).get("terms") or "(none given)"
        _out(f"Terms of {args.challenge}:\n  {terms}")
        raise UsageError("joining means accepting the terms above: add --accept-terms")
    result = client.join(args.challenge, accept_terms=True)
    if result.get("status") == "pending":
        _out(f"Joined {args.challenge}: waiting for an organizer's approval.")
    else:
        _out(f"Joined {args.challenge}.")
    return EXIT_OK


def _matches(name: str, split: str) -> bool:
    return split == "all" or any(
        name == end or name.endswith("-" + end) for end in SPLITS.get(split, ())
    )


def _cmd_download(client: Client, args: argparse.Namespace) -> int:
    files = [f for f in client.data_files(args.challenge) if _matches(f["name"], args.split)]
    if not files:
        raise ScanbenchError(
            f"{args.challenge} has no {args.split} files", code="not_found", status=404
        )
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        bar = ProgressBar(f["name"])
        try:
            path = client.download(args.challenge, f["name"], dest, progress=bar)
        finally:
            bar.close()
        _out(f"{path}  sha256 {f.get('sha256', '')[:16]}... verified")
    return EXIT_OK


def _aggregates(sub: dict[str, Any]) -> dict[str, Any]:
    evaluations = sub.get("evaluations") or []
    if not evaluations:
        return {}
    public = ((evaluations[-1].get("results") or {}).get("public")) or {}
    return dict(public.get("aggregates") or {})


def _print_submission(sub: dict[str, Any]) -> None:
    _out(f"submission {sub['id']}: {sub.get('state')}")
    aggregates = _aggregates(sub)
    for metric, value in aggregates.items():
        _out(f"  {metric}: {_fmt(value)}")
    evaluations = sub.get("evaluations") or []
    public = ((evaluations[-1].get("results") or {}).get("public") or {}) if evaluations else {}
    if public.get("missing_cases"):
        _out(f"  missing cases: {_fmt(public['missing_cases'])}")


def _cmd_submit(client: Client, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    slug, phase = _phase_of(client, args.target)
    bar = ProgressBar(f"uploading {path.name}")
    try:
        sub = client.submit(slug, phase, path, comment=args.comment, progress=bar)
    finally:
        bar.close()
    _note(f"Submitted {path.name} to {slug}/{phase}: submission {sub['id']} ({sub.get('state')})")
    if not args.wait:
        _out(str(sub["id"]))
        return EXIT_OK

    def changed(s: dict[str, Any]) -> None:
        _note(f"  {s.get('state')}")

    sub = client.wait(sub["id"], timeout=args.timeout, poll=args.poll, on_change=changed)
    if sub.get("state") != "succeeded":
        message = sub.get("message") or (sub.get("evaluations") or [{}])[-1].get("message")
        raise ScanbenchError(
            f"submission {sub['id']} {sub.get('state')}: {message or 'no reason given'}",
            code=f"submission_{sub.get('state')}",
        )
    _print_submission(sub)
    return EXIT_OK


def _cmd_submissions(client: Client, args: argparse.Namespace) -> int:
    slug, phase = _phase_of(client, args.target)
    items = client.submissions(slug, phase)
    if args.json:
        _out(json.dumps(items, indent=2))
        return EXIT_OK
    if not items:
        _out(f"No submissions to {slug}/{phase} yet.")
        return EXIT_OK
    rows = [["ID", "CREATED", "STATE", "FILE", "SCORE", "MESSAGE"]]
    for s in items:
        agg = _aggregates(s)
        score = _fmt(next(iter(agg.values()))) if agg else "-"
        rows.append(
            [
                str(s["id"]),
                str(s.get("created_at", ""))[:19],
                str(s.get("state", "")),
                str(s.get("file_name", "")),
                score,
                _one_line(s.get("message") or "", 60),
            ]
        )
    _table(rows, right={0, 4})
    return EXIT_OK


def _cmd_leaderboard(client: Client, args: argparse.Namespace) -> int:
    slug, phase = _phase_of(client, args.target)
    part = "private" if args.private else "public"
    if args.csv:
        sys.stdout.write(client.leaderboard_csv(slug, phase, part=part))
        return EXIT_OK
    board = client.leaderboard(slug, phase, part=part)
    if args.json:
        _out(json.dumps(board, indent=2))
        return EXIT_OK
    results = board.get("results", [])
    if not results:
        _out(f"The {part} leaderboard of {slug}/{phase} is empty.")
        return EXIT_OK
    metric = str(board.get("metric") or "score")
    rows = [["RANK", "95% CI", "TIER", metric.upper(), "SCORE CI", "ENTRANT"]]
    for r in results:
        ci = f"{_fmt(r.get('score_ci_low'))}-{_fmt(r.get('score_ci_high'))}"
        rank_ci = f"{_fmt(r.get('rank_low'))}-{_fmt(r.get('rank_high'))}"
        entrant = str(r.get("entrant", "")) + (" (baseline)" if r.get("is_baseline") else "")
        rows.append(
            [_fmt(r.get("rank")), rank_ci, _fmt(r.get("tier")), _fmt(r.get("score")), ci, entrant]
        )
    _table(rows, right={0, 1, 2, 3, 4})
    return EXIT_OK


def _cmd_score(args: argparse.Namespace) -> int:
    """Delegate to ``python -m evaluator score``: the code the server scores with."""
    try:
        from evaluator import cli as evaluator_cli
    except ImportError as exc:
        raise UsageError(
            "'score' needs the evaluator package (pip install scanbench installs it)"
        ) from exc
    return int(
        evaluator_cli.main(
            [
                "score",
                "--task",
                args.task,
                "--reference",
                args.reference,
                "--predictions",
                args.predictions,
                *args.options,
            ]
        )
    )


# --- parser and entry point ---------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scanbench",
        description="Scanbench client: challenges, data, submissions and leaderboards of a "
        "Scanbench server, and local scoring. Server: --url, else SCANBENCH_URL, else the one "
        "you logged in to. See docs/client.md.",
    )
    p.add_argument("--version", action="version", version=f"scanbench {__version__}")
    p.add_argument("--url", help="the server (default: SCANBENCH_URL or the saved one)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("login", help="log in and save an API token")
    s.add_argument("--url", dest="login_url", help="the server, e.g. https://scanbench.org")
    s.add_argument("--username", help="your user name")
    s.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )

    s = sub.add_parser("challenges", help="list the challenges")
    s.add_argument("--json", action="store_true", help="print the server's JSON")

    s = sub.add_parser("show", help="a challenge's task card")
    s.add_argument("challenge", metavar="CHALLENGE")
    s.add_argument("--json", action="store_true", help="print the server's JSON")

    s = sub.add_parser("join", help="join a challenge, accepting its terms")
    s.add_argument("challenge", metavar="CHALLENGE")
    s.add_argument("--accept-terms", action="store_true", help="accept the challenge's terms")

    s = sub.add_parser("download", help="download a challenge's public files (sha256 checked)")
    s.add_argument("challenge", metavar="CHALLENGE")
    s.add_argument("--split", choices=("train", "test", "sample", "kit", "all"), default="all")
    s.add_argument("--dest", default=".", help="folder to write into (default: .)")

    s = sub.add_parser("submit", help="submit a predictions file to a phase")
    s.add_argument("target", metavar="CHALLENGE/PHASE")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--comment", default="", help="a note shown with the submission")
    s.add_argument("--wait", action="store_true", help="wait for the score and print it")
    s.add_argument("--timeout", type=float, default=3600.0, help="--wait at most this long (s)")
    s.add_argument("--poll", type=float, default=2.0, help="--wait: seconds between checks")

    s = sub.add_parser("submissions", help="your submissions to a phase")
    s.add_argument("target", metavar="CHALLENGE/PHASE")
    s.add_argument("--json", action="store_true", help="print the server's JSON")

    s = sub.add_parser("leaderboard", help="a phase's leaderboard")
    s.add_argument("target", metavar="CHALLENGE/PHASE")
    s.add_argument("--private", action="store_true", help="the private part (once revealed)")
    out = s.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="print it as CSV")
    out.add_argument("--json", action="store_true", help="print the server's JSON")

    s = sub.add_parser(
        "score",
        help="score predictions locally with the server's evaluator",
        description="Run `python -m evaluator score` (the server's scoring code); any further "
        "options (--case-ids, --bootstrap, --seed, --threshold, --metrics, --allow-missing, "
        "--output, ...) are passed to it.",
    )
    s.add_argument("task", choices=("classification", "segmentation"), metavar="TASK")
    s.add_argument("reference", metavar="REFERENCE", help="CSV, mask folder or zip")
    s.add_argument("predictions", metavar="PREDICTIONS", help="CSV, mask folder or zip")
    s.add_argument("options", nargs=argparse.REMAINDER, help="options of `evaluator score`")
    return p


_COMMANDS = {
    "challenges": _cmd_challenges,
    "show": _cmd_show,
    "join": _cmd_join,
    "download": _cmd_download,
    "submit": _cmd_submit,
    "submissions": _cmd_submissions,
    "leaderboard": _cmd_leaderboard,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    try:
        if args.command == "score":
            return _cmd_score(args)
        if args.command == "login":
            args.url = args.login_url or args.url
            return _cmd_login(args)
        client = Client(url=args.url)
        if not client.token:
            raise UsageError("not logged in: run `scanbench login` (or set SCANBENCH_TOKEN)")
        return _COMMANDS[args.command](client, args)
    except ScanbenchError as exc:
        print(f"error: {_one_line(exc.detail)}", file=sys.stderr)
        return EXIT_FAILED
    except UsageError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:
        print(f"error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"error: internal error ({type(exc).__name__}: {_one_line(str(exc), limit=200)}); "
            "this is a bug in the scanbench client, please report it (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
