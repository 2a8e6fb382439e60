"""The manager's REST API to someone who does not know it yet: what a missing or wrong token is
told, and what the API root and /healthz say (a real server on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.store import FeedStore
from feedgate.web.api import OPENAPI, create_api

TOKEN = "auth-test-token-0123456789abcdef0123"


@pytest.fixture
def base(tmp_path: Path) -> Iterator[str]:
    store = FeedStore(db.engine(str(tmp_path / "feeds.db")))
    with serving(create_api(store, ThreatFeedLog(store, write_file=False), TOKEN)) as url:
        yield url


def get(base: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(base + path, headers=headers, trust_env=False)


def test_no_token_is_told_which_header_to_send(base: str) -> None:
    answer = get(base, "/api/v1/sources")
    assert answer.status_code == 401
    assert "Authorization: Bearer" in answer.json()["detail"]
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and "error=" not in challenge  # RFC 6750 3.1


@pytest.mark.parametrize("scheme", ["Basic", "Token"])
def test_another_scheme_is_told_to_use_bearer(base: str, scheme: str) -> None:
    answer = get(base, "/api/v1/sources", Authorization=f"{scheme} {TOKEN}")
    assert answer.status_code == 401
    assert "Bearer" in answer.json()["detail"] and scheme in answer.json()["detail"]
    assert answer.headers["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize("given", [TOKEN[:-1], TOKEN + "x", "wrong", "é" * 40])
def test_a_wrong_token_is_told_it_is_wrong(base: str, given: str) -> None:
    """It got the answer of no token at all ("an API token is needed"), so an admin with a
    stale token looked for a missing header. A token that is not ASCII is wrong too, not a 500."""
    answer = httpx.get(
        base + "/api/v1/sources",
        headers=[(b"Authorization", b"Bearer " + given.encode("latin-1"))],
        trust_env=False,
    )
    assert answer.status_code == 401
    assert answer.json()["detail"].startswith("the API token is wrong: send the server's ")
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge


def test_the_right_token_still_works(base: str) -> None:
    assert get(base, "/api/v1/sources", Authorization=f"Bearer {TOKEN}").json() == []
    assert get(base, "/api/v1/sources", Authorization=f"bearer  {TOKEN}").status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/", "/api/v1"])
def test_the_api_root_says_what_exists_and_how_to_authenticate(base: str, path: str) -> None:
    """GET /api/v1/ was a bare 404: nothing said where the sources were or what to send."""
    answer = get(base, path)
    assert answer.status_code == 200, answer.text
    index = answer.json()
    assert index["auth"]["header"] == "Authorization"
    assert index["auth"]["scheme"] == "Bearer"
    assert index["openapi"] == "/api/v1/openapi.json"
    assert index["health"] == "/healthz"
    links = index["links"]
    assert set(links) >= {"sources", "observables", "log"}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for link in links.values():  # every link leads somewhere real
        assert get(base, link, **auth).status_code == 200, link
    assert get(base, index["openapi"]).status_code == 200
    for link in [*links.values(), "/api/v1/", "/healthz"]:  # the OpenAPI document has them
        assert link in OPENAPI["paths"], link
    # ... and the index names every collection the document has (the quarantine was missing)
    tops = {
        p.split("/")[3] for p in OPENAPI["paths"] if p.startswith("/api/v1/") and p != "/api/v1/"
    }
    assert tops - {"openapi.json"} == set(links), tops ^ set(links)


def test_healthz_answers_without_a_token(base: str) -> None:
    answer = get(base, "/healthz")
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}


def test_an_unknown_path_points_at_the_index(base: str) -> None:
    answer = get(base, "/api/v1/nope", Authorization=f"Bearer {TOKEN}")
    assert answer.status_code == 404
    assert "/api/v1/" in answer.json()["detail"]
