"""Codabench version-2 bundles through the whole platform: ``import_challenge`` reads a
results-only bundle and a code-submission bundle (the organizers' own scoring program, an
ingestion program), a real worker runs their programs in the Docker sandbox, and the
leaderboard ranks by the bundle's own columns. A program that fails or writes a score that is
not a finite number fails the evaluation with that reason."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from challenges.models import Challenge, Evaluation, LeaderboardEntry, Phase, Submission
from challenges.services.submissions import submission_create
from tests.factories import UserFactory
from tests.foundation.test_codabench_parse import SCORE_PY, write_files
from tests.helpers import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.worker]

FINAL = ("succeeded", "failed")

RESULTS_YAML = """\
version: 2
title: Lesion classification (results)
description: Submit a CSV of predictions.
terms: pages/terms.md
pages:
  - title: Overview
    file: pages/overview.md
tasks:
  - index: 0
    name: Accuracy
    scoring_program: scoring_program
    reference_data: reference_data
solutions:
  - index: 0
    tasks: [0]
    path: solution
phases:
  - index: 0
    name: Development
    start: 2024-01-15
    max_submissions_per_day: 3
    max_submissions: 50
    execution_time_limit: 120
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

INGEST_PY = """\
import csv, importlib.util, os, sys
from pathlib import Path
data, out, code = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
spec = importlib.util.spec_from_file_location("model", code / "model.py")
model = importlib.util.module_from_spec(spec)
spec.loader.exec_module(model)
rows = list(csv.DictReader(open(data / "test.csv")))
with open(out / "predictions.csv", "w") as fh:
    fh.write("id,label\\n")
    for r in rows:
        fh.write(f"{r['id']},{model.predict(float(r['x']))}\\n")
"""

CODE_YAML = RESULTS_YAML.replace("(results)", "(code)").replace(
    "    reference_data: reference_data\n",
    "    reference_data: reference_data\n"
    "    ingestion_program: ingestion_program\n"
    "    input_data: input_data\n",
)


def _bundle(folder: Path, manifest: str, score_py: str = SCORE_PY) -> Path:
    return write_files(
        folder,
        {
            "competition.yaml": manifest,
            "pages/terms.md": "Use the data for this challenge only.\n",
            "pages/overview.md": "Find the lesions.\n",
            "scoring_program/metadata.yaml": (
                "command: python3 /app/program/score.py /app/input /app/output\n"
            ),
            "scoring_program/score.py": score_py,
            "reference_data/truth.csv": "id,label\na,1\nb,0\nc,1\nd,0\n",
            "solution/predictions.csv": "id,label\na,1\nb,0\nc,1\nd,0\n",
            "ingestion_program/metadata.yaml": (
                "command: python3 /app/program/ingest.py /app/input_data /app/output "
                "/app/ingested_program\n"
            ),
            "ingestion_program/ingest.py": INGEST_PY,
            "input_data/test.csv": "id,x\na,0.9\nb,0.1\nc,0.8\nd,0.3\n",
        },
    )


def _zip(members: dict[str, str]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return SimpleUploadedFile("submission.zip", buffer.getvalue())


def _final(submission: Submission) -> Evaluation:
    return wait_for(
        lambda: Evaluation.objects.filter(submission=submission, state__in=FINAL).first(),
        timeout=180,
    )


def _join(user: Any, challenge: Challenge) -> None:
    from challenges.services.data import membership_join

    membership_join(user=user, challenge=challenge, accept_terms=True)


@pytest.fixture
def docker_workers(start_worker: Any, evaluator_image: str, settings: Any) -> None:
    settings.SCANBENCH_SANDBOX_BACKEND = "docker"
    env = {"SCANBENCH_SANDBOX_BACKEND": "docker"}
    start_worker(queues="cpu", extra_env=env)
    start_worker(queues="gpu", extra_env=env)


def test_results_only_bundle_scored_by_its_program_and_ranked_by_its_columns(
    tmp_path: Path, docker_workers: None
) -> None:
    organizer = UserFactory()
    out = io.StringIO()
    call_command(
        "import_challenge",
        str(_bundle(tmp_path / "b", RESULTS_YAML)),
        "--organizer",
        organizer.username,
        stdout=out,
    )
    text = out.getvalue()
    assert "Created challenge 'lesion-classification-results' from a Codabench bundle" in text
    assert "1 solution(s) submitted as baselines" in text
    phase = Phase.objects.get(challenge__slug="lesion-classification-results")
    assert phase.submission_kind == "predictions" and phase.primary_metric == "accuracy"
    assert [c["key"] for c in phase.leaderboard_columns] == ["accuracy", "duration"]
    assert phase.primary_direction == "higher" and phase.daily_limit == 3

    solution = Submission.objects.get(phase=phase, is_baseline=True)
    evaluation = _final(solution)
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)

    participant = UserFactory()
    challenge = phase.challenge
    challenge.is_published = True
    challenge.save()
    _join(participant, challenge)
    half_right = _zip({"predictions.csv": "id,label\na,1\nb,1\nc,0\nd,0\n"})
    mine = submission_create(user=participant, phase=phase, file=half_right)
    evaluation = _final(mine)
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)

    def board() -> dict[str, float]:
        rows = LeaderboardEntry.objects.filter(phase=phase, part="public")
        return {r.display_name: r.score for r in rows}

    wait_for(lambda: len(board()) == 2)
    scores = board()
    assert sorted(scores.values()) == [0.5, 1.0]

    # the page and the CSV show the bundle's columns: titles, precision 3, no hidden column
    client = Client()
    html = client.get(phase.get_absolute_url()).content.decode()
    assert ">Accuracy</th>" in html and "95 % interval" not in html
    assert "<strong>1.000</strong>" in html and "<strong>0.500</strong>" in html
    assert "Duration" not in html
    # no live/final parts, intervals, tiers or worst-filled cases: the program scores it all
    assert 'id="program-scored"' in html and "worst-filled" not in html and "<th>tier" not in html
    overview = client.get(challenge.get_absolute_url()).content.decode()
    assert 'class="scored-by-program"' in overview
    assert "NSD tolerance" not in overview and "of the test cases" not in overview
    csv_url = reverse("challenges:leaderboard-csv", args=[challenge.slug, phase.slug])
    csv_text = b"".join(client.get(csv_url).streaming_content).decode()  # type: ignore[attr-defined]
    assert "duration" not in csv_text.splitlines()[0]
    api = client.get(f"/api/challenges/{challenge.slug}/phases/{phase.slug}/leaderboard/")
    assert api.status_code == 200, api.content
    assert all(set(r["aggregates"]) == {"accuracy"} for r in api.json()["results"])


def test_code_bundle_runs_participant_code_with_the_ingestion_program(
    tmp_path: Path, docker_workers: None
) -> None:
    organizer = UserFactory()
    call_command(
        "import_challenge",
        str(_bundle(tmp_path / "b", CODE_YAML)),
        "--organizer",
        organizer.username,
        stdout=io.StringIO(),
    )
    phase = Phase.objects.get(challenge__slug="lesion-classification-code")
    assert phase.submission_kind == "code"
    challenge = phase.challenge
    challenge.is_published = True
    challenge.save()
    participant = UserFactory()
    _join(participant, challenge)
    code = _zip({"model.py": "def predict(x):\n    return 1 if x > 0.5 else 0\n"})
    evaluation = _final(submission_create(user=participant, phase=phase, file=code))
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    result = evaluation.results.get(part="public")
    assert result.aggregates["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("score_py", "message"),
    [
        ("import sys\nsys.exit(3)\n", "the scoring program failed"),
        (
            "import sys, pathlib\n"
            "pathlib.Path(sys.argv[2], 'scores.json').write_text('{\"accuracy\": Infinity}')\n",
            "not a finite number",
        ),
        ("pass\n", "wrote no scores.json or scores.txt"),
    ],
)
def test_a_failing_scoring_program_fails_the_evaluation_with_its_reason(
    tmp_path: Path, docker_workers: None, score_py: str, message: str
) -> None:
    organizer = UserFactory()
    call_command(
        "import_challenge",
        str(_bundle(tmp_path / "b", RESULTS_YAML, score_py)),
        "--organizer",
        organizer.username,
        stdout=io.StringIO(),
    )
    solution = Submission.objects.get(is_baseline=True)
    evaluation = _final(solution)
    assert evaluation.state == "failed"
    assert message in evaluation.message, evaluation.message
    assert not evaluation.results.exists()
    assert not LeaderboardEntry.objects.filter(submission=solution).exists()


@pytest.mark.django_db
def test_a_malformed_bundle_imports_nothing(tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "b", RESULTS_YAML.replace("version: 2", "version: 1"))
    with pytest.raises(CommandError, match="version 1 is not supported"):
        call_command("import_challenge", str(folder), stdout=io.StringIO())
    folder = _bundle(tmp_path / "c", RESULTS_YAML.replace("start: 2024-01-15", "start: 2024-13-45"))
    with pytest.raises(CommandError, match="is not a date"):
        call_command("import_challenge", str(folder), stdout=io.StringIO())
    assert not Challenge.objects.exists()


def test_api_upload_reports_the_mapping_then_imports_and_scores_the_solution(
    tmp_path: Path, docker_workers: None
) -> None:
    from rest_framework.authtoken.models import Token

    from challenges.models import OrganizerAction
    from tests.foundation.test_bundle_checks import creator

    user = creator()
    token, _ = Token.objects.get_or_create(user=user)
    api = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    folder = _bundle(
        tmp_path / "b", RESULTS_YAML.replace("title: Lesion", "title: Uploaded lesion")
    )
    archive = tmp_path / "codabench.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"bundle/{p.relative_to(folder).as_posix()}")  # one wrapper folder
    with archive.open("rb") as fh:
        response = api.post("/api/bundles/", {"file": fh})
    assert response.status_code == 201, response.json()
    body = response.json()
    report = body["report"]
    assert body["state"] == "checked" and report["format"] == "codabench"
    assert report["slug"] == "uploaded-lesion-classification-results"
    assert report["phases"][0]["primary_metric"] == "accuracy" and report["solutions"] == 1
    assert not Challenge.objects.filter(slug=report["slug"]).exists()  # a dry run writes nothing
    browser = Client()
    browser.force_login(user)
    html = browser.get(f"/organize/uploads/{body['id']}/").content.decode()
    assert "From a Codabench bundle" in html
    for line in report["not_mapped"]:
        assert escape(line) in html

    assert api.post(f"/api/bundles/{body['id']}/confirm/").status_code == 202
    final = wait_for(
        lambda: (r := api.get(f"/api/bundles/{body['id']}/").json())["state"] != "importing" and r,
        timeout=120,
    )
    assert final["state"] == "imported", final  # type: ignore[index]
    challenge = Challenge.objects.get(slug=report["slug"])
    assert list(challenge.organizers.all()) == [user]
    assert OrganizerAction.objects.get(challenge=challenge).action == "import"
    solution = Submission.objects.get(phase__challenge=challenge, is_baseline=True)
    evaluation = _final(solution)
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    assert evaluation.results.get().aggregates["accuracy"] == 1.0


@pytest.mark.django_db
def test_api_refuses_a_malformed_codabench_bundle_with_its_reason(tmp_path: Path) -> None:
    from rest_framework.authtoken.models import Token

    from tests.foundation.test_bundle_checks import creator

    user = creator()
    token, _ = Token.objects.get_or_create(user=user)
    api = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    folder = _bundle(tmp_path / "b", RESULTS_YAML.replace("end: ", "x: ").replace(
        "start: 2024-01-15", "start: 2024-13-45"))  # fmt: skip
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    with archive.open("rb") as fh:
        response = api.post("/api/bundles/", {"file": fh})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "bundle_invalid"
    assert any("is not a date" in p for p in response.json()["problems"])
    assert not Challenge.objects.exists()


# --- Scanbench's own format with a scoring program --------------------------------------------

OWN_SCORE_PY = """\
import csv, json, sys
from pathlib import Path
inp, out = Path(sys.argv[1]), Path(sys.argv[2])
truth = {r["case_id"]: int(r["label"]) for r in csv.DictReader(open(inp / "ref" / "labels.csv"))}
res = next((inp / "res").glob("*.csv"))
pred = {r["case_id"]: float(r["score"]) >= 0.5 for r in csv.DictReader(open(res))}
hits = sum(int(pred.get(c, False)) == y for c, y in truth.items())
(out / "scores.json").write_text(json.dumps({"hit_rate": hits / len(truth), "n": len(truth)}))
"""

PROGRAM_PHASE = """
  - slug: own-program
    title: Scored by our own program
    opens: 2026-01-01T00:00:00Z
    scoring_program: scoring
    metrics: [hit_rate, n]
    columns:
      - {key: hit_rate, title: Hit rate, precision: 2}
      - {key: n, title: Cases, sorting: asc, precision: 0, hidden: true}
    time_limit_s: 120
"""


def _own_bundle(folder: Path) -> Path:
    import shutil

    shutil.copytree(
        Path(__file__).resolve().parents[2] / "examples/bundles/synthetic-lesions", folder
    )
    manifest = folder / "challenge.yaml"
    manifest.write_text(manifest.read_text() + PROGRAM_PHASE)
    write_files(
        folder,
        {
            "scoring/metadata.yaml": "command: python3 $program/score.py $input $output\n",
            "scoring/score.py": OWN_SCORE_PY,
        },
    )
    return folder


def test_own_bundle_phase_scored_by_a_program_with_the_test_labels_as_reference(
    tmp_path: Path, docker_workers: None
) -> None:
    import csv

    call_command("import_challenge", str(_own_bundle(tmp_path / "b")), stdout=io.StringIO())
    phase = Phase.objects.get(challenge__slug="synthetic-lesions", slug="own-program")
    assert phase.scoring_program and phase.reference_data
    assert phase.primary_metric == "hit_rate" and phase.primary_direction == "higher"
    assert Phase.objects.get(challenge__slug="synthetic-lesions", slug="open").scoring_program == ""
    challenge = phase.challenge
    challenge.is_published = True
    challenge.save()
    participant = UserFactory()
    _join(participant, challenge)
    labels = {}
    with (tmp_path / "b" / "cases.csv").open() as fh:
        for r in csv.DictReader(fh):
            if r["split"] == "test":
                labels[r["case_id"]] = int(r["label"])
    # a submission right on two thirds of the cases
    rows = [f"{c},{0.9 if (y == 1) == (i % 3 != 0) else 0.1}" for i, (c, y) in
            enumerate(sorted(labels.items()))]  # fmt: skip
    body = ("case_id,score\n" + "\n".join(rows) + "\n").encode()
    mine = submission_create(
        user=participant, phase=phase, file=SimpleUploadedFile("mine.csv", body)
    )
    evaluation = _final(mine)
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    right = sum((i % 3 != 0) for i in range(len(labels)))
    aggregates = evaluation.results.get().aggregates
    assert aggregates["hit_rate"] == pytest.approx(right / len(labels))
    assert aggregates["n"] == len(labels)


@pytest.mark.django_db
def test_own_bundle_program_problems_are_reported_before_anything_is_written(
    tmp_path: Path,
) -> None:
    folder = _own_bundle(tmp_path / "b")
    (folder / "scoring" / "metadata.yaml").write_text("cmd: python3 score.py\n")
    with pytest.raises(CommandError, match=r"own-program'.scoring_program: .*no 'command'"):
        call_command("import_challenge", str(folder), stdout=io.StringIO())
    manifest = folder / "challenge.yaml"
    manifest.write_text(
        manifest.read_text().replace("scoring_program: scoring", "scoring_program: ../x")
    )
    with pytest.raises(CommandError, match="is not a folder inside the bundle"):
        call_command("import_challenge", str(folder), stdout=io.StringIO())
    assert not Challenge.objects.exists()


def test_codabench_export_form_with_dataset_keys_is_imported_and_scored(
    tmp_path: Path, docker_workers: None
) -> None:
    """A bundle as Codabench's own dump writes it: task files as <kind>-<pk>.zip at the top,
    a solution and public data named by dataset keys (not in the bundle: left out, reported)."""
    import yaml

    from tests.foundation.test_codabench_parse import exported_manifest, zip_members

    root = tmp_path / "exported"
    write_files(root, {"terms.md": "T\n", "overview-7.md": "O\n"})
    manifest = exported_manifest()
    manifest["phases"][0]["start"] = "2024-02-01"
    manifest["phases"][0]["end"] = None
    manifest["leaderboards"][0]["columns"][0]["key"] = "accuracy"
    (root / "competition.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    zip_members(
        root / "scoring_program-12.zip",
        {"metadata.yaml": "command: python3 /app/program/score.py /app/input /app/output\n",
         "score.py": SCORE_PY},
    )  # fmt: skip
    zip_members(root / "reference_data-12.zip", {"truth.csv": "id,label\na,1\nb,0\n"})
    archive = tmp_path / "dump.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root).as_posix())
    out = io.StringIO()
    call_command("import_challenge", str(archive), "--slug", "dumped", stdout=out)
    assert "left out" in out.getvalue()  # the key-named solution and public data
    phase = Phase.objects.get(challenge__slug="dumped")
    challenge = phase.challenge
    challenge.is_published = True
    challenge.save()
    participant = UserFactory()
    _join(participant, challenge)
    mine = submission_create(
        user=participant,
        phase=phase,
        file=SimpleUploadedFile("predictions.csv", b"id,label\na,1\nb,1\n"),
    )
    evaluation = _final(mine)
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    assert evaluation.results.get().aggregates["accuracy"] == 0.5


def test_a_scoring_program_past_its_time_limit_is_stopped(
    tmp_path: Path, docker_workers: None
) -> None:
    manifest = RESULTS_YAML.replace("execution_time_limit: 120", "execution_time_limit: 3")
    organizer = UserFactory()
    call_command(
        "import_challenge",
        str(_bundle(tmp_path / "b", manifest, "import time\ntime.sleep(60)\n")),
        "--organizer",
        organizer.username,
        stdout=io.StringIO(),
    )
    evaluation = _final(Submission.objects.get(is_baseline=True))
    assert evaluation.state == "failed"
    assert "time_limit" in evaluation.message, evaluation.message
    assert not evaluation.results.exists()


def test_the_shipped_example_bundle_imports_and_its_solution_scores(docker_workers: None) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "codabench" / "lesion-accuracy"
    organizer = UserFactory()
    call_command(
        "import_challenge", str(example), "--organizer", organizer.username, stdout=io.StringIO()
    )
    evaluation = _final(Submission.objects.get(is_baseline=True))
    assert evaluation.state == "succeeded", (evaluation.message, evaluation.logs)
    assert evaluation.results.get().aggregates == {"accuracy": 0.875, "n_cases": 8}


@pytest.mark.django_db
def test_organizers_set_the_licence_a_codabench_bundle_lacks_in_the_console(
    tmp_path: Path,
) -> None:
    from challenges.models import OrganizerAction

    organizer, stranger = UserFactory(), UserFactory()
    call_command(
        "import_challenge",
        str(_bundle(tmp_path / "b", RESULTS_YAML)),
        "--organizer",
        organizer.username,
        stdout=io.StringIO(),
    )
    challenge = Challenge.objects.get()
    assert challenge.data_licence == "See the terms"
    url = reverse("challenges:console", args=[challenge.slug])
    other = Client()
    other.force_login(stranger)
    data = {"action": "licence", "licence": "CC BY 4.0", "attribution": "The lesion team, 2024."}
    assert other.post(url, data).status_code == 404
    client = Client()
    client.force_login(organizer)
    page = client.get(url).content.decode()
    assert 'id="licence-form"' in page and 'value="See the terms"' in page
    refused = client.post(url, {**data, "attribution": " "}, follow=True).content.decode()
    assert "Give both the licence and the attribution" in refused
    assert client.post(url, data).status_code == 302
    challenge.refresh_from_db()
    assert (challenge.data_licence, challenge.data_attribution) == (
        "CC BY 4.0",
        "The lesion team, 2024.",
    )
    assert OrganizerAction.objects.filter(challenge=challenge, action="licence").count() == 1
    client.post(url, {"action": "publish"})
    assert "CC BY 4.0" in Client().get(challenge.get_absolute_url()).content.decode()
