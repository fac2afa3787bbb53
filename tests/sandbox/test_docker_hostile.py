"""Hostile container submissions against the Docker backend: each is contained, with a clear
reason, and the host is unchanged. Needs a real Docker engine (CI has one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluator.sandbox import DockerBackend, Limits, Mount, OutputPolicy, RunSpec, RunStatus
from evaluator.sandbox.docker_backend import _LABEL

from . import attacks
from .conftest import ROOT, SECRET, host_targets, listening

pytestmark = [pytest.mark.docker, pytest.mark.timeout(180)]

SMALL = Limits(
    time_limit_s=30,
    memory_bytes=256 * 2**20,
    cpus=1,
    pids=64,
    output_bytes=8 * 2**20,
    tmp_bytes=16 * 2**20,
)


def run(backend: DockerBackend, image: str, inputs: Path, out: Path, **kwargs: object) -> object:
    spec = RunSpec(input_dir=inputs, output_dir=out, image=image, **kwargs)  # type: ignore[arg-type]
    result = backend.run(spec)
    print(result.logs_tail)
    return result


def assert_contained(result, out: Path) -> None:  # type: ignore[no-untyped-def]
    assert "BREACH" not in result.logs_tail, result.logs_tail
    assert result.status is RunStatus.EXIT_CODE, result.logs_tail
    assert result.exit_code == attacks.CONTAINED, result.logs_tail
    assert result.participant_message == "The submission stopped with exit code 42."
    assert not (out / "breach.csv").exists()


@pytest.mark.usefixtures("host_unchanged")
def test_network_is_unreachable_from_inside(docker_backend, build_image, case_dirs, tmp_path):
    targets = host_targets()
    assert listening("127.0.0.1:5432") and listening("127.0.0.1:6379"), "services must be up"
    image = build_image(attacks.NETWORK)
    result = run(
        docker_backend,
        image,
        case_dirs[0],
        tmp_path / "out",
        environment={"TARGETS": ",".join(targets)},
        limits=SMALL,
    )
    assert_contained(result, tmp_path / "out")
    assert "interfaces: ['lo']" in result.logs_tail
    for target in targets:
        assert f"blocked: tcp {target}" in result.logs_tail


@pytest.mark.usefixtures("host_unchanged")
def test_labels_and_host_paths_are_invisible(docker_backend, build_image, case_dirs, tmp_path):
    inputs, labels = case_dirs
    host_paths = [
        str(labels),
        str(labels / "labels.csv"),
        str(ROOT),
        str(ROOT / "pyproject.toml"),
        "/var/run/docker.sock",
        "/run/docker.sock",
        "/etc/shadow",
        "/reference/labels.csv",
        str(Path.home()),
    ]
    image = build_image(attacks.SECRETS)
    result = run(
        docker_backend,
        image,
        inputs,
        tmp_path / "out",
        limits=SMALL,
        environment={"SECRET": SECRET, "HOST_PATHS": ",".join(host_paths)},
    )
    assert_contained(result, tmp_path / "out")
    assert SECRET not in result.logs_tail.replace(f"SECRET={SECRET}", "")


@pytest.mark.usefixtures("host_unchanged")
def test_writes_outside_output_and_tmp_fail(docker_backend, build_image, case_dirs, tmp_path):
    image = build_image(attacks.WRITE_OUTSIDE)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert_contained(result, tmp_path / "out")
    assert "Read-only file system" in result.logs_tail


@pytest.mark.usefixtures("host_unchanged")
def test_filling_output_stops_at_the_cap(docker_backend, build_image, case_dirs, tmp_path):
    image = build_image(attacks.FILL_OUTPUT)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "output limit of 8 MiB" in result.participant_message
    assert "No space left on device" in result.logs_tail
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.usefixtures("host_unchanged")
def test_filling_tmp_stops_at_its_size(docker_backend, build_image, case_dirs, tmp_path):
    image = build_image(attacks.FILL_TMP)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.SUCCEEDED, result.logs_tail
    written = int(result.logs_tail.split("TMP_WRITTEN ")[1].split()[0])
    assert written <= SMALL.tmp_bytes


@pytest.mark.usefixtures("host_unchanged")
def test_fork_bomb_hits_the_pids_limit(docker_backend, build_image, case_dirs, tmp_path):
    image = build_image(attacks.FORK_BOMB)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert_contained(result, tmp_path / "out")
    forked = int(result.logs_tail.split("FORKED ")[1].split()[0])
    assert forked < SMALL.pids


@pytest.mark.usefixtures("host_unchanged")
def test_memory_bomb_is_out_of_memory(docker_backend, build_image, case_dirs, tmp_path):
    image = build_image(attacks.MEMORY_BOMB)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.OUT_OF_MEMORY, result.logs_tail
    assert result.participant_message == "Out of memory (limit 256 MiB)."


@pytest.mark.usefixtures("host_unchanged")
@pytest.mark.parametrize("script", [attacks.CPU_SPIN, attacks.SLEEP_FOREVER], ids=["spin", "sleep"])
def test_runs_past_the_time_limit_are_killed(
    docker_backend, build_image, case_dirs, tmp_path, script
):
    image = build_image(script)
    limits = Limits(time_limit_s=3, memory_bytes=256 * 2**20, output_bytes=8 * 2**20)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=limits)
    assert result.status is RunStatus.TIME_LIMIT
    assert result.participant_message == "Time limit exceeded (3 s)."
    assert 3 <= result.wall_s < 10


@pytest.mark.usefixtures("host_unchanged")
def test_privileges_cannot_be_raised(docker_backend, build_image, case_dirs, tmp_path):
    # The image says root and ships a setuid-root python; it still runs as 65534 with no caps.
    image = build_image(
        attacks.PRIVILEGES,
        user_root=True,
        extra="RUN cp /usr/bin/python3.11 /usr/local/bin/suidpy"
        " && chmod 4755 /usr/local/bin/suidpy\n",
    )
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert_contained(result, tmp_path / "out")
    assert "uid 65534 euid 65534" in result.logs_tail
    assert "setuid python euid: 65534" in result.logs_tail


@pytest.mark.usefixtures("host_unchanged")
def test_a_fake_metrics_json_is_refused(docker_backend, build_image, case_dirs, tmp_path):
    image = build_image(attacks.FAKE_METRICS)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "metrics.json" in result.participant_message
    assert "computed by the evaluator" in result.participant_message
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.usefixtures("host_unchanged")
def test_a_symlink_in_output_is_refused(docker_backend, build_image, case_dirs, tmp_path):
    image = build_image(attacks.SYMLINK_OUT)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "link" in result.participant_message
    assert list((tmp_path / "out").iterdir()) == []


def test_participant_message_never_quotes_the_submission(
    docker_backend, build_image, case_dirs, tmp_path
):
    # A file name is a side channel: the refusal names the rule, not the name.
    script = 'open("/output/LEAKED-" + open("/input/case0.png","rb").read(8).hex() + ".txt","w")\n'
    image = build_image(script)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "LEAKED" not in result.participant_message
    assert "LEAKED" in result.logs_tail  # organizers see it


def test_organizer_scorer_sees_reference_and_may_write_metrics(
    docker_backend, build_image, case_dirs, tmp_path
):
    inputs, labels = case_dirs
    script = (
        'import json\nrows = open("/reference/labels.csv").read().splitlines()[1:]\n'
        'json.dump({"aggregates": {"n": len(rows)}, "cases": {}, "meta": {}}, '
        'open("/output/metrics.json", "w"))\n'
    )
    image = build_image(script)
    result = run(
        docker_backend,
        image,
        inputs,
        tmp_path / "out",
        limits=SMALL,
        mounts=(Mount(source=labels, target="/reference"),),
        output_policy=OutputPolicy.scorer(),
    )
    assert result.ok, result.logs_tail
    assert (tmp_path / "out" / "metrics.json").read_text().startswith('{"aggregates": {"n": 4}')


def test_leftovers_of_a_crashed_worker_are_removed(docker_backend, docker_client, evaluator_image):
    docker_client.volumes.create(name="scanbench-output-leftover", labels={_LABEL: "x"})
    docker_client.containers.create(evaluator_image, command=["true"], labels={_LABEL: "x"})
    assert docker_backend.remove_leftovers() == 2
    assert docker_client.containers.list(all=True, filters={"label": _LABEL}) == []
