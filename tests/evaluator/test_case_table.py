"""Per-case values as columns (evaluator.case_table): what the platform stores for every result,
so it must give back exactly what the evaluator computed, and refuse a damaged document."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evaluator import ScoreOptions, score
from evaluator.case_table import CaseTable, CaseTableError
from evaluator.synthetic import write_classification


def test_values_round_trip_exactly_with_undefined_values_as_none():
    rows = {
        "case_b": {"dice": 0.1 + 0.2, "hd95": None, "correct": 1.0},
        "case_a": {"dice": 1e-300, "hd95": 12.5, "correct": 0.0},
        "case_c": {"dice": 0.0},  # a metric absent from a row is undefined there
    }
    table = CaseTable.from_rows(rows)
    back = CaseTable.from_bytes(table.to_bytes())
    assert back == table
    assert back.ids == ["case_b", "case_a", "case_c"]  # case order is kept
    assert back.to_dict() == {
        "case_b": {"dice": 0.1 + 0.2, "hd95": None, "correct": 1.0},
        "case_a": {"dice": 1e-300, "hd95": 12.5, "correct": 0.0},
        "case_c": {"dice": 0.0, "hd95": None, "correct": None},
    }
    assert back["case_a"]["dice"] == 1e-300 and back.column("hd95")["case_b"] is None
    assert dict(back) == back.to_dict()  # it reads like the mapping it replaces


def test_a_scored_submission_stores_its_values_compactly_and_exactly(tmp_path):
    ref, preds = write_classification(tmp_path, n_cases=2000, seed=3)
    report = score("classification", ref, preds, options=ScoreOptions(bootstrap=0))
    assert isinstance(report.cases, CaseTable)
    raw = report.cases.to_bytes()
    as_json = json.dumps(report.to_json()["cases"]).encode()
    assert len(raw) < len(as_json) / 3
    back = CaseTable.from_bytes(raw)
    assert back.to_dict() == report.to_json()["cases"]
    brier = back.column_array("brier")
    assert brier is not None and math.isclose(float(np.mean(brier)), report.aggregates["brier"])


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # truncated
        lambda b: b + b"\0",  # trailing bytes
        lambda b: b"XXXX" + b[4:],  # not ours
        lambda b: b[:4] + b"\x09" + b[5:],  # a version this code does not know
        lambda b: b[:10] + b"!" + b[11:],  # header is not JSON
        lambda b: b"",
    ],
)
def test_a_damaged_document_is_refused_not_misread(damage):
    raw = CaseTable(["a", "b"], {"dice": [0.5, 1.0]}).to_bytes()
    with pytest.raises(CaseTableError):
        CaseTable.from_bytes(damage(raw))


def test_columns_must_match_the_cases():
    with pytest.raises(ValueError, match="2 values for 3 cases"):
        CaseTable(["a", "b", "c"], {"dice": [1.0, 0.0]})
