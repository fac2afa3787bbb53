"""Organizers' Codabench/CodaLab scoring and ingestion programs, run in the real sandboxes.

Programs are written by the tests into temporary folders; the sandboxed ones run on both backends
(Docker and bubblewrap) where that is cheap. Command translation and score parsing are tested
without a sandbox at the end.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from evaluator.sandbox import (
    Limits,
    OutputPolicy,
    Program,
    ProgramError,
    SandboxBackend,
    ingestion_run,
    program_read,
    scoring_run,
    translate_command,
)
from evaluator.sandbox.programs import (
    parse_per_case_csv,
    parse_scores_json,
    parse_scores_txt,
    program_argv,
)

from .conftest import SECRET, listening

pytestmark = [pytest.mark.timeout(180)]

LIMITS = Limits(
    time_limit_s=60,
    memory_bytes=512 * 2**20,
    cpus=1,
    pids=64,
    output_bytes=8 * 2**20,
    tmp_bytes=16 * 2**20,
)
BACKENDS = [pytest.param("docker", marks=pytest.mark.docker), "bwrap"]

ACCURACY = """
import csv, json, os, sys
input_dir, output_dir = sys.argv[1], sys.argv[2]
def read(path):
    with open(path) as handle:
        return {row["case_id"]: row["label"] for row in csv.DictReader(handle)}
truth = read(os.path.join(input_dir, "ref", "labels.csv"))
predicted = read(os.path.join(input_dir, "res", "predictions.csv"))
right = sum(predicted.get(case) == label for case, label in truth.items())
with open(os.path.join(output_dir, "scores.json"), "w") as out:
    json.dump({"accuracy": right / len(truth), "n_cases": len(truth)}, out)
"""

# Codabench programs take their folders as arguments (the command's paths are translated; paths
# written inside a script are not).
PRELUDE = "import sys\nIN, OUT = (sys.argv[1:3] + [None, None])[:2]\n"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> SandboxBackend:
    backend: SandboxBackend = request.getfixturevalue(f"{request.param}_backend")
    return backend


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    """``ref`` (4 labelled cases, one carrying the secret) and ``res`` (3 of 4 right)."""
    ref = tmp_path / "ref"
    res = tmp_path / "res"
    ref.mkdir()
    res.mkdir()
    (ref / "labels.csv").write_text(
        "case_id,label,note\ncase0,0,x\ncase1,1,x\ncase2,0,x\ncase3,1," + SECRET + "\n"
    )
    (res / "predictions.csv").write_text("case_id,label\ncase0,0\ncase1,1\ncase2,1\ncase3,1\n")
    return ref, res


def make_program(
    folder: Path,
    script: str,
    *,
    command: str = "python3 /app/program/score.py /app/input /app/output",
    metadata: str = "metadata.yaml",
    name: str = "score.py",
) -> Program:
    folder.mkdir(parents=True)
    (folder / name).write_text(PRELUDE + textwrap.dedent(script))
    (folder / metadata).write_text(f"command: {json.dumps(command)}\n")
    return program_read(folder)


def score(
    backend: SandboxBackend,
    tmp_path: Path,
    data: tuple[Path, Path],
    script: str,
    limits: Limits = LIMITS,
    **kwargs: str,
):  # type: ignore[no-untyped-def]
    program = make_program(tmp_path / "scoring_program", script, **kwargs)
    return scoring_run(
        program=program,
        reference_dir=data[0],
        results_dir=data[1],
        output_dir=tmp_path / "scores",
        limits=limits,
        backend=backend,
        label="test-programs",
    )


# --- Scoring programs in the sandbox ----------------------------------------------------------


def test_csv_accuracy_program_scores_correctly(backend, data, tmp_path):
    result = score(backend, tmp_path, data, ACCURACY)
    assert result.scores == {"accuracy": 0.75, "n_cases": 4.0}
    assert result.per_case is None
    assert result.run.ok and result.run.output_files == ("scores.json",)
    assert (tmp_path / "scores" / "scores.json").is_file()


def test_codalab_metadata_with_placeholders_writes_scores_txt(backend, data, tmp_path):
    script = """
    import csv, os, sys
    input_dir, output_dir = sys.argv[1], sys.argv[2]
    assert os.getcwd() == os.path.dirname(os.path.abspath(__file__)), os.getcwd()
    assert os.path.isdir("/tmp/shared")
    rows = list(csv.DictReader(open(os.path.join(input_dir, "res", "predictions.csv"))))
    with open(os.path.join(output_dir, "scores.txt"), "w") as out:
        out.write(f"set1_score: {len(rows) / 8}\\nDuration: 2\\n")
    """
    result = score(
        backend,
        tmp_path,
        data,
        script,
        command="python $program/score.py $input $output",
        metadata="metadata",
    )
    assert result.scores == {"set1_score": 0.5, "Duration": 2.0}
    assert result.run.output_files == ("scores.txt",)


def test_without_a_shell_the_command_is_split_and_run_from_the_program_folder(
    bwrap_backend, data, tmp_path, monkeypatch
):
    monkeypatch.setattr("evaluator.sandbox.programs._image_has_shell", lambda backend: False)
    result = score(
        bwrap_backend,
        tmp_path,
        data,
        ACCURACY,
        command="python score.py /app/input $output",
    )
    assert result.scores["accuracy"] == 0.75
    assert "/bin/sh" not in result.run.logs_tail


def test_program_exiting_1_is_an_error_with_logs(backend, data, tmp_path):
    script = """
    import sys
    print("SCORER-TRACEBACK: labels.csv has no column 'grade'", file=sys.stderr)
    sys.exit(1)
    """
    with pytest.raises(ProgramError, match="exit code 1") as caught:
        score(backend, tmp_path, data, script)
    assert "SCORER-TRACEBACK" in caught.value.logs
    assert "exit_code" in str(caught.value)


def test_program_writing_no_scores_is_an_error(backend, data, tmp_path):
    with pytest.raises(ProgramError, match=r"wrote no scores\.json or scores\.txt") as caught:
        score(backend, tmp_path, data, "print('forgot to write scores')\n")
    assert "forgot to write scores" in caught.value.logs


def test_program_writing_only_detailed_results_is_an_error(bwrap_backend, data, tmp_path):
    script = """
    open(OUT + "/detailed_results.html", "w").write("<p>hi</p>")
    """
    with pytest.raises(ProgramError, match=r"wrote no scores\.json or scores\.txt"):
        score(bwrap_backend, tmp_path, data, script)


def test_program_writing_a_string_score_is_refused(backend, data, tmp_path):
    script = """
    import json
    json.dump({"acc": "high"}, open(OUT + "/scores.json", "w"))
    """
    with pytest.raises(ProgramError, match=r"scores\.json: 'acc' is not a number \('high'\)"):
        score(backend, tmp_path, data, script)


@pytest.mark.parametrize(("value", "shown"), [("Infinity", "inf"), ("NaN", "nan")])
def test_program_writing_infinity_or_nan_is_refused(bwrap_backend, data, tmp_path, value, shown):
    script = f"""
    open(OUT + "/scores.json", "w").write('{{"accuracy": {value}}}')
    """
    with pytest.raises(ProgramError) as caught:
        score(bwrap_backend, tmp_path, data, script)
    assert str(caught.value) == f"scores.json: 'accuracy' is not a finite number ('{shown}')"


@pytest.mark.docker
def test_program_writing_infinity_is_refused_on_docker(docker_backend, data, tmp_path):
    script = """
    open(OUT + "/scores.json", "w").write('{"accuracy": Infinity}')
    """
    with pytest.raises(ProgramError, match="not a finite number"):
        score(docker_backend, tmp_path, data, script)


def test_program_past_the_time_limit_is_stopped(backend, data, tmp_path):
    script = """
    import time
    time.sleep(60)
    """
    limits = Limits(time_limit_s=3, memory_bytes=512 * 2**20, output_bytes=8 * 2**20)
    with pytest.raises(ProgramError, match=r"time_limit.*Time limit exceeded \(3 s\)"):
        score(backend, tmp_path, data, script, limits=limits)


def test_program_cannot_reach_the_network(backend, data, tmp_path):
    assert listening("127.0.0.1:5432"), "PostgreSQL must listen on the host for this to mean much"
    script = """
    import json, socket
    def reached(host, port):
        try:
            with socket.create_connection((host, port), timeout=3):
                return 1
        except OSError:
            return 0
    json.dump(
        {"internet": reached("1.1.1.1", 53), "loopback": reached("127.0.0.1", 5432)},
        open(OUT + "/scores.json", "w"),
    )
    """
    result = score(backend, tmp_path, data, script)
    assert result.scores == {"internet": 0.0, "loopback": 0.0}


def test_program_writing_per_case_scores(backend, data, tmp_path):
    script = """
    import csv, json
    truth = {r["case_id"]: r["label"] for r in csv.DictReader(open(IN + "/ref/labels.csv"))}
    pred = {r["case_id"]: r["label"] for r in csv.DictReader(open(IN + "/res/predictions.csv"))}
    with open(OUT + "/scores_per_case.csv", "w") as out:
        out.write("case_id,correct,label\\n")
        for case, label in truth.items():
            out.write(f"{case},{int(pred[case] == label)},{label}\\n")
    json.dump({"accuracy": 0.75}, open(OUT + "/scores.json", "w"))
    open(OUT + "/detailed_results.html", "w").write("<table></table>")
    """
    result = score(backend, tmp_path, data, script)
    assert result.scores == {"accuracy": 0.75}
    assert result.per_case == {
        "case0": {"correct": 1.0, "label": 0.0},
        "case1": {"correct": 1.0, "label": 1.0},
        "case2": {"correct": 0.0, "label": 0.0},
        "case3": {"correct": 1.0, "label": 1.0},
    }
    assert set(result.run.output_files) == {
        "scores.json",
        "scores_per_case.csv",
        "detailed_results.html",
    }


def test_program_writing_a_bad_per_case_csv_is_refused(bwrap_backend, data, tmp_path):
    script = """
    import json
    open(OUT + "/scores_per_case.csv", "w").write("case,dice\\ncase0,0.5\\n")
    json.dump({"dice": 0.5}, open(OUT + "/scores.json", "w"))
    """
    with pytest.raises(ProgramError, match=r"scores_per_case\.csv: no 'case_id' column"):
        score(bwrap_backend, tmp_path, data, script)


def test_program_writing_other_files_is_refused(bwrap_backend, data, tmp_path):
    script = """
    import json
    json.dump({"accuracy": 1.0}, open(OUT + "/scores.json", "w"))
    open(OUT + "/labels_copy.csv", "w").write("leak")
    """
    with pytest.raises(ProgramError, match="invalid_output") as caught:
        score(bwrap_backend, tmp_path, data, script)
    assert "labels_copy.csv" in caught.value.logs  # organizers see which file
    assert list((tmp_path / "scores").iterdir()) == []


# --- Ingestion programs ------------------------------------------------------------------------

INGESTION = """
import csv, os, sys
data, output, submission, shared = sys.argv[1:5]
sys.path.insert(0, submission)
from model import predict
cases = sorted(name[:-4] for name in os.listdir(data) if name.endswith(".txt"))
with open(os.path.join(output, "predictions.csv"), "w") as out:
    out.write("case_id,label\\n")
    for case in cases:
        value = open(os.path.join(data, case + ".txt")).read()
        out.write(f"{case},{predict(value)}\\n")
os.makedirs(os.path.join(output, "extra"), exist_ok=True)
with open(os.path.join(output, "extra", "ref_visible.txt"), "w") as out:
    out.write(f"{os.path.exists('/opt/input/ref')} {os.path.exists('/reference/labels.csv')}")
with open(os.path.join(shared, "note"), "w") as out:
    out.write("shared works")
"""

MODEL = """
def predict(value):
    return 1 if int(value) > 50 else 0
"""


def test_ingestion_runs_participant_code_without_the_reference(backend, data, tmp_path):
    inputs = tmp_path / "input_data"
    inputs.mkdir()
    for i, level in enumerate((10, 90, 80, 99)):
        (inputs / f"case{i}.txt").write_text(str(level))
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "model.py").write_text(MODEL)
    program = make_program(
        tmp_path / "ingestion_program",
        INGESTION,
        command="python $program/ingest.py $input $output $submission_program $shared",
        name="ingest.py",
    )
    predictions = tmp_path / "predictions"
    result = ingestion_run(
        program=program,
        submission_dir=submission,
        input_dir=inputs,
        output_dir=predictions,
        limits=LIMITS,
        backend=backend,
        label="test-ingestion",
    )
    assert result.ok, result.logs_tail
    assert set(result.output_files) == {"predictions.csv", "extra/ref_visible.txt"}
    assert (predictions / "predictions.csv").read_text() == (
        "case_id,label\ncase0,0\ncase1,1\ncase2,1\ncase3,1\n"
    )
    assert (predictions / "extra" / "ref_visible.txt").read_text() == "False False"
    assert SECRET not in result.logs_tail

    # Scoring is a separate run on what ingestion wrote.
    scored = scoring_run(
        program=make_program(tmp_path / "scoring_program", ACCURACY),
        reference_dir=data[0],
        results_dir=predictions,
        output_dir=tmp_path / "scores",
        limits=LIMITS,
        backend=backend,
        label="test-programs",
    )
    assert scored.scores["accuracy"] == 0.75


def test_programs_with_app_paths_written_into_their_code_run(backend, data, tmp_path):
    """Codabench programs often write /app/... into their own code rather than take folders
    as arguments: the evaluator image links /app/* to where the sandbox mounts each folder."""
    hard_coded_scoring = """
    import csv, json
    def read(path):
        with open(path) as handle:
            return {row["case_id"]: row["label"] for row in csv.DictReader(handle)}
    truth = read("/app/input/ref/labels.csv")
    predicted = read("/app/input/res/predictions.csv")
    right = sum(predicted.get(case) == label for case, label in truth.items())
    with open("/app/output/scores.json", "w") as out:
        json.dump({"accuracy": right / len(truth)}, out)
    """
    result = score(backend, tmp_path, data, hard_coded_scoring, command="python3 score.py")
    assert result.scores == {"accuracy": 0.75}

    inputs = tmp_path / "input_data"
    inputs.mkdir()
    (inputs / "case0.txt").write_text("90")
    submission = tmp_path / "submission"
    submission.mkdir()
    (submission / "model.py").write_text("def predict(level):\n    return int(level > 50)\n")
    hard_coded_ingestion = """
    import os, sys
    sys.path.insert(0, "/app/ingested_program")
    import model
    level = int(open("/app/input_data/case0.txt").read())
    with open("/app/output/predictions.csv", "w") as out:
        out.write(f"case_id,label\\ncase0,{model.predict(level)}\\n")
    with open("/app/output/ref.txt", "w") as out:
        out.write(str(os.path.exists("/app/input/ref")))
    """
    predictions = tmp_path / "predictions"
    run = ingestion_run(
        program=make_program(
            tmp_path / "ingestion_program", hard_coded_ingestion, command="python3 ingest.py",
            name="ingest.py",
        ),
        submission_dir=submission,
        input_dir=inputs,
        output_dir=predictions,
        limits=LIMITS,
        backend=backend,
        label="test-ingestion",
    )  # fmt: skip
    assert run.ok, run.logs_tail
    assert (predictions / "predictions.csv").read_text() == "case_id,label\ncase0,1\n"
    assert (predictions / "ref.txt").read_text() == "False"  # no reference in an ingestion run


# --- Reading programs (no sandbox) -----------------------------------------------------------


def test_program_read_prefers_metadata_yaml(tmp_path):
    folder = tmp_path / "prog"
    folder.mkdir()
    (folder / "metadata").write_text("command: python old.py\n")
    (folder / "metadata.yaml").write_text("command: python3 new.py\ndescription: x\n")
    assert program_read(folder) == Program(folder=folder, command="python3 new.py")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("command: [unclosed\n", r"scoring_program/metadata\.yaml: not valid YAML"),
        ("description: no command here\n", r"scoring_program/metadata\.yaml: no 'command' key"),
        ("command: ''\n", "'command' must be a non-empty string"),
        ("command: [python3, score.py]\n", "'command' must be a non-empty string"),
        ("- just\n- a list\n", "not a YAML mapping"),
        ("command: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ],
)
def test_program_read_refuses_bad_metadata(tmp_path, text, message):
    folder = tmp_path / "scoring_program"
    folder.mkdir()
    (folder / "metadata.yaml").write_text(text)
    with pytest.raises(ProgramError, match=message):
        program_read(folder)


def test_program_read_refuses_missing_metadata_links_and_huge_files(tmp_path):
    folder = tmp_path / "scoring_program"
    folder.mkdir()
    with pytest.raises(ProgramError, match=r"no metadata\.yaml or metadata file"):
        program_read(folder)
    (folder / "metadata.yaml").write_text("command: x\n# " + "x" * 70_000 + "\n")
    with pytest.raises(ProgramError, match="larger than 64 KiB"):
        program_read(folder)
    (folder / "metadata.yaml").write_text("command: python3 score.py\n")
    os.symlink("/etc/passwd", folder / "passwd")
    with pytest.raises(ProgramError, match="scoring_program/passwd: symbolic links"):
        program_read(folder)


# --- Command translation (no sandbox) -------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "kind", "expected"),
    [
        (
            "python3 /app/program/score.py /app/input /app/output",
            "scoring",
            "python3 /opt/program/score.py /opt/input /output",
        ),
        (
            "python /app/program/score.py /app/input/ref /app/input/res /app/output/",
            "scoring",
            "python3 /opt/program/score.py /opt/input/ref /opt/input/res /output/",
        ),
        (
            "python $program/score.py $input $output",
            "scoring",
            "python3 /opt/program/score.py /opt/input /output",
        ),
        (
            "python $ingestion_program/ingest.py $input $output $submission_program $shared",
            "ingestion",
            "python3 /opt/program/ingest.py /input /output /opt/ingested_program /tmp/shared",
        ),
        (
            "python3 /app/program/ingest.py /app/input_data /app/output /app/ingested_program",
            "ingestion",
            "python3 /opt/program/ingest.py /input /output /opt/ingested_program",
        ),
        ("python $program/s.py $hidden $predictions $tmp", "scoring", None),
        ("pythonista /app/inputs /x/app/program $inputs $HOME", "scoring", "same"),
        ("cd /app/shared && python3 run.py", "ingestion", "cd /tmp/shared && python3 run.py"),
    ],
)
def test_commands_are_translated_to_the_sandbox_layout(command, kind, expected):
    if expected is None:
        expected = "python3 /opt/program/s.py /opt/input/ref /opt/input/res /output"
    if expected == "same":
        expected = command
    assert translate_command(command, kind=kind) == expected


def test_program_argv_uses_the_shell_or_a_trampoline():
    argv = program_argv("python $program/score.py $input $output", kind="scoring")
    assert argv[:2] == ("/bin/sh", "-c")
    assert "cd /opt/program" in argv[2] and "mkdir -p /tmp/shared" in argv[2]
    assert argv[2].rstrip().endswith("python3 /opt/program/score.py /opt/input /output")
    split = program_argv("python 'my score.py' $output", kind="scoring", shell=False)
    assert split[0] == "python3" and split[-3:] == ("python3", "my score.py", "/output")
    with pytest.raises(ProgramError, match="cannot be split"):
        program_argv("python 'unclosed", kind="scoring", shell=False)


# --- Score parsing (no sandbox) ---------------------------------------------------------------


def test_scores_json_and_txt_are_parsed():
    assert parse_scores_json('{"dice": 0.8, "hd95": 3}') == {"dice": 0.8, "hd95": 3.0}
    assert parse_scores_txt("set1_score: 0.8\nDuration: 12\n") == {
        "set1_score": 0.8,
        "Duration": 12.0,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"ok": true}', r"'ok' is not a number \(True\)"),
        ('{"x": null}', r"'x' is not a number \(None\)"),
        ('{"x": {"nested": 1}}', "'x' is not a number"),
        ('{"x": "0.5"}', r"'x' is not a number \('0.5'\)"),
        ('{"x": -Infinity}', r"'x' is not a finite number \('-inf'\)"),
        ('{"x": 1e999}', "not a finite number"),
        ("{}", "scores.json: no scores"),
        ("[1, 2]", "not a mapping"),
        ("{not json", "scores.json: not valid JSON"),
        ('{"' + "k" * 65 + '": 1}', "must be 1 to 64 characters"),
    ],
)
def test_bad_scores_json_is_refused(text, message):
    with pytest.raises(ProgramError, match=message):
        parse_scores_json(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("acc: high\n", r"scores\.txt: 'acc' is not a number \('high'\)"),
        ("acc: .inf\n", r"'acc' is not a finite number \('inf'\)"),
        ("acc: .nan\n", "not a finite number"),
        ("acc: yes\n", "not a number"),
        ("1: 0.5\n", "the score name 1 is not a string"),
        ("", "not a mapping"),
        ("acc: [0.5\n", r"scores\.txt: not 'name: value' lines"),
    ],
)
def test_bad_scores_txt_is_refused(text, message):
    with pytest.raises(ProgramError, match=message):
        parse_scores_txt(text)


def test_per_case_csv_is_parsed():
    text = "case_id,dice,hd95\r\ncase0,0.5,3\r\ncase1,1,0\r\n"
    assert parse_per_case_csv(text) == {
        "case0": {"dice": 0.5, "hd95": 3.0},
        "case1": {"dice": 1.0, "hd95": 0.0},
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("case,dice\nc0,1\n", "no 'case_id' column"),
        ("case_id\nc0\n", "no score columns"),
        ("case_id,dice\n", "no cases"),
        ("case_id,dice\nc0,high\n", r"line 2, column 'dice' is not a number \('high'\)"),
        ("case_id,dice\nc0,nan\n", "not a finite number"),
        ("case_id,dice\nc0,\n", "not a number"),
        ("case_id,dice\nc0,1\nc0,2\n", "case 'c0' appears twice"),
        ("case_id,dice\nc0,1,2\n", "line 2 has 3 fields, not 2"),
        ("case_id,dice,dice\nc0,1,2\n", "appears twice"),
    ],
)
def test_bad_per_case_csv_is_refused(text, message):
    with pytest.raises(ProgramError, match=message):
        parse_per_case_csv(text)


def test_output_policies_for_programs():
    scores = OutputPolicy.program_scores()
    assert scores.allows("scores.json") and scores.allows("detailed_results.html")
    assert not scores.allows("metrics.json") and not scores.allows("sub/scores.json")
    assert not scores.allows("predictions.csv")
    anything = OutputPolicy.any_files()
    assert anything.allows("predictions.npy") and anything.allows("sub/result.bin")
    assert anything.max_depth == 2
    assert not OutputPolicy.predictions().allows("predictions.npy")  # unchanged
