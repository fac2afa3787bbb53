"""score(): report shape, formats, worst-value filling, restriction to a split, intervals."""

from __future__ import annotations

import hashlib
import json
import math
import zipfile

import nrrd
import numpy as np
import pytest
from PIL import Image

from evaluator import ScoreOptions, __version__, score
from evaluator.errors import InvalidReference, InvalidSubmission
from evaluator.synthetic import write_classification, write_nifti, write_segmentation

FAST = ScoreOptions(bootstrap=50)


def cube(shape=(12, 12, 10), lo=2, hi=7, label=1):
    a = np.zeros(shape, dtype=np.uint8)
    a[lo:hi, lo:hi, lo:hi] = label
    return a


def test_segmentation_report_shape_and_meta(tmp_path):
    ref, pred = write_segmentation(tmp_path, n_cases=4, shape=(24, 24, 12), seed=2)
    report = score("segmentation", ref, pred, options=FAST)
    data = report.to_json()
    assert set(data) == {"aggregates", "cases", "meta"}
    json.dumps(data, allow_nan=False)
    assert set(data["aggregates"]) == {
        "dice",
        "iou",
        "sensitivity",
        "specificity",
        "hd95",
        "hd",
        "assd",
        "nsd",
    }
    assert sorted(data["cases"]) == ["case_000", "case_001", "case_002", "case_003"]
    meta = data["meta"]
    assert meta["version"] == __version__
    assert len(meta["reference_sha256"]) == 64 and len(meta["predictions_sha256"]) == 64
    assert meta["n_in_mean"]["dice"] == 4
    assert meta["labels"] == [1]
    ci = meta["intervals"]["dice"]
    assert ci["method"] == "bootstrap" and ci["low"] <= data["aggregates"]["dice"] <= ci["high"]
    assert meta["metrics"]["hd95"]["higher_is_better"] is False
    mean = np.mean([c["dice"] for c in data["cases"].values()])
    assert data["aggregates"]["dice"] == pytest.approx(mean)


def _manifest(folder) -> str:
    manifest = hashlib.sha256()
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    for p in sorted(files, key=lambda p: p.relative_to(folder).parts):
        manifest.update(p.relative_to(folder).as_posix().encode() + b"\0")
        manifest.update(hashlib.sha256(p.read_bytes()).hexdigest().encode() + b"\n")
    return manifest.hexdigest()


def test_folder_digest_is_the_manifest_of_its_regular_files(tmp_path):
    """predictions_sha256 of a folder: sha256 over ``relative path NUL sha256(file) LF`` of
    every regular file, in path-component order; symbolic links are neither followed nor
    listed, and a file changed in place changes the digest even with the digests cached."""
    folder = tmp_path / "preds"
    for name in ("case_000.nii.gz", "a/b", "a-c", "a/b-x/y", ".hidden", "a/b0"):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(name.encode() * 3)
    (folder / "link").symlink_to(folder / "a-c")
    (folder / "dirlink").symlink_to(folder / "a")

    from evaluator.scoring import _sha256_path

    first = _sha256_path(folder)
    assert first == _manifest(folder)
    (folder / "a" / "b").write_bytes(b"changed, and longer than before")
    assert _sha256_path(folder) == _manifest(folder) != first


def test_scored_files_are_read_once_for_the_report_digests(tmp_path, monkeypatch):
    """The digests in a report come from the bytes the scorer read: only a file it did not
    read (a hidden one) is read again for them, and they equal the manifests computed from
    scratch."""
    import evaluator.scoring as scoring_module
    from evaluator.readers.sources import forget_digests

    ref, pred = write_segmentation(tmp_path, n_cases=3, shape=(16, 16, 8), seed=4)
    (pred / ".notes").write_bytes(b"not a case")
    forget_digests()
    read_again: list[str] = []
    original = scoring_module._sha256_file

    def counted(path):
        read_again.append(path.name)
        return original(path)

    monkeypatch.setattr(scoring_module, "_sha256_file", counted)
    report = score("segmentation", ref, pred, options=FAST)
    assert read_again == [".notes"]
    assert report.meta["reference_sha256"] == _manifest(ref)
    assert report.meta["predictions_sha256"] == _manifest(pred)


def test_a_file_rewritten_with_its_size_and_time_kept_gets_a_new_digest(tmp_path):
    """A remembered file digest is keyed by the file's change time too, which its owner cannot
    set back: rewriting a prediction with the same size and modification time is seen."""
    import os

    ref, pred = write_segmentation(tmp_path, n_cases=2, shape=(16, 16, 8), seed=5)
    first = score("segmentation", ref, pred, options=FAST).meta["predictions_sha256"]
    target = pred / "case_000.nii.gz"
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-9] ^= 0xFF  # a byte of the gzip trailer's CRC: same size, other content
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert target.stat().st_size == st.st_size and target.stat().st_mtime_ns == st.st_mtime_ns
    from evaluator.scoring import _sha256_path

    assert _sha256_path(pred) == _manifest(pred) != first


def test_case_order_and_input_layout_do_not_matter(tmp_path, write_masks):
    rng = np.random.default_rng(0)
    masks = {f"c{i}": (rng.random((8, 9, 7)) < 0.4).astype(np.uint8) for i in range(5)}
    preds = {k: np.roll(v, 1, axis=0) for k, v in masks.items()}
    ref = write_masks(tmp_path / "ref", masks)
    pred = write_masks(tmp_path / "pred", dict(reversed(list(preds.items()))))
    a = score("segmentation", ref, pred, options=FAST)
    zp = tmp_path / "pred.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        for k in reversed(sorted(preds)):
            zf.write(pred / f"{k}.nii.gz", f"{k}.nii.gz")
    b = score("segmentation", ref, zp, options=ScoreOptions(bootstrap=50, workers=1))
    assert a.aggregates == b.aggregates
    assert a.cases == b.cases
    assert a.meta["intervals"] == b.meta["intervals"]


def test_empty_cases_are_worst_filled_and_counted(tmp_path, write_masks):
    empty = np.zeros((12, 12, 10), dtype=np.uint8)
    ref = write_masks(tmp_path / "ref", {"a": cube(), "b": cube(), "c": empty})
    pred = write_masks(tmp_path / "pred", {"a": cube(), "b": empty, "c": empty})
    r = score("segmentation", ref, pred, options=FAST)
    diag = math.sqrt(12**2 + 12**2 + 10**2)
    assert r.cases["b"]["hd95"] == pytest.approx(diag)  # pred empty -> worst
    assert r.cases["b"]["dice"] == 0
    assert r.cases["c"]["dice"] == 1 and r.cases["c"]["hd95"] == 0  # both empty
    assert r.cases["c"]["sensitivity"] is None  # undefined, left out
    assert r.meta["n_in_mean"]["sensitivity"] == 2
    assert r.aggregates["sensitivity"] == pytest.approx(0.5)
    assert r.meta["worst_filled"] == {"assd": 1, "hd": 1, "hd95": 1}
    assert r.meta["worst_filled_cases"]["hd95"] == ["b"]
    assert r.meta["prevalence"] == {"1": pytest.approx(2 / 3)}


def test_missing_cases_get_worst_values_when_allowed(tmp_path, write_masks):
    ref = write_masks(tmp_path / "ref", {"a": cube(), "b": cube()})
    pred = write_masks(tmp_path / "pred", {"a": cube()})
    r = score("segmentation", ref, pred, options=ScoreOptions(on_missing="worst", bootstrap=0))
    assert r.cases["b"]["dice"] == 0 and r.cases["b"]["sensitivity"] == 0
    assert r.meta["missing_cases"] == ["b"]
    assert r.aggregates["dice"] == 0.5
    assert r.meta["worst_filled"]["dice"] == 1


def test_case_ids_restrict_scoring_but_not_validation(tmp_path, write_masks):
    ref = write_masks(tmp_path / "ref", {"a": cube(), "b": cube(), "c": cube()})
    pred = write_masks(tmp_path / "pred", {"a": cube(), "b": cube(lo=4), "c": cube()})
    r = score("segmentation", ref, pred, options=ScoreOptions(case_ids=["b"], bootstrap=0))
    assert list(r.cases) == ["b"]
    assert r.meta["n_cases"] == 1
    assert r.meta["options"]["restricted_to_case_ids"] is True


def test_multi_label_keys_and_means(tmp_path, write_masks):
    two = cube()
    two[8:11, 8:11, 8:10] = 2
    pred = cube()
    ref = write_masks(tmp_path / "ref", {"a": two})
    pr = write_masks(tmp_path / "pred", {"a": pred})
    r = score("segmentation", ref, pr, options=FAST)
    case = r.cases["a"]
    assert case["dice/1"] == 1.0 and case["dice/2"] == 0.0
    assert case["dice"] == 0.5
    assert r.meta["labels"] == [1, 2]


@pytest.mark.parametrize("fmt", ["nii", "nrrd", "png", "npy", "npz"])
def test_every_mask_format_reads_the_same(tmp_path, fmt):
    rng = np.random.default_rng(1)
    shape = (14, 16) if fmt == "png" else (14, 16, 6)
    ref_arr = (rng.random(shape) < 0.5).astype(np.uint8)
    pred_arr = (rng.random(shape) < 0.5).astype(np.uint8)
    spacing = (1.0, 1.0) if fmt == "png" else (0.5, 0.7, 3.0)
    out = {}
    for role, arr in (("ref", ref_arr), ("pred", pred_arr)):
        folder = tmp_path / fmt / role
        folder.mkdir(parents=True)
        if fmt == "nii":
            write_nifti(folder / "x.nii", arr, spacing)
        elif fmt == "nrrd":
            nrrd.write(
                str(folder / "x.nrrd"),
                arr,
                {
                    "space dimension": 3,
                    "space directions": np.diag(spacing),
                    "space origin": np.zeros(3),
                    "encoding": "gzip",
                },
                index_order="F",
            )
        elif fmt == "png":
            Image.fromarray(arr * 1).save(folder / "x.png")
        elif fmt == "npy":
            np.save(folder / "x.npy", arr)
        else:
            np.savez_compressed(folder / "x.npz", mask=arr, spacing=np.array(spacing))
        out[role] = folder
    r = score("segmentation", out["ref"], out["pred"], options=ScoreOptions(bootstrap=0))
    truth_dir = tmp_path / "truth"
    (truth_dir / "ref").mkdir(parents=True)
    (truth_dir / "pred").mkdir()
    write_nifti(truth_dir / "ref" / "x.nii.gz", ref_arr, spacing)
    write_nifti(truth_dir / "pred" / "x.nii.gz", pred_arr, spacing)
    expected = score(
        "segmentation", truth_dir / "ref", truth_dir / "pred", options=ScoreOptions(bootstrap=0)
    )
    if fmt == "npy":  # no spacing in .npy: 1 mm voxels
        assert r.cases["x"]["dice"] == expected.cases["x"]["dice"]
    else:
        assert r.cases["x"] == pytest.approx(expected.cases["x"])


def test_sha256_of_a_single_file_and_of_a_folder(tmp_path):
    ref, pred = write_classification(tmp_path, n_cases=30, seed=1)
    r = score("classification", ref, pred, options=FAST)
    assert r.meta["predictions_sha256"] == hashlib.sha256(pred.read_bytes()).hexdigest()


def test_classification_report(tmp_path):
    ref, pred = write_classification(tmp_path, n_cases=200, prevalence=0.1, seed=4)
    r = score("classification", ref, pred, options=ScoreOptions(bootstrap=100))
    assert r.meta["prevalence"]["1"] == pytest.approx(
        np.mean([line.endswith(",1") for line in ref.read_text().splitlines()[1:]])
    )
    assert r.meta["intervals"]["auc_roc"]["method"] == "delong"
    assert r.meta["intervals"]["sensitivity"]["method"] == "wilson"
    assert r.meta["intervals"]["brier"]["method"] == "bootstrap"
    assert set(r.cases["case_0000"]) == {"correct", "brier", "p/1"}
    assert r.aggregates["brier"] == pytest.approx(np.mean([c["brier"] for c in r.cases.values()]))
    assert r.meta["sens_at_spec_threshold"] is not None


def test_classification_hard_labels_and_multiclass(tmp_path):
    (tmp_path / "ref.csv").write_text("case_id,label\na,0\nb,1\nc,2\nd,2\n")
    (tmp_path / "pred.csv").write_text("case_id,label\na,0\nb,2\nc,2\nd,2\n")
    r = score("classification", tmp_path / "ref.csv", tmp_path / "pred.csv", options=FAST)
    assert r.aggregates["auc_roc"] is None
    assert "hard-label" in r.meta["undefined"]["auc_roc"]
    assert r.aggregates["sensitivity/2"] == 1.0 and r.aggregates["sensitivity/1"] == 0.0
    assert r.meta["classes"] == [0, 1, 2]


def test_classification_zip_with_one_csv(tmp_path):
    ref, pred = write_classification(tmp_path, n_cases=20, seed=3)
    with zipfile.ZipFile(tmp_path / "sub.zip", "w") as zf:
        zf.write(pred, "predictions.csv")
    a = score("classification", ref, pred, options=FAST)
    b = score("classification", ref, tmp_path / "sub.zip", options=FAST)
    assert a.aggregates == b.aggregates


def test_sparse_large_labels_are_counted_without_looping_over_all_values(tmp_path):
    import nibabel as nib

    ref_arr = cube().astype(np.uint16) * 1000
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    nib.save(nib.Nifti1Image(ref_arr, np.eye(4)), tmp_path / "ref" / "a.nii.gz")
    nib.save(nib.Nifti1Image(ref_arr, np.eye(4)), tmp_path / "pred" / "a.nii.gz")
    r = score(
        "segmentation", tmp_path / "ref", tmp_path / "pred", options=ScoreOptions(bootstrap=0)
    )
    assert r.meta["labels"] == [1000]
    assert r.cases["a"]["dice"] == 1.0


def test_classification_row_order_does_not_matter(tmp_path):
    ref, pred = write_classification(tmp_path, n_cases=50, seed=9)
    header, *rows = pred.read_text().splitlines()
    rng = np.random.default_rng(0)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([header, *(rows[i] for i in rng.permutation(len(rows)))]) + "\n")
    a = score("classification", ref, pred, options=FAST)
    b = score("classification", ref, shuffled, options=FAST)
    assert a.aggregates == b.aggregates
    assert a.cases == b.cases
    assert a.meta["intervals"] == b.meta["intervals"]


def test_classification_parts_match_scoring_each_part_on_its_own(tmp_path):
    """Scoring one leaderboard part at a time (case ids in any order, repeated, as numbers)
    gives what scoring a file of only that part's rows gives, case for case, with the part's
    missing cases named in id order; a second submission against the same parts reuses what
    was worked out for the first and must still see its own rows."""
    rng = np.random.default_rng(5)
    ids = [f"c{i}" for i in rng.permutation(300)] + ["10", "9", "b\u00e9", "B", "a", "\u00e9"]
    labels = rng.integers(0, 2, len(ids))
    (tmp_path / "ref.csv").write_text(
        "case_id,label\n" + "".join(f"{c},{y}\n" for c, y in zip(ids, labels, strict=True))
    )
    order = list(rng.permutation(len(ids)))
    part_a = [ids[i] for i in order[:200]] + [ids[order[0]], ids[order[1]]]  # repeated ids
    part_b = [ids[i] for i in order[200:]]
    part_b = [9 if c == "9" else c for c in part_b] + ([9] if "9" not in part_b else [])
    for seed, absent in ((1, set()), (2, set(ids[i] for i in order[::7]))):
        scores = np.random.default_rng(seed).random(len(ids))
        kept = [i for i, c in enumerate(ids) if c not in absent]
        pred = tmp_path / f"pred{seed}.csv"
        pred.write_text(
            "case_id,score\n" + "".join(f"{ids[i]},{float(scores[i])!r}\n" for i in reversed(kept))
        )
        for part in (part_a, part_b, None):
            wanted = sorted({str(c) for c in part or ids})
            opts = ScoreOptions(bootstrap=0, case_ids=part, on_missing="worst")
            r = score("classification", tmp_path / "ref.csv", pred, options=opts)
            # the same part written out as its own reference and predictions
            sub = tmp_path / f"sub{seed}"
            sub.mkdir(exist_ok=True)
            index = {c: i for i, c in enumerate(ids)}
            (sub / "ref.csv").write_text(
                "case_id,label\n" + "".join(f"{c},{labels[index[c]]}\n" for c in wanted)
            )
            rows = [c for c in wanted if c not in absent]
            (sub / "pred.csv").write_text(
                "case_id,score\n" + "".join(f"{c},{float(scores[index[c]])!r}\n" for c in rows)
            )
            alone = score(
                "classification",
                sub / "ref.csv",
                sub / "pred.csv",
                options=ScoreOptions(bootstrap=0, on_missing="worst"),
            )
            assert list(r.cases) == wanted
            assert r.cases == alone.cases
            assert r.aggregates == alone.aggregates
            assert r.meta["missing_cases"] == [c for c in wanted if c in absent]
            assert r.meta["worst_filled"] == ({"*": len(absent & set(wanted))} if absent else {})
            assert r.meta["n_cases"] == len(wanted)
            if part is not None:
                # the same predictions against the smaller reference: matched afresh
                with pytest.raises(InvalidSubmission, match="unknown case id"):
                    score("classification", sub / "ref.csv", pred, options=opts)


def test_classification_part_naming_an_unknown_case_is_a_reference_error(tmp_path):
    ref, pred = write_classification(tmp_path, n_cases=20, seed=3)
    with pytest.raises(InvalidReference, match="case_ids not in the reference: nope"):
        score("classification", ref, pred, options=ScoreOptions(bootstrap=0, case_ids=["nope"]))


def test_a_reference_stays_parsed_while_many_submissions_come_and_go(tmp_path, monkeypatch):
    """The in-process caches drop the least recently used entry: a reference read for every
    submission is parsed once, however many submissions' own entries pass through."""
    import evaluator.readers.tables as tables

    ref, _ = write_classification(tmp_path, n_cases=30, seed=1)
    parsed = []
    real = tables.read_reference_csv
    monkeypatch.setattr(
        tables, "read_reference_csv", lambda *a, **k: parsed.append(1) or real(*a, **k)
    )
    for i in range(20):
        _, pred = write_classification(tmp_path / f"s{i}", n_cases=30, seed=1)
        pred.write_text(pred.read_text() + "\n" * (i % 3))  # another file, same rows
        score("classification", ref, pred, options=ScoreOptions(bootstrap=0))
    assert len(parsed) == 1
