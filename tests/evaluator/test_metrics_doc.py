"""docs/metrics.md is generated from the metric registry and cannot drift from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from evaluator.metrics.registry import (
    CLASSIFICATION_METRICS,
    SEGMENTATION_METRICS,
    metrics_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "metrics.md"


def test_committed_metrics_doc_equals_the_generators_output():
    assert DOC.read_text(encoding="utf-8") == metrics_markdown(), (
        "docs/metrics.md is stale: run "
        "`.venv/bin/python -m evaluator metrics-doc --output docs/metrics.md`"
    )


def test_cli_metrics_doc_writes_the_same_text(tmp_path):
    out = tmp_path / "metrics.md"
    p = subprocess.run(
        [sys.executable, "-m", "evaluator", "metrics-doc", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert out.read_text(encoding="utf-8") == metrics_markdown()
    stdout = subprocess.run(
        [sys.executable, "-m", "evaluator", "metrics-doc"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert stdout.returncode == 0
    assert stdout.stdout == metrics_markdown()


def test_every_metric_has_a_row_with_definition_unit_and_direction():
    text = metrics_markdown()
    for table in (SEGMENTATION_METRICS, CLASSIFICATION_METRICS):
        for m in table.values():
            assert m.definition, m.name
            rows = [line for line in text.splitlines() if line.startswith(f"| `{m.name}` |")]
            assert any(m.definition in row for row in rows), m.name
            unit = "mm" if m.name in ("hd95", "hd", "assd") else "none"
            direction = "higher is better" if m.higher_is_better else "lower is better"
            assert any(f"| {unit} | {direction} |" in row for row in rows), m.name


def test_distances_are_in_mm_and_everything_else_has_no_unit():
    for m in (*SEGMENTATION_METRICS.values(), *CLASSIFICATION_METRICS.values()):
        assert m.unit == ("mm" if m.name in ("hd95", "hd", "assd") else ""), m.name
        assert m.to_json()["unit"] == m.unit
        assert {"definition", "edge_cases", "description"} <= set(m.to_json())
