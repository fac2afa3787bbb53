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


def run(
    backend: DockerBackend,
    image: str | dict[str, object],
    inputs: Path,
    out: Path,
    **kwargs: object,
) -> object:
    """``image``: a tag (a container submission) or what :func:`attack` made of a script."""
    target = {"image": image} if isinstance(image, str) else dict(image)
    if "mounts" in target and "mounts" in kwargs:
        target["mounts"] = (*target["mounts"], *kwargs.pop("mounts"))  # type: ignore[misc]
    spec = RunSpec(input_dir=inputs, output_dir=out, **target, **kwargs)  # type: ignore[arg-type]
    result = backend.run(spec)
    print(result.logs_tail)
    return result


@pytest.fixture(params=["image", "evaluator-exec"])
def attack(request, build_image, tmp_path):  # type: ignore[no-untyped-def]
    """Each attack both ways the Docker backend runs code: baked into an image (a container
    submission: the image's own process, a holder container keeps /output), and as the evaluator
    image's runs (model files, programs): exec'd beside the image's trusted sleep."""

    def make(script: str) -> str | dict[str, object]:
        if request.param == "image":
            return str(build_image(script))
        folder = tmp_path / "attack-script"
        folder.mkdir()
        (folder / "main.py").write_text(script)
        return {
            "image": None,
            "command": ("python3", "/app/main.py"),
            "mounts": (Mount(source=folder, target="/app"),),
        }

    return make


def assert_contained(result, out: Path) -> None:  # type: ignore[no-untyped-def]
    assert "BREACH" not in result.logs_tail, result.logs_tail
    assert result.status is RunStatus.EXIT_CODE, result.logs_tail
    assert result.exit_code == attacks.CONTAINED, result.logs_tail
    assert result.participant_message == "The submission stopped with exit code 42."
    assert not (out / "breach.csv").exists()


@pytest.mark.usefixtures("host_unchanged")
def test_network_is_unreachable_from_inside(docker_backend, attack, case_dirs, tmp_path):
    targets = host_targets()
    assert listening("127.0.0.1:5432") and listening("127.0.0.1:6379"), "services must be up"
    image = attack(attacks.NETWORK)
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
def test_labels_and_host_paths_are_invisible(docker_backend, attack, case_dirs, tmp_path):
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
    image = attack(attacks.SECRETS)
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
def test_writes_outside_output_and_tmp_fail(docker_backend, attack, case_dirs, tmp_path):
    image = attack(attacks.WRITE_OUTSIDE)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert_contained(result, tmp_path / "out")
    assert "Read-only file system" in result.logs_tail


@pytest.mark.usefixtures("host_unchanged")
def test_filling_output_stops_at_the_cap(docker_backend, attack, case_dirs, tmp_path):
    image = attack(attacks.FILL_OUTPUT)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "output limit of 8 MiB" in result.participant_message
    assert "No space left on device" in result.logs_tail
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.usefixtures("host_unchanged")
def test_filling_tmp_stops_at_its_size(docker_backend, attack, case_dirs, tmp_path):
    image = attack(attacks.FILL_TMP)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.SUCCEEDED, result.logs_tail
    written = int(result.logs_tail.split("TMP_WRITTEN ")[1].split()[0])
    assert written <= SMALL.tmp_bytes


@pytest.mark.usefixtures("host_unchanged")
def test_fork_bomb_hits_the_pids_limit(docker_backend, attack, case_dirs, tmp_path):
    image = attack(attacks.FORK_BOMB)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert_contained(result, tmp_path / "out")
    forked = int(result.logs_tail.split("FORKED ")[1].split()[0])
    assert forked < SMALL.pids


@pytest.mark.usefixtures("host_unchanged")
def test_memory_bomb_is_out_of_memory(docker_backend, attack, case_dirs, tmp_path):
    image = attack(attacks.MEMORY_BOMB)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.OUT_OF_MEMORY, result.logs_tail
    assert result.participant_message == "Out of memory (limit 256 MiB)."


@pytest.mark.usefixtures("host_unchanged")
@pytest.mark.parametrize("script", [attacks.CPU_SPIN, attacks.SLEEP_FOREVER], ids=["spin", "sleep"])
def test_runs_past_the_time_limit_are_killed(docker_backend, attack, case_dirs, tmp_path, script):
    image = attack(script)
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
def test_a_fake_metrics_json_is_refused(docker_backend, attack, case_dirs, tmp_path):
    image = attack(attacks.FAKE_METRICS)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "metrics.json" in result.participant_message
    assert "computed by the evaluator" in result.participant_message
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.usefixtures("host_unchanged")
def test_a_symlink_in_output_is_refused(docker_backend, attack, case_dirs, tmp_path):
    image = attack(attacks.SYMLINK_OUT)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "link" in result.participant_message
    assert list((tmp_path / "out").iterdir()) == []


def test_participant_message_never_quotes_the_submission(
    docker_backend, attack, case_dirs, tmp_path
):
    # A file name is a side channel: the refusal names the rule, not the name.
    script = 'open("/output/LEAKED-" + open("/input/case0.png","rb").read(8).hex() + ".txt","w")\n'
    image = attack(script)
    result = run(docker_backend, image, case_dirs[0], tmp_path / "out", limits=SMALL)
    assert result.status is RunStatus.INVALID_OUTPUT
    assert "LEAKED" not in result.participant_message
    assert "LEAKED" in result.logs_tail  # organizers see it


def test_organizer_scorer_sees_reference_and_may_write_metrics(
    docker_backend, attack, case_dirs, tmp_path
):
    inputs, labels = case_dirs
    script = (
        'import json\nrows = open("/reference/labels.csv").read().splitlines()[1:]\n'
        'json.dump({"aggregates": {"n": len(rows)}, "cases": {}, "meta": {}}, '
        'open("/output/metrics.json", "w"))\n'
    )
    image = attack(script)
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


_ESCAPE_THE_HOLDER = """
import os, signal, subprocess, sys
for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP):
    try:
        os.kill(1, sig)
    except OSError as exc:
        print("kill refused:", exc)
# A child that outlives the run and keeps its standard output open.
subprocess.Popen(["sleep", "300"], stdout=sys.stdout, stderr=sys.stderr, start_new_session=True)
with open("/output/ok.csv", "w") as f:
    f.write("case_id,score\\n")
print("uid", os.getuid(), "euid", os.geteuid())
with open("/proc/self/status") as f:
    print([l.strip() for l in f if l.startswith(("CapEff", "NoNewPrivs"))])
"""


@pytest.mark.usefixtures("host_unchanged")
def test_evaluator_image_runs_cannot_stop_the_trusted_first_process(
    docker_backend, case_dirs, tmp_path
):
    # The evaluator image's runs are exec'd beside its `sleep` (PID 1, same uid): signals from
    # inside do not reach it, so /output stays mounted until the host has read it; what the run
    # leaves running (here holding its stdout open) does not hold the result up, and is removed.
    folder = tmp_path / "script"
    folder.mkdir()
    (folder / "main.py").write_text(_ESCAPE_THE_HOLDER)
    result = run(
        docker_backend,
        {"image": None, "command": ("python3", "/app/main.py")},
        case_dirs[0],
        tmp_path / "out",
        mounts=(Mount(source=folder, target="/app"),),
        limits=SMALL,
    )
    assert result.ok, result.logs_tail
    assert result.output_files == ("ok.csv",)
    assert "uid 65534 euid 65534" in result.logs_tail
    assert "'CapEff:\\t0000000000000000', 'NoNewPrivs:\\t1'" in result.logs_tail
    assert result.wall_s < SMALL.time_limit_s


@pytest.mark.usefixtures("host_unchanged")
@pytest.mark.parametrize(
    "command",
    [("/bin/true",), ("sh", "-c", "exit 3"), ("/no/such/program",), ("sh", "-c", "kill -9 $$")],
    ids=["nothing", "exit-3", "missing", "killed"],
)
def test_no_container_or_volume_is_left_after_a_run(docker_backend, case_dirs, tmp_path, command):
    # host_unchanged checks the engine once the runs' removals (after the result) are done.
    result = run(
        docker_backend, {"image": None, "command": command}, case_dirs[0], tmp_path / "out"
    )
    assert not result.ok


def test_the_benchmarks_bare_docker_run_has_the_backends_lock_down():
    from evaluator.sandbox.docker_backend import docker_run_flags

    flags = docker_run_flags(SMALL)
    for flag in (
        "--network=none",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges:true",
        "--user=65534:65534",
        f"--pids-limit={SMALL.pids}",
        f"--memory={SMALL.memory_bytes}",
        f"--memory-swap={SMALL.memory_bytes}",
    ):
        assert flag in flags
