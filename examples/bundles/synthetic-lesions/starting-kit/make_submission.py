"""Write a valid predictions CSV (case_id,score) for the test inputs of a binary task.

Usage: python make_submission.py [--train train.csv] [--test test-inputs.csv]
                                 [--out predictions.csv]

A naive linear baseline in the standard library only: every feature is standardized with the
train cases' mean and standard deviation and weighted by the difference of its class means; the
score is the logistic of the weighted sum, a probability of class 1.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from pathlib import Path

Model = dict[str, tuple[float, float, float]]


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def fit(train: list[dict[str, str]], features: list[str]) -> Model:
    """Per feature: (mean, standard deviation, weight)."""
    model = {}
    for f in features:
        values = [float(r[f]) for r in train]
        mean, sd = statistics.fmean(values), statistics.pstdev(values) or 1.0
        means = {}
        for label in ("0", "1"):
            z = [(float(r[f]) - mean) / sd for r in train if r["label"] == label]
            means[label] = statistics.fmean(z) if z else 0.0
        model[f] = (mean, sd, means["1"] - means["0"])
    return model


def predict(model: Model, row: dict[str, str]) -> float:
    z = sum(w * (float(row[f]) - mean) / sd for f, (mean, sd, w) in model.items())
    z = max(-50.0, min(50.0, z))
    return 1.0 / (1.0 + math.exp(-z))


def main() -> None:
    parser = argparse.ArgumentParser(description="Write predictions.csv for the test inputs.")
    parser.add_argument("--train", type=Path, default=Path("train.csv"))
    parser.add_argument("--test", type=Path, default=Path("test-inputs.csv"))
    parser.add_argument("--out", type=Path, default=Path("predictions.csv"))
    args = parser.parse_args()
    train, test = read_rows(args.train), read_rows(args.test)
    features = [c for c in (test[0] if test else {}) if c != "case_id"]
    model = fit(train, features)
    with args.out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["case_id", "score"])
        for row in test:
            writer.writerow([row["case_id"], f"{predict(model, row):.6f}"])
    print(f"wrote {len(test)} predictions to {args.out}")


if __name__ == "__main__":
    main()
