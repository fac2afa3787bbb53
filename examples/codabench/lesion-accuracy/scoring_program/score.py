"""Accuracy of res/predictions.csv (id,label) against ref/truth.csv; writes scores.json."""

import csv
import json
import sys
from pathlib import Path

inp, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(inp / "ref" / "truth.csv", newline="") as fh:
    truth = {r["id"]: r["label"] for r in csv.DictReader(fh)}
found = sorted((inp / "res").rglob("*.csv"))
if not found:
    sys.exit("no .csv file in the submission")
with open(found[0], newline="") as fh:
    pred = {r["id"]: r["label"].strip() for r in csv.DictReader(fh)}
right = sum(pred.get(k) == v for k, v in truth.items())
scores = {"accuracy": right / len(truth), "n_cases": len(truth)}
(out / "scores.json").write_text(json.dumps(scores))
