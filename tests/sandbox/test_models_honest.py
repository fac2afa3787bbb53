"""Honest submissions produce predictions that the evaluator scores: a TorchScript classifier, an
ONNX segmenter (on both backends), and a container image, also as a ``docker save`` tarball."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from evaluator.errors import InvalidSubmission
from evaluator.sandbox import (
    InputSpec,
    Intensity,
    Limits,
    OutputKind,
    RunSpec,
    RunStatus,
    load_image_tarball,
    run_model_submission,
)
from evaluator.scoring import score

from . import attacks
from .models import nifti_cases, onnx_segmenter, torchscript_classifier

pytestmark = [pytest.mark.timeout(240)]

LIMITS = Limits(time_limit_s=120, memory_bytes=2 * 2**30, cpus=1, output_bytes=64 * 2**20)
CLASSIFIER_SPEC = InputSpec(image_size=(16, 16), intensity=Intensity.SCALE, scale=1 / 255)
SEGMENTER_SPEC = InputSpec(image_size=(6, 12, 12), intensity=Intensity.NONE, output=OutputKind.MASK)


def _reference_csv(tmp_path: Path) -> Path:
    reference = tmp_path / "reference.csv"
    reference.write_text("case_id,label\n" + "".join(f"case{i},{i % 2}\n" for i in range(4)))
    return reference


@pytest.fixture(params=["docker", "bwrap"])
def backend(request):  # type: ignore[no-untyped-def]
    if request.param == "docker":
        request.applymarker(pytest.mark.docker)
        return request.getfixturevalue("docker_backend")
    return request.getfixturevalue("bwrap_backend")


def test_torchscript_classifier_predictions_are_scored(backend, case_dirs, tmp_path):
    model = torchscript_classifier(tmp_path / "model.pt")
    result = run_model_submission(
        model_path=model,
        input_dir=case_dirs[0],
        output_dir=tmp_path / "out",
        input_spec=CLASSIFIER_SPEC,
        limits=LIMITS,
        backend=backend,
    )
    assert result.ok, result.logs_tail
    assert result.output_files == ("predictions.csv",)
    assert f"[sandbox: {backend.name}" in result.logs_tail
    lines = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "case_id,score" and len(lines) == 5
    report = score("classification", _reference_csv(tmp_path), tmp_path / "out")
    assert report.aggregates["auc_roc"] == pytest.approx(1.0)


def test_onnx_segmenter_masks_are_scored(backend, tmp_path):
    nifti_cases(tmp_path / "inputs", tmp_path / "reference")
    model = onnx_segmenter(tmp_path / "model.onnx")
    result = run_model_submission(
        model_path=model,
        input_dir=tmp_path / "inputs",
        output_dir=tmp_path / "out",
        input_spec=SEGMENTER_SPEC,
        limits=LIMITS,
        backend=backend,
    )
    assert result.ok, result.logs_tail
    assert result.output_files == ("case0.nii.gz", "case1.nii.gz", "case2.nii.gz")
    mask = nib.load(str(tmp_path / "out" / "case0.nii.gz"))
    assert np.allclose(mask.affine, nib.load(str(tmp_path / "reference" / "case0.nii.gz")).affine)
    report = score("segmentation", tmp_path / "reference", tmp_path / "out")
    assert report.aggregates["dice"] == pytest.approx(1.0)


def test_a_pickle_that_is_not_torchscript_is_refused_on_the_host(tmp_path, bwrap_backend):
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"\x80\x04\x95" + b"cos\nsystem\n" * 4)  # a pickle, never unpickled here
    with pytest.raises(InvalidSubmission, match="not a TorchScript archive"):
        run_model_submission(
            model_path=bogus,
            input_dir=tmp_path,
            output_dir=tmp_path / "out",
            input_spec=CLASSIFIER_SPEC,
            limits=LIMITS,
            backend=bwrap_backend,
        )


def test_a_broken_model_gives_an_exit_code_not_a_traceback_to_the_participant(
    backend, case_dirs, tmp_path
):
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"\x08\x07" + b"\xff" * 64)
    result = run_model_submission(
        model_path=broken,
        input_dir=case_dirs[0],
        output_dir=tmp_path / "out",
        input_spec=CLASSIFIER_SPEC,
        limits=LIMITS,
        backend=backend,
    )
    assert result.status is RunStatus.EXIT_CODE and result.exit_code == 2
    assert result.participant_message == "The submission stopped with exit code 2."
    assert "cannot load the onnx model" in result.logs_tail


@pytest.mark.docker
def test_container_image_and_its_tarball_produce_scored_predictions(
    docker_backend, docker_client, build_image, case_dirs, tmp_path
):
    image = build_image(attacks.HONEST_CONTAINER, user_root=True)
    result = docker_backend.run(
        RunSpec(input_dir=case_dirs[0], output_dir=tmp_path / "out", image=image, limits=LIMITS)
    )
    assert result.ok, result.logs_tail
    assert "uid 65534 cases 4" in result.logs_tail  # USER root in the image, 65534 in the run
    report = score("classification", _reference_csv(tmp_path), tmp_path / "out")
    assert report.aggregates["auc_roc"] == pytest.approx(1.0)

    tarball = tmp_path / "image.tar"
    with tarball.open("wb") as handle:
        for chunk in docker_client.images.get(image).save(named=True):
            handle.write(chunk)
    image_id = load_image_tarball(tarball, docker_client)
    assert image_id == docker_client.images.get(image).id
    again = docker_backend.run(
        RunSpec(input_dir=case_dirs[0], output_dir=tmp_path / "out2", image=image_id, limits=LIMITS)
    )
    assert again.ok, again.logs_tail


@pytest.mark.docker
def test_predict_cli_runs_a_model(docker_backend, case_dirs, tmp_path):
    model = torchscript_classifier(tmp_path / "model.pt")
    spec = tmp_path / "spec.json"
    spec.write_text(CLASSIFIER_SPEC.to_json())
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from evaluator.sandbox.cli import predict_main; "
            "sys.exit(predict_main(sys.argv[1:]))",
            "--submission",
            str(model),
            "--input-spec",
            str(spec),
            "--inputs",
            str(case_dirs[0]),
            "--output",
            str(tmp_path / "out"),
            "--backend",
            "docker",
            "--time-limit",
            "60",
            "--memory",
            "2g",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["status"] == "succeeded"


def _runner_stats(logs: str) -> dict[str, object]:
    line = next(x for x in logs.splitlines() if x.startswith("SCANBENCH_RUNNER "))
    return dict(json.loads(line.split(" ", 1)[1]))


def test_an_onnx_run_never_imports_torch_and_torchscript_never_onnxruntime(
    backend, case_dirs, tmp_path
):
    nifti_cases(tmp_path / "nii", tmp_path / "reference")
    runs = [
        # name, model, inputs, input spec, the framework it imports, the one it must not
        ("onnx", onnx_segmenter(tmp_path / "model.onnx"), tmp_path / "nii", SEGMENTER_SPEC,
         "onnxruntime", "torch"),
        ("torchscript", torchscript_classifier(tmp_path / "model.pt"), case_dirs[0],
         CLASSIFIER_SPEC, "torch", "onnxruntime"),
    ]  # fmt: skip
    for name, model, inputs, spec, imported, forbidden in runs:
        run = run_model_submission(
            model_path=model,
            input_dir=inputs,
            output_dir=tmp_path / f"out-{name}",
            input_spec=spec,
            limits=LIMITS,
            backend=backend,
        )
        assert run.ok, (name, run.logs_tail)
        stats = _runner_stats(run.logs_tail)
        assert stats[f"{imported}_imported"] is True, name
        assert stats[f"{forbidden}_imported"] is False, name
        assert {"import_s", "framework_import_s", "load_s", "compute_s"} <= stats.keys(), name
