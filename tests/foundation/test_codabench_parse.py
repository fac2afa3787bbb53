"""Reading Codabench version-2 bundles: realistic bundles parse into exactly the expected
structure with every unmapped key reported; malformed or unsafe bundles raise CodabenchError with
one message naming the file and the problem."""

from __future__ import annotations

import os
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from challenges.codabench import (
    CodabenchError,
    Column,
    CPhase,
    CTask,
    Leaderboard,
    Page,
    Solution,
    describe,
    open_codabench_bundle,
    read_competition,
)

SCORE_PY = """\
import csv, json, sys
from pathlib import Path
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
truth = {r["id"]: r["label"] for r in csv.DictReader(open(inp / "ref" / "truth.csv"))}
pred = {r["id"]: r["label"] for r in csv.DictReader(open(inp / "res" / "predictions.csv"))}
acc = sum(pred.get(k) == v for k, v in truth.items()) / len(truth)
(out / "scores.json").write_text(json.dumps({"accuracy": acc, "duration": 0.1}))
"""

RESULTS_YAML = """\
version: 2
title: Lesion classification (results)
description: Submit a CSV of predictions.
image: logo.png
registration_auto_approve: true
docker_image: codalab/codalab-legacy:py37
terms: pages/terms.md
pages:
  - title: Overview
    file: pages/overview.md
tasks:
  - index: 0
    name: Accuracy
    description: Scores predictions.csv against the truth.
    scoring_program: scoring_program
    reference_data: reference_data/
solutions:
  - index: 0
    tasks: [0]
    path: solution
phases:
  - index: 0
    name: Development
    description: Tune your model.
    start: 2024-01-15
    end: 2024-03-01 12:30
    max_submissions_per_day: 3
    max_submissions: 50
    execution_time_limit: 300
    tasks: [0]
  - index: 1
    name: Final
    start: "2024-03-02T00:00:00Z"
    tasks: [0]
leaderboards:
  - title: Results
    key: main
    columns:
      - title: Duration
        key: duration
        index: 1
        sorting: asc
        hidden: true
      - title: Accuracy
        key: accuracy
        index: 0
        sorting: desc
        precision: 3
"""


def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return folder


def zip_folder(folder: Path, target: Path, *, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return target


def zip_members(target: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return target


def results_bundle(folder: Path, manifest: str = RESULTS_YAML) -> Path:
    return write_files(
        folder,
        {
            "competition.yaml": manifest,
            "logo.png": b"\x89PNG\r\n\x1a\n",
            "pages/terms.md": "Use the data for this challenge only.\n",
            "pages/overview.md": "# Overview\nFind the lesions.\n",
            "scoring_program/metadata.yaml": (
                "command: python3 /app/program/score.py /app/input /app/output\n"
            ),
            "scoring_program/score.py": SCORE_PY,
            "reference_data/truth.csv": "id,label\na,1\nb,0\n",
            "solution/predictions.csv": "id,label\na,1\nb,0\n",
        },
    )


def manifest_of(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "competition.yaml").read_text())


def rewrite(folder: Path, data: dict[str, Any]) -> None:
    (folder / "competition.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# --------------------------------------------------------------------------- good bundles


def test_results_only_bundle_is_read_exactly(tmp_path: Path) -> None:
    root = results_bundle(tmp_path / "results")
    with open_codabench_bundle(root) as opened:
        comp = read_competition(opened)

    assert comp.title == "Lesion classification (results)"
    assert comp.description == "Submit a CSV of predictions."
    assert comp.image == root / "logo.png"
    assert comp.terms == "Use the data for this challenge only.\n"
    assert comp.pages == [Page(title="Overview", markdown="# Overview\nFind the lesions.\n")]
    assert comp.tasks == {
        0: CTask(
            index=0,
            name="Accuracy",
            description="Scores predictions.csv against the truth.",
            scoring_program=root / "scoring_program",
            ingestion_program=None,
            input_data=None,
            reference_data=root / "reference_data",
        )
    }
    assert comp.solutions == [Solution(index=0, task_indexes=[0], path=root / "solution")]
    assert comp.phases == [
        CPhase(
            index=0,
            name="Development",
            description="Tune your model.",
            start=utc(2024, 1, 15),
            end=utc(2024, 3, 1, 12, 30),
            max_submissions_per_day=3,
            max_submissions=50,
            execution_time_limit_s=300,
            task_indexes=[0],
            starting_kit=None,
            public_data=None,
        ),
        # Codabench's defaults: 5 a day, 100 in all, 600 s; no end: open-ended.
        CPhase(
            index=1,
            name="Final",
            description="",
            start=utc(2024, 3, 2),
            end=None,
            max_submissions_per_day=5,
            max_submissions=100,
            execution_time_limit_s=600,
            task_indexes=[0],
            starting_kit=None,
            public_data=None,
        ),
    ]
    assert comp.leaderboards == [
        Leaderboard(
            title="Results",
            key="main",
            columns=[
                Column("accuracy", "Accuracy", 0, "desc", 3, False),
                Column("duration", "Duration", 1, "asc", 2, True),
            ],
        )
    ]
    assert comp.report == [
        "competition.yaml: registration_auto_approve true is not used: "
        "Scanbench members join by accepting the terms",
        "competition.yaml: docker_image 'codalab/codalab-legacy:py37' is not used: "
        "programs run in Scanbench's evaluator image",
    ]


def test_describe_summarises_phases_tasks_and_columns(tmp_path: Path) -> None:
    comp = read_competition(results_bundle(tmp_path / "b"))
    text = describe(comp)
    assert text.splitlines()[0] == "Lesion classification (results)"
    assert "  0. Development: 2024-01-15 00:00 to 2024-03-01 12:30 UTC" in text
    assert "     limits: 3 per day, 50 in total, 300 s per run; tasks: 0" in text
    assert "  1. Final: 2024-03-02 00:00 to open-ended UTC" in text
    assert "  0. Accuracy: scoring_program, reference_data" in text
    assert "  accuracy (Accuracy): higher is better, 3 decimals" in text
    assert "  duration (Duration): lower is better, 2 decimals, hidden" in text
    assert "Not mapped:" in text


CODE_YAML = """\
version: 2
title: Code submission
queue: 8b3f2d4a-queue-vhost
foo: bar
terms: terms.md
tasks:
  - index: 1
    name: Development task
    ingestion_program: ingestion_program.zip
    scoring_program: scoring_program.zip
    input_data: data/input_data
    reference_data: data/reference_data.zip
    ingestion_only_during_scoring: false
  - index: 2
    name: Final task
    ingestion_program: ingestion_program.zip
    scoring_program: scoring_program.zip
    input_data: data/input_data
    reference_data: data/reference_data.zip
phases:
  - name: Final
    start: 2025-06-01 00:00:00
    end: 2025-07-01
    max_submissions_per_day: null
    hide_output: true
    starting_kit: starting_kit
    public_data: public_data.zip
    tasks: [1, 2]
leaderboards:
  - title: Results
    key: main
    submission_rule: Force_Last
    columns:
      - {title: Dice, key: dice, index: 0}
      - {title: Mean, key: avg, index: 1, computation: avg, computation_indexes: [0]}
  - title: Extra
    key: extra
    columns:
      - {title: Dice, key: dice, index: 0}
"""


def test_code_submission_zip_with_nested_zips_and_a_wrapper_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    ingestion = write_files(tmp_path / "ing", {"metadata.yaml": "command: python ingest.py\n"})
    scoring = write_files(tmp_path / "sco", {"metadata.yaml": "command: python s.py\n"})
    reference = write_files(tmp_path / "ref", {"truth.csv": "id,label\n"})
    public = write_files(tmp_path / "pub", {"train.csv": "id\n"})
    write_files(
        src,
        {
            "competition.yaml": CODE_YAML,
            "terms.md": "Terms.\n",
            "data/input_data/case_1.csv": "1,2\n",
            "starting_kit/README.md": "Start here.\n",
        },
    )
    zip_folder(ingestion, src / "ingestion_program.zip")
    zip_folder(scoring, src / "scoring_program.zip")
    zip_folder(reference, src / "data" / "reference_data.zip")
    zip_folder(public, src / "public_data.zip")
    bundle = zip_folder(src, tmp_path / "my.zip", prefix="code-bundle/")

    with open_codabench_bundle(bundle) as root:
        assert root.name == "code-bundle"
        comp = read_competition(root)
        task = comp.tasks[1]
        assert task.ingestion_program == root / "ingestion_program.zip.unzipped"
        assert (task.ingestion_program / "metadata.yaml").read_text() == (
            "command: python ingest.py\n"
        )
        assert task.scoring_program == root / "scoring_program.zip.unzipped"
        assert task.input_data == root / "data" / "input_data"
        assert task.reference_data == root / "data" / "reference_data.zip.unzipped"
        assert (task.reference_data / "truth.csv").is_file()
        # the same zip, named by two tasks, is extracted once and shared
        assert comp.tasks[2].scoring_program == task.scoring_program
        (phase,) = comp.phases
        assert phase.starting_kit == root / "starting_kit"
        assert phase.public_data == root / "public_data.zip.unzipped"
        assert (phase.public_data / "train.csv").is_file()
    assert not root.exists()  # the temporary folder is gone

    assert phase.start == utc(2025, 6, 1) and phase.end == utc(2025, 7, 1)
    assert phase.max_submissions_per_day is None  # null: no daily limit
    assert phase.max_submissions == 100
    assert phase.task_indexes == [1, 2]
    assert comp.leaderboards[0].columns == [Column("dice", "Dice", 0, "desc", 2, False)]
    assert comp.report == [
        "competition.yaml: task 1 ('Development task'): ingestion_only_during_scoring false "
        "is not used: Scanbench runs ingestion before scoring",
        "competition.yaml: phase 'Final': 2 tasks; Scanbench scores a phase with its first "
        "task (task 1)",
        "competition.yaml: phase 'Final': hide_output true is not used: "
        "Scanbench never shows program output to participants",
        "competition.yaml: leaderboard column 'avg' uses computation 'avg': not supported, "
        "the column is dropped",
        "competition.yaml: leaderboard 'Results': submission_rule 'Force_Last' is not used: "
        "the entry selection is set on the Scanbench phase",
        "competition.yaml: leaderboard 'Extra' is not used: Codabench and Scanbench score "
        "every phase on the first leaderboard",
        "competition.yaml: queue '8b3f2d4a-queue-vhost' is not used: "
        "Scanbench runs every submission on its own evaluation workers",
        "competition.yaml: unknown key 'foo' ignored",
    ]


KEY_PUBLIC = "6a1f7e0c-3b7d-4f0e-9a51-2f4c8b1d2e3f"
KEY_SOLUTION = "0d9c1b2a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def exported_manifest() -> dict[str, Any]:
    """competition.yaml as Codabench's competition dump writes it (files, not keys): version
    as the string '2', task files named <kind>-<task pk>.zip at the top, dates as YYYY-MM-DD,
    every phase and leaderboard field written out."""
    return {
        "version": "2",
        "title": "Exported",
        "description": "Dumped from Codabench",
        "docker_image": "codalab/codalab-legacy:py39",
        "queue": None,
        "registration_auto_approve": False,
        "enable_detailed_results": False,
        "forum_enabled": True,
        "terms": "terms.md",
        "pages": [{"title": "Overview", "file": "overview-7.md"}],
        "tasks": [
            {
                "index": 0,
                "name": "Main task",
                "description": "",
                "is_public": False,
                "scoring_program": "scoring_program-12.zip",
                "reference_data": "reference_data-12.zip",
            }
        ],
        "solutions": [
            {"index": 0, "name": "baseline", "description": None, "tasks": [0], "key": KEY_SOLUTION}
        ],
        "phases": [
            {
                "index": 0,
                "name": "Phase 1",
                "description": "",
                "start": "2024-02-01",
                "end": "2024-12-31",
                "max_submissions_per_day": 5,
                "max_submissions": 100,
                "execution_time_limit": 600,
                "auto_migrate_to_this_phase": False,
                "public_data": KEY_PUBLIC,
                "tasks": [0],
                "solutions": [0],
            }
        ],
        "leaderboards": [
            {
                "index": 0,
                "title": "Results",
                "key": "main",
                "hidden": False,
                "submission_rule": "Add",
                "columns": [
                    {
                        "title": "auc",
                        "key": "auc",
                        "index": 0,
                        "sorting": "desc",
                        "hidden": False,
                        "precision": 4,
                    }
                ],
            }
        ],
    }


def test_exported_bundle_with_dataset_keys(tmp_path: Path) -> None:
    root = tmp_path / "exported"
    write_files(root, {"terms.md": "T\n", "overview-7.md": "O\n"})
    rewrite(root, exported_manifest())
    zip_members(root / "scoring_program-12.zip", {"metadata.yaml": "command: x\n"})
    zip_members(root / "reference_data-12.zip", {"truth.csv": "id\n"})

    comp = read_competition(root)

    assert comp.tasks[0].scoring_program == root / "scoring_program-12.zip.unzipped"
    assert comp.tasks[0].reference_data == root / "reference_data-12.zip.unzipped"
    assert comp.solutions == []
    (phase,) = comp.phases
    assert (phase.start, phase.end) == (utc(2024, 2, 1), utc(2024, 12, 31))
    assert phase.public_data is None
    assert comp.leaderboards[0].columns == [Column("auc", "auc", 0, "desc", 4, False)]
    assert comp.report == [
        "competition.yaml: task 0 ('Main task'): is_public false is not used: "
        "Scanbench has no shared task library",
        "competition.yaml: solution 0: name 'baseline' is not used: "
        "a solution is named by its index",
        "competition.yaml: solution 0: description null is not used: "
        "a solution is named by its index",
        f"competition.yaml: solution 0 is the existing Codabench solution '{KEY_SOLUTION}'; "
        "it is not in the bundle and is left out",
        f"competition.yaml: phase 'Phase 1': public_data is the Codabench dataset key "
        f"'{KEY_PUBLIC}'; it is not in the bundle and is left out",
        "competition.yaml: phase 'Phase 1': auto_migrate_to_this_phase false is not used: "
        "Scanbench does not re-submit entries into a new phase",
        "competition.yaml: phase 'Phase 1': solutions [0] is not used: "
        "Codabench ignores it on import too; solutions are read from 'solutions'",
        "competition.yaml: leaderboard 'Results': index 0 is not used: "
        "Scanbench has one leaderboard per phase",
        "competition.yaml: leaderboard 'Results': hidden false is not used: "
        "leaderboard visibility follows Scanbench's public/private parts",
        "competition.yaml: leaderboard 'Results': submission_rule 'Add' is not used: "
        "the entry selection is set on the Scanbench phase",
        "competition.yaml: docker_image 'codalab/codalab-legacy:py39' is not used: "
        "programs run in Scanbench's evaluator image",
        "competition.yaml: queue null is not used: "
        "Scanbench runs every submission on its own evaluation workers",
        "competition.yaml: registration_auto_approve false is not used: "
        "Scanbench members join by accepting the terms",
        "competition.yaml: enable_detailed_results false is not used: "
        "Scanbench has no detailed-results page",
        "competition.yaml: forum_enabled true is not used: Scanbench has no forum",
    ]


def test_export_with_keys_instead_of_files_is_refused(tmp_path: Path) -> None:
    """With "keys instead of files" the dump writes each task's key and dataset keys and no
    files; Codabench then links the existing task, which Scanbench cannot reach."""
    root = tmp_path / "keys"
    write_files(root, {"terms.md": "T\n", "overview-7.md": "O\n"})
    data = exported_manifest()
    data["tasks"][0] |= {
        "key": "c0ffee00-0000-4000-8000-000000000001",
        "scoring_program": "c0ffee00-0000-4000-8000-000000000002",
        "reference_data": "c0ffee00-0000-4000-8000-000000000003",
    }
    rewrite(root, data)
    with pytest.raises(CodabenchError) as exc:
        read_competition(root)
    assert str(exc.value) == (
        "competition.yaml: phase 'Phase 1': task 0 is the existing Codabench task "
        "'c0ffee00-0000-4000-8000-000000000001'; its programs and data are not in the bundle "
        "(export the competition with its files, not keys)"
    )


def test_task_file_named_by_a_dataset_key_is_an_error(tmp_path: Path) -> None:
    root = results_bundle(tmp_path / "b")
    data = manifest_of(root)
    data["tasks"][0]["reference_data"] = KEY_PUBLIC
    rewrite(root, data)
    with pytest.raises(CodabenchError) as exc:
        read_competition(root)
    assert str(exc.value).startswith(
        f"competition.yaml: task 0 ('Accuracy'): reference_data is the Codabench dataset key "
        f"'{KEY_PUBLIC}', which is not in the bundle; it is needed to score"
    )


# --------------------------------------------------------------------------- malformed bundles


def test_zip_without_competition_yaml(tmp_path: Path) -> None:
    bundle = zip_members(tmp_path / "my.zip", {"challenge.yaml": "slug: x\n"})
    with pytest.raises(CodabenchError) as exc, open_codabench_bundle(bundle):
        pass
    assert str(exc.value) == "my.zip: no competition.yaml at the top (or in one top-level folder)"


def test_not_a_zip(tmp_path: Path) -> None:
    bundle = tmp_path / "notes.zip"
    bundle.write_text("hello")
    with pytest.raises(CodabenchError) as exc, open_codabench_bundle(bundle):
        pass
    assert str(exc.value) == "notes.zip: neither a folder nor a zip archive"


def test_zip_slip_is_refused(tmp_path: Path) -> None:
    bundle = zip_members(
        tmp_path / "my.zip", {"competition.yaml": "version: 2\n", "../evil.txt": "x"}
    )
    with pytest.raises(CodabenchError) as exc, open_codabench_bundle(bundle):
        pass
    assert str(exc.value) == "my.zip: zip entry '../evil.txt': '..' in the path"
    assert not (tmp_path / "evil.txt").exists()


def test_zip_with_a_symlink_member_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "my.zip"
    with zipfile.ZipFile(bundle, "w") as zf:
        zf.writestr("competition.yaml", "version: 2\n")
        link = zipfile.ZipInfo("reference_data")
        link.external_attr = (0o120777 << 16) | 0
        zf.writestr(link, "/etc")
    with pytest.raises(CodabenchError) as exc, open_codabench_bundle(bundle):
        pass
    assert str(exc.value) == "my.zip: zip entry 'reference_data': symbolic links are not allowed"


def test_nested_zip_slip_is_refused(tmp_path: Path) -> None:
    root = results_bundle(tmp_path / "b")
    zip_members(root / "evil.zip", {"../../escaped.txt": "x"})
    data = manifest_of(root)
    data["tasks"][0]["scoring_program"] = "evil.zip"
    rewrite(root, data)
    with pytest.raises(CodabenchError) as exc:
        read_competition(root)
    assert str(exc.value) == "evil.zip: zip entry '../../escaped.txt': '..' in the path"
    assert not (tmp_path / "escaped.txt").exists()


def test_symlinked_folder_is_refused(tmp_path: Path) -> None:
    root = results_bundle(tmp_path / "b")
    (tmp_path / "secret").mkdir()
    os.symlink(tmp_path / "secret", root / "linked")
    data = manifest_of(root)
    data["tasks"][0]["reference_data"] = "linked"
    rewrite(root, data)
    with pytest.raises(CodabenchError) as exc:
        read_competition(root)
    assert str(exc.value) == (
        "competition.yaml: task 0 ('Accuracy'): reference_data 'linked' is a symbolic link; "
        "links are not followed"
    )


def test_symlink_inside_a_folder_is_refused(tmp_path: Path) -> None:
    root = results_bundle(tmp_path / "b")
    os.symlink("/etc/passwd", root / "reference_data" / "passwd")
    with pytest.raises(CodabenchError) as exc:
        read_competition(root)
    assert str(exc.value) == (
        "competition.yaml: task 0 ('Accuracy'): reference_data 'reference_data/' holds a "
        "symbolic link (reference_data/passwd)"
    )


def _malformed(data: dict[str, Any], case: str) -> None:
    phase, task = data["phases"][0], data["tasks"][0]
    if case == "no version":
        del data["version"]
    elif case == "version 1":
        data["version"] = 1
    elif case == "bad date":
        phase["start"] = "2024-13-45"
    elif case == "end before start":
        phase["end"] = "2024-01-01"
    elif case == "missing file":
        task["scoring_program"] = "scoring.zip"
    elif case == "missing page":
        data["pages"][0]["file"] = "pages/nowhere.md"
    elif case == "undefined task":
        phase["tasks"] = [0, 3]
    elif case == "path leaves":
        task["reference_data"] = "../outside"
    elif case == "absolute path":
        task["reference_data"] = "/etc"
    elif case == "overlap":
        data["phases"][1]["start"] = "2024-02-01"
    elif case == "bad sorting":
        data["leaderboards"][0]["columns"][0]["sorting"] = "up"
    elif case == "no scoring program":
        del task["scoring_program"]
    elif case == "duplicate task":
        data["tasks"].append(dict(task))
    elif case == "singular leaderboard":
        data["leaderboard"] = data.pop("leaderboards")


MALFORMED = {
    "no version": "competition.yaml: no version (Codabench reads that as version 1); "
    "Scanbench reads Codabench version 2 bundles",
    "version 1": "competition.yaml: version 1 is not supported; "
    "Scanbench reads Codabench version 2 bundles",
    "bad date": "competition.yaml: phase 'Development': start '2024-13-45' is not a date "
    "(use YYYY-MM-DD or YYYY-MM-DD HH:MM, UTC)",
    "end before start": "competition.yaml: phase 'Development': end 2024-01-01 00:00 is not "
    "after start 2024-01-15 00:00",
    "missing file": "competition.yaml: task 0 ('Accuracy'): scoring_program 'scoring.zip' "
    "does not exist in the bundle",
    "missing page": "competition.yaml: page 'Overview': file 'pages/nowhere.md' does not exist "
    "in the bundle",
    "undefined task": "competition.yaml: phase 'Development': task 3 is not defined in tasks",
    "path leaves": "competition.yaml: task 0 ('Accuracy'): reference_data '../outside' "
    "leaves the bundle",
    "absolute path": "competition.yaml: task 0 ('Accuracy'): reference_data '/etc' "
    "leaves the bundle",
    "overlap": "competition.yaml: phase 'Final' starts 2024-02-01 00:00, not after phase "
    "'Development' ends 2024-03-01 12:30",
    "bad sorting": "competition.yaml: leaderboard 'Results': column 'duration': sorting 'up' "
    "is not 'desc' or 'asc'",
    "no scoring program": "competition.yaml: task 0 ('Accuracy'): no scoring_program",
    "duplicate task": "competition.yaml: task 0: index used by two tasks",
    "singular leaderboard": "competition.yaml: no leaderboards (found 'leaderboard'; "
    "Codabench reads 'leaderboards')",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bundle_names_file_and_problem(tmp_path: Path, case: str) -> None:
    root = results_bundle(tmp_path / "b")
    data = manifest_of(root)
    # keep the dates as the text the organizer wrote
    data["phases"][0]["start"], data["phases"][0]["end"] = "2024-01-15", "2024-03-01 12:30"
    _malformed(data, case)
    rewrite(root, data)
    with pytest.raises(CodabenchError) as exc:
        read_competition(root)
    assert str(exc.value) == MALFORMED[case]


def test_not_yaml(tmp_path: Path) -> None:
    root = results_bundle(tmp_path / "b", manifest="version: 2\ntitle: [unclosed\n")
    with pytest.raises(CodabenchError, match=r"^competition.yaml: not valid YAML \(line \d+\)$"):
        read_competition(root)


def test_yaml_is_read_safely(tmp_path: Path) -> None:
    root = results_bundle(
        tmp_path / "b", manifest="version: 2\ntitle: !!python/object/apply:os.system ['id']\n"
    )
    with pytest.raises(CodabenchError, match=r"^competition.yaml: not valid YAML"):
        read_competition(root)


def test_oversized_competition_yaml(tmp_path: Path) -> None:
    root = results_bundle(tmp_path / "b", manifest=RESULTS_YAML + "#" * (1 << 20))
    with pytest.raises(CodabenchError, match=r"^competition.yaml: larger than 1048576 bytes$"):
        read_competition(root)


def test_folder_without_competition_yaml(tmp_path: Path) -> None:
    root = write_files(tmp_path / "empty", {"README.md": "hi\n"})
    with pytest.raises(CodabenchError) as exc, open_codabench_bundle(root):
        pass
    assert str(exc.value) == "empty: no competition.yaml at the top (or in one top-level folder)"
