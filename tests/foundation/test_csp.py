"""The Content-Security-Policy: no outside origin, inline scripts only with the page's fresh
nonce (the real-browser tests of the submit and upload pages run their live-update scripts
under it), and the API docs without any inline script."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from tests.factories import classification_phase

pytestmark = pytest.mark.django_db


def _policy(response: Any) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {d.split()[0]: d for d in (p.strip() for p in header.split(";")) if d}


def test_every_page_has_a_policy_without_outside_origins() -> None:
    client = Client()
    for url in ("/", "/accounts/login/", "/api/docs/", "/datasets/"):
        response = client.get(url)
        assert response.status_code == 200, url
        policy = _policy(response)
        assert "http" not in response["Content-Security-Policy"], url
        assert policy["default-src"] == "default-src 'self'"
        assert policy["object-src"] == "object-src 'none'"
        assert policy["frame-ancestors"] == "frame-ancestors 'none'"
        assert "'unsafe-inline'" not in policy["script-src"]
        assert "'unsafe-eval'" not in policy["script-src"]


def test_the_inline_script_carries_a_fresh_nonce_of_its_own_response(tmp_path: Any) -> None:
    from challenges.services.data import membership_join
    from tests.factories import UserFactory

    phase, _ = classification_phase(tmp_path, n_cases=20)
    phase.challenge.is_published = True
    phase.challenge.save()
    user = UserFactory()
    membership_join(user=user, challenge=phase.challenge, accept_terms=True)
    client = Client()
    client.force_login(user)
    url = f"/challenges/{phase.challenge.slug}/{phase.slug}/submit/"
    nonces = []
    for _ in range(2):
        response = client.get(url)
        assert response.status_code == 200
        nonce = re.search(r"'nonce-([^']+)'", _policy(response)["script-src"]).group(1)  # type: ignore[union-attr]
        html = response.content.decode()
        inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)
        assert inline and all(f'nonce="{nonce}"' in attrs for attrs in inline)
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def test_api_docs_load_their_script_from_the_site(settings: Any) -> None:
    html = Client().get("/api/docs/").content.decode()
    assert not re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html)


def test_the_policy_can_be_turned_off(settings: Any) -> None:
    settings.SCANBENCH_CSP = False
    assert "Content-Security-Policy" not in Client().get("/")
