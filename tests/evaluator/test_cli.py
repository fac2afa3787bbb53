"""The CLI through a real subprocess: exit codes, metrics.json, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

from evaluator.synthetic import write_classification, write_segmentation

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evaluator", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_score_segmentation_writes_metrics_json(tmp_path):
    ref, pred = write_segmentation(tmp_path, n_cases=3, shape=(20, 20, 10), seed=1)
    out = tmp_path / "out" / "metrics.json"
    p = run(
        "score",
        "--task",
        "segmentation",
        "--reference",
        str(ref),
        "--predictions",
        str(pred),
        "--output",
        str(out),
        "--bootstrap",
        "50",
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(out.read_text())
    assert set(data) == {"aggregates", "cases", "meta"}
    assert data["meta"]["options"]["bootstrap"] == 50
    assert len(data["cases"]) == 3


def test_score_classification_to_stdout(tmp_path):
    ref, pred = write_classification(tmp_path, n_cases=40)
    p = run(
        "score",
        "--task",
        "classification",
        "--reference",
        str(ref),
        "--predictions",
        str(pred),
        "--bootstrap",
        "20",
        "--threshold",
        "0.3",
    )
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert data["meta"]["options"]["threshold"] == 0.3
    assert "auc_roc" in data["aggregates"]


def test_bad_predictions_exit_1_with_one_line(tmp_path):
    ref, pred = write_classification(tmp_path, n_cases=10)
    lines = pred.read_text().splitlines()
    pred.write_text("\n".join(lines[:-1]) + "\n")  # drop the last case
    p = run(
        "score", "--task", "classification", "--reference", str(ref), "--predictions", str(pred)
    )
    assert p.returncode == 1
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1
    assert p.stderr.startswith("error: predictions.csv: case case_0009: 1 case(s) missing")
    assert "Traceback" not in p.stderr


def test_bad_reference_exit_3(tmp_path):
    (tmp_path / "ref.csv").write_text("case_id,lbl\na,1\n")
    (tmp_path / "pred.csv").write_text("case_id,score\na,0.5\n")
    p = run(
        "score",
        "--task",
        "classification",
        "--reference",
        str(tmp_path / "ref.csv"),
        "--predictions",
        str(tmp_path / "pred.csv"),
    )
    assert p.returncode == 3
    assert p.stderr.startswith("error: reference: ref.csv: a reference must have exactly")


def test_usage_error_exit_2():
    p = run("score", "--task", "detection", "--reference", "x", "--predictions", "y")
    assert p.returncode == 2


def test_predict_without_sandbox_cli_is_a_clear_error(monkeypatch, capsys):
    from evaluator import cli

    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli.main(["predict", "--submission", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sandbox runner (evaluator.sandbox.cli)" in err


def test_predict_is_handed_to_the_sandbox_cli(monkeypatch):
    from evaluator import cli

    calls = []
    fake = types.ModuleType("evaluator.sandbox.cli")
    fake.predict_main = lambda argv: calls.append(argv) or 7
    monkeypatch.setitem(sys.modules, "evaluator.sandbox.cli", fake)
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: object())
    assert cli.main(["predict", "--submission", "x", "--inputs", "in"]) == 7
    assert calls == [["--submission", "x", "--inputs", "in"]]


def test_rank_from_metrics_files(tmp_path):
    from evaluator import ScoreOptions, score

    ref, pred = write_segmentation(tmp_path / "a", n_cases=6, shape=(20, 20, 10), seed=1)
    results = []
    for name, seed in (("alpha", 1), ("beta", 2)):
        _, pred = write_segmentation(tmp_path / name, n_cases=6, shape=(20, 20, 10), seed=seed)
        out = tmp_path / f"{name}.json"
        report = score("segmentation", ref, pred, options=ScoreOptions(bootstrap=0))
        out.write_text(json.dumps(report.to_json()))
        results.append(str(out))
    board = tmp_path / "board.json"
    p = run("rank", *results, "--bootstrap", "100", "--seed", "3", "--output", str(board))
    assert p.returncode == 0, p.stderr
    assert "Kendall's tau" in p.stdout
    data = json.loads(board.read_text())
    assert data["metric"] == "dice" and data["higher_is_better"] is True
    assert {r["entry"] for r in data["rows"]} == {"alpha", "beta"}
    assert data["rows"][0]["entry"] == "alpha"  # alpha was scored against its own reference
    p = run(
        "rank",
        f"x={results[0]}",
        f"y={results[1]}",
        "--metric",
        "dice",
        "--metric",
        "hd95",
        "--bootstrap",
        "50",
    )
    assert p.returncode == 0, p.stderr
    assert "mean rank over dice, hd95" in p.stdout


def test_rank_bad_results_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    p = run("rank", str(tmp_path / "bad.json"))
    assert p.returncode == 1
    assert p.stderr.startswith("error: bad.json: not a readable metrics.json")
