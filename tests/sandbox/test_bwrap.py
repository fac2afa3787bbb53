"""The bubblewrap backend's own suite: network, host paths, writes, limits, privileges."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator.sandbox import BubblewrapBackend, Limits, Mount, RunSpec, RunStatus

from . import attacks
from .conftest import ROOT, SECRET, host_targets, listening

pytestmark = [pytest.mark.timeout(120)]

SMALL = Limits(
    time_limit_s=30,
    memory_bytes=512 * 2**20,
    cpus=1,
    pids=64,
    output_bytes=8 * 2**20,
    tmp_bytes=16 * 2**20,
)


def run(
    backend: BubblewrapBackend,
    script: str,
    inputs: Path,
    tmp_path: Path,
    limits: Limits = SMALL,
    **kwargs: object,
):  # type: ignore[no-untyped-def]
    code = tmp_path / "attack"
    code.mkdir()
    (code / "main.py").write_text(script)
    spec = RunSpec(
        input_dir=inputs,
        output_dir=tmp_path / "out",
        command=("python3", "/opt/attack/main.py"),
        mounts=(Mount(source=code, target="/opt/attack"),),
        limits=limits,
        **kwargs,  # type: ignore[arg-type]
    )
    result = backend.run(spec)
    print(result.logs_tail)
    assert "[sandbox: bwrap (bubblewrap)" in result.logs_tail  # the logs say which backend ran
    return result


def assert_contained(result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "BREACH" not in result.logs_tail, result.logs_tail
    assert result.status is RunStatus.EXIT_CODE and result.exit_code == attacks.CONTAINED
    assert not (tmp_path / "out" / "breach.csv").exists()


@pytest.mark.usefixtures("host_unchanged")
def test_no_network(bwrap_backend, case_dirs, tmp_path):
    assert listening("127.0.0.1:5432") and listening("127.0.0.1:6379")
    targets = host_targets()
    result = run(
        bwrap_backend,
        attacks.NETWORK,
        case_dirs[0],
        tmp_path,
        environment={"TARGETS": ",".join(targets)},
    )
    assert_contained(result, tmp_path)
    assert "interfaces: ['lo']" in result.logs_tail
    assert result.logs_tail.count("blocked: tcp") == len(targets)


@pytest.mark.usefixtures("host_unchanged")
def test_no_host_paths_and_no_labels(bwrap_backend, case_dirs, tmp_path):
    inputs, labels = case_dirs
    paths = [
        str(labels),
        str(labels / "labels.csv"),
        str(ROOT),
        str(ROOT / "pyproject.toml"),
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/etc/shadow",
        "/reference/labels.csv",
        str(Path.home()),
        str(tmp_path),
    ]
    result = run(
        bwrap_backend,
        attacks.SECRETS,
        inputs,
        tmp_path,
        environment={"SECRET": SECRET, "HOST_PATHS": ",".join(paths)},
    )
    assert_contained(result, tmp_path)


@pytest.mark.usefixtures("host_unchanged")
def test_writes_outside_output_and_tmp_fail(bwrap_backend, case_dirs, tmp_path):
    result = run(bwrap_backend, attacks.WRITE_OUTSIDE, case_dirs[0], tmp_path)
    assert_contained(result, tmp_path)


@pytest.mark.usefixtures("host_unchanged")
def test_output_and_tmp_are_capped(bwrap_backend, case_dirs, tmp_path):
    result = run(bwrap_backend, attacks.FILL_OUTPUT, case_dirs[0], tmp_path)
    assert result.status is RunStatus.INVALID_OUTPUT, result.logs_tail
    assert "output limit of 8 MiB" in result.participant_message
    assert list((tmp_path / "out").iterdir()) == []
    second = tmp_path / "second"
    second.mkdir()
    result = run(bwrap_backend, attacks.FILL_TMP, case_dirs[0], second)
    assert result.ok, result.logs_tail
    assert int(result.logs_tail.split("TMP_WRITTEN ")[1].split()[0]) <= SMALL.tmp_bytes


def test_fork_bomb_is_stopped_and_cleaned_up(bwrap_backend, case_dirs, tmp_path):
    result = run(bwrap_backend, attacks.FORK_BOMB, case_dirs[0], tmp_path)
    assert_contained(result, tmp_path)
    assert int(result.logs_tail.split("FORKED ")[1].split()[0]) < SMALL.pids
    import subprocess

    left = subprocess.run(["pgrep", "-f", "/opt/attack/main.py"], capture_output=True, text=True)
    assert left.stdout.strip() == "", "sandbox processes outlived the run"


def test_memory_bomb_is_contained(bwrap_backend, case_dirs, tmp_path):
    result = run(bwrap_backend, attacks.MEMORY_BOMB, case_dirs[0], tmp_path)
    # The address-space rlimit makes the allocation fail: MemoryError, a non-zero exit.
    assert result.status is RunStatus.EXIT_CODE and result.exit_code == 1, result.logs_tail
    assert "MemoryError" in result.logs_tail


@pytest.mark.parametrize("script", [attacks.CPU_SPIN, attacks.SLEEP_FOREVER], ids=["spin", "sleep"])
def test_time_limit(bwrap_backend, case_dirs, tmp_path, script):
    limits = Limits(time_limit_s=2, memory_bytes=512 * 2**20, output_bytes=8 * 2**20)
    result = run(bwrap_backend, script, case_dirs[0], tmp_path, limits=limits)
    assert result.status is RunStatus.TIME_LIMIT
    assert result.participant_message == "Time limit exceeded (2 s)."
    assert result.wall_s < 8


def test_privileges_cannot_be_raised(bwrap_backend, case_dirs, tmp_path):
    result = run(bwrap_backend, attacks.PRIVILEGES, case_dirs[0], tmp_path)
    assert_contained(result, tmp_path)
    assert "uid 65534 euid 65534" in result.logs_tail


def test_fake_metrics_is_refused(bwrap_backend, case_dirs, tmp_path):
    result = run(bwrap_backend, attacks.FAKE_METRICS, case_dirs[0], tmp_path)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "metrics.json" in result.participant_message


def test_container_images_are_refused_plainly(bwrap_backend, case_dirs, tmp_path):
    result = bwrap_backend.run(
        RunSpec(
            input_dir=case_dirs[0],
            output_dir=tmp_path / "out",
            image="someone/else:latest",
            command=("true",),
        )
    )
    assert result.status is RunStatus.SANDBOX_ERROR
    assert "container images need a Docker engine" in result.participant_message
