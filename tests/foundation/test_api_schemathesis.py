"""The API v1 answers as its own OpenAPI schema says (schemathesis, through the WSGI app):
for generated path, query and body values of the read operations, the token and join, as a
participant with a token (the organizer console's reads as its organizer), no 500 and every
response (errors included) conforms to the schema. Uploads and the console's actions are left
out (tests/foundation/test_api_v1.py and test_api_organizers.py cover them)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import schemathesis
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from challenges.services.bundles import challenge_import_bundle
from challenges.services.data import membership_join
from challenges.services.submissions import submission_create
from tests.factories import UserFactory

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bundles" / "synthetic-lesions"
OPERATIONS = [
    "token_obtain",
    "challenges_list",
    "challenges_retrieve",
    "challenges_join",
    "challenges_data_list",
    "challenges_data_download",
    "phases_retrieve",
    "phases_submissions_list",
    "phases_leaderboard",
    "phases_leaderboard_csv",
    "submissions_retrieve",
    "team_retrieve",
    # the organizer console's reads with generated query values and its richest body (each
    # operation adds a few seconds: the others are covered by test_api_organizers.py)
    "console_submissions_list",
    "console_submission_retrieve",
]
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _load_schema() -> schemathesis.BaseSchema:
    """The project's own schema (what /api/schema/ serves), generated without a request or the
    database, with the WSGI app to call."""
    from django.core.wsgi import get_wsgi_application
    from drf_spectacular.generators import SchemaGenerator

    document = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True)))
    loaded = schemathesis.openapi.from_dict(document)
    loaded.app = get_wsgi_application()
    return loaded.include(operation_id=OPERATIONS)


schema = _load_schema()


@pytest.fixture
def in_test_transaction(db):
    """Requests go straight into the WSGI app, inside the test's transaction: like Django's
    test client, keep each request from closing the database connection when it ends."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(in_test_transaction, settings, tmp_path: Path):
    """The synthetic challenge, a participant who joined it with one submission, and a token."""
    settings.VAR_DIR = settings.SCANBENCH_VAR_DIR = tmp_path / "var"
    settings.MEDIA_ROOT = tmp_path / "var" / "media"
    settings.SCANBENCH_PRIVATE_ROOT = tmp_path / "var" / "private"
    settings.SCANBENCH_API_TOKEN_RATE = "100000/min"
    settings.SCANBENCH_LOGIN_FAILURES_PER_15MIN = 100000
    settings.SCANBENCH_LOGIN_FAILURES_PER_ADDRESS_PER_15MIN = 100000
    cache.clear()
    challenge = challenge_import_bundle(path=EXAMPLE).challenge
    challenge.is_published = True
    challenge.save(update_fields=["is_published"])
    user = UserFactory()
    membership_join(user=user, challenge=challenge, accept_terms=True)
    phase = challenge.phases.get()
    submission = submission_create(
        user=user, phase=phase, file=SimpleUploadedFile("p.csv", b"case_id,score\nc1,0.5\n")
    )
    token = Token.objects.create(user=user).key
    organizer = UserFactory()
    challenge.organizers.add(organizer)
    return {
        "slug": challenge.slug,
        "phase": phase.slug,
        "submission_id": submission.pk,
        "name": "train.csv",
        "token": token,
        "organizer_token": Token.objects.create(user=organizer).key,
    }


_turn = itertools.count()


@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_v1_conforms_to_its_schema(case, world):
    # Every other example addresses the real challenge, phase, file and submission, so the
    # answers with a body (200, 206, 400) are checked as well as the 404s of generated names.
    if next(_turn) % 2 == 0:
        for key in ("slug", "phase", "submission_id", "name"):
            if case.path_parameters and key in case.path_parameters:
                case.path_parameters[key] = world[key]
    token = world["organizer_token"] if "/console/" in case.operation.path else world["token"]
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)
