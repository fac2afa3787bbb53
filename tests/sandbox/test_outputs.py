"""Output validation, result messages and backend choice, without any engine."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from evaluator.sandbox import (
    Limits,
    Mount,
    NoSandbox,
    OutputPolicy,
    RunSpec,
    RunStatus,
    get_backend,
)
from evaluator.sandbox.base import result_message
from evaluator.sandbox.cli import parse_size
from evaluator.sandbox.outputs import ChunkReader, collect_tar_stream

LIMITS = Limits(output_bytes=2 * 2**20)


def _stream(members: list[tuple[str, bytes | None, bytes]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == tarfile.DIRTYPE:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif kind in (tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE):
                info.type = kind
                info.linkname = data.decode()
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def collect(members, tmp_path: Path, policy: OutputPolicy | None = None, limits=LIMITS):  # type: ignore[no-untyped-def]
    dest = tmp_path / "dest"
    dest.mkdir(parents=True)
    check = collect_tar_stream(
        _stream(members), dest, policy=policy or OutputPolicy.predictions(), limits=limits
    )
    return check, sorted(p.name for p in dest.rglob("*"))


def test_prediction_files_are_copied(tmp_path):
    check, files = collect(
        [
            ("output/", tarfile.DIRTYPE, b""),
            ("output/predictions.csv", None, b"case_id,score\n"),
            ("output/masks/", tarfile.DIRTYPE, b""),
            ("output/masks/c1.nii.gz", None, b"x"),
        ],
        tmp_path,
    )
    assert check.ok and check.files == ("masks/c1.nii.gz", "predictions.csv")
    assert files == ["c1.nii.gz", "masks", "predictions.csv"]


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        (
            [("output/metrics.json", None, b"{}")],
            "metrics.json: scores are computed by the evaluator",
        ),
        ([("output/score.json", None, b"{}")], "score.json"),
        ([("output/notes.txt", None, b"x")], "not allowed"),
        ([("output/p.csv", tarfile.SYMTYPE, b"/etc/passwd")], "link or special file"),
        ([("output/p.csv", tarfile.LNKTYPE, b"output/q.csv")], "link or special file"),
        ([("output/p.csv", tarfile.FIFOTYPE, b"")], "link or special file"),
        ([("output/../../etc/p.csv", None, b"x")], "leaves /output"),
        ([("output/.hidden.csv", None, b"x")], "name that is not allowed"),
        ([("output/a/b/c/p.csv", None, b"x")], "nested too deep"),
        ([("output/big.csv", None, b"x" * (3 * 2**20))], "output limit of 2 MiB"),
    ],
    ids=[
        "metrics",
        "score",
        "txt",
        "symlink",
        "hardlink",
        "fifo",
        "dotdot",
        "hidden",
        "deep",
        "big",
    ],
)
def test_refusals_leave_nothing_and_name_the_rule_not_the_file(tmp_path, members, reason):
    members = [("output/ok.csv", None, b"case_id,score\n"), *members]
    check, files = collect(members, tmp_path)
    assert not check.ok
    assert reason in check.participant_reason
    assert files == []


def test_the_scorer_policy_allows_metrics_json_only(tmp_path):
    check, _ = collect([("output/metrics.json", None, b"{}")], tmp_path, OutputPolicy.scorer())
    assert check.ok
    check, _ = collect([("output/p.csv", None, b"x")], tmp_path / "2", OutputPolicy.scorer())
    assert not check.ok


def test_the_host_stops_reading_a_stream_past_its_bound(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    stream = _stream([("output/big.csv", None, b"x" * (4 * 2**20))])
    chunks = iter(lambda: stream.read(65536), b"")
    check = collect_tar_stream(
        ChunkReader(chunks, 1024 * 1024), dest, policy=OutputPolicy(), limits=Limits()
    )
    assert not check.ok and check.full
    assert list(dest.iterdir()) == []


def test_messages_are_fixed_text():
    status, message = result_message(
        timed_out=True, oom=False, exit_code=None, output=None, limits=Limits(time_limit_s=60)
    )
    assert (status, message) == (RunStatus.TIME_LIMIT, "Time limit exceeded (60 s).")
    status, message = result_message(
        timed_out=False, oom=True, exit_code=137, output=None, limits=Limits(memory_bytes=2**30)
    )
    assert (status, message) == (RunStatus.OUT_OF_MEMORY, "Out of memory (limit 1024 MiB).")


def test_no_sandbox_refuses_plainly(tmp_path):
    backend = get_backend("none")
    assert isinstance(backend, NoSandbox) and backend.check()
    result = backend.run(RunSpec(input_dir=tmp_path, output_dir=tmp_path / "out"))
    assert result.status is RunStatus.SANDBOX_ERROR
    assert "cannot run code submissions" in result.participant_message
    with pytest.raises(ValueError, match="unknown sandbox backend"):
        get_backend("podman")


def test_specs_refuse_bad_values():
    with pytest.raises(ValueError):
        Limits(time_limit_s=0)
    with pytest.raises(ValueError):
        Mount(source=Path("/x"), target="/input")
    with pytest.raises(ValueError):
        Mount(source=Path("/x"), target="/opt/../etc")
    assert parse_size("4g") == 4 * 2**30 and parse_size("512MiB") == 512 * 2**20
