"""What fuzzing the manager's REST API against its OpenAPI description found (schemathesis), kept
as plain requests over a real socket: each was an HTTP 500 with a traceback in the server log,
or worse; each is now a 400 naming the field and saying how to fix it, and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_client import api_client

from feedgate import db
from feedgate.feeds import secrets
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.poller import PollResult
from feedgate.feeds.scheduler import Scheduler
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.web.api import MAX_BODY_BYTES, OPENAPI
from http_raw import declared_but_not_sent

TOKEN = "robustness-token"
GOOD: dict[str, Any] = {"name": "otx", "hostname": "otx.example", "collection": "user_AV"}


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FeedStore:
    monkeypatch.setenv(secrets.KEY_ENV, secrets.generate_key())
    return FeedStore(db.engine(str(tmp_path / "feeds.db")))


def not_polled(store: FeedStore, source: Source, log: ThreatFeedLog, **_: Any) -> PollResult:
    raise AssertionError("these tests never poll")


@pytest.fixture
def api(store: FeedStore) -> Iterator[httpx.Client]:
    with api_client(store, TOKEN, poll=not_polled) as client:
        yield client


def post_raw(api: httpx.Client, text: str) -> httpx.Response:
    """POST a source whose JSON is written by hand (``\\ud800`` escapes, which httpx's own JSON
    encoding would refuse)."""
    return api.post(
        "/api/v1/sources", content=text.encode(), headers={"Content-Type": "application/json"}
    )


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"name": 5}, "name", "give text"),
        ({"hostname": 5}, "hostname", "give text"),
        ({"description": [1]}, "description", "give text"),
        ({"port": "443"}, "port", "give a whole number"),
        ({"port": 443.0}, "port", "give a whole number"),
        ({"max_retries": 1.5}, "max_retries", "give a whole number"),
        ({"enabled": "yes"}, "enabled", "give true or false"),
        ({"verify_ssl": None}, "verify_ssl", "give true or false"),
        ({"username": "u", "password": 5}, "password", "give text or null"),
        ({"description": "a\x00b"}, "description", "NUL"),
    ],
)
def test_a_field_of_the_wrong_type_is_400_naming_it(
    api: httpx.Client, store: FeedStore, changes: dict[str, Any], field: str, words: str
) -> None:
    """Was 500 (TypeError, AttributeError deep in validation or encryption), or, for a
    string where a boolean goes, stored and echoed back as a string."""
    answer = api.post("/api/v1/sources", json={**GOOD, **changes})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert words in answer.json()["detail"]
    assert store.list_sources() == []


def test_a_password_of_the_wrong_type_is_not_echoed(api: httpx.Client) -> None:
    answer = api.post("/api/v1/sources", json={**GOOD, "username": "u", "password": 123456789})
    assert answer.status_code == 400 and "123456789" not in answer.text


@pytest.mark.parametrize("field", ["collection", "description", "username"])
def test_a_lone_surrogate_is_400_not_a_storage_error(
    api: httpx.Client, store: FeedStore, field: str
) -> None:
    """JSON can spell "\\ud800", UTF-8 cannot: the database refused it with a 500."""
    extra = ', "username": "u"' if field != "username" else ""
    answer = post_raw(
        api,
        f'{{"name": "otx", "hostname": "h.example", "collection": "c"{extra}, '
        f'"{field}": "x\\ud800"}}',
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field and "not valid Unicode" in answer.json()["detail"]
    assert store.list_sources() == []


def test_an_unknown_field_that_is_not_valid_unicode_is_named_safely(api: httpx.Client) -> None:
    """The error named the field as given, and rendering that name failed: a 500."""
    answer = post_raw(
        api, '{"name": "otx", "hostname": "h.example", "collection": "c", "\\ud800": 1}'
    )
    assert answer.status_code == 400
    assert answer.json()["field"] == "'\\ud800'" and "unknown field" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("polling_interval", "99999999999999w"),  # beyond a timedelta: OverflowError
        ("age", "999999999d"),  # beyond a 64-bit count of microseconds: OverflowError
        ("polling_interval", "999999w"),  # stored, then every scheduler pass failed
        ("age", "36501d"),
    ],
)
def test_a_duration_too_long_to_use_is_400(
    api: httpx.Client, store: FeedStore, field: str, text: str
) -> None:
    changes = {field: text} if field != "age" else {"age": text, "poll_segment": "1d"}
    answer = api.post("/api/v1/sources", json={**GOOD, **changes})
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field
    assert "too long: give at most 36500d" in answer.json()["detail"]
    assert store.list_sources() == []
    segment = {"poll_segment": "30d"} if field == "age" else {}  # at most 10,000 segments
    longest = api.post("/api/v1/sources", json={**GOOD, field: "36500d", **segment})
    assert longest.status_code == 201, longest.text


def test_a_bad_patch_keeps_the_stored_source(api: httpx.Client, store: FeedStore) -> None:
    assert api.post("/api/v1/sources", json=GOOD).status_code == 201
    before = store.get_source("otx")
    for change in ({"port": "x"}, {"polling_interval": "999999w"}, {"enabled": 1}):
        answer = api.patch("/api/v1/sources/otx", json=change)
        assert answer.status_code == 400, answer.text
    assert store.get_source("otx") == before


def test_a_json_body_nested_too_deep_is_400(api: httpx.Client) -> None:
    """json.loads raises RecursionError, not ValueError, for it: that was a 500."""
    answer = post_raw(api, "[" * 100_000)
    assert answer.status_code == 400
    assert answer.json() == {"detail": "not valid JSON", "field": "body"}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/observables?limit=%C2%B2", "limit"),  # "²".isdigit() is True, int() fails
        ("/api/v1/observables?offset=99999999999999999999999", "offset"),  # > SQLite INTEGER
        ("/api/v1/log?after=99999999999999999999999", "after"),
        ("/api/v1/observables?limit=-1", "limit"),
        ("/api/v1/log?after=x", "after"),
        ("/api/v1/observables?after=x", "after"),
    ],
)
def test_a_bad_number_in_the_query_is_400_naming_it(
    api: httpx.Client, path: str, field: str
) -> None:
    answer = api.get(path)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == field and "whole number" in answer.json()["detail"]


def test_numbers_in_range_still_page(api: httpx.Client) -> None:
    assert api.get("/api/v1/observables?limit=5&offset=9223372036854775807").json() == []
    assert api.get("/api/v1/observables?limit=99999").status_code == 200  # capped at 10000
    assert api.get("/api/v1/log?after=9223372036854775807").json() == []


def test_an_observable_that_is_not_there_or_no_id_is_404(api: httpx.Client) -> None:
    for ident in ("x", "999999999", "1" * 40, "%C2%B2"):
        answer = api.get(f"/api/v1/observables/{ident}")
        assert answer.status_code == 404, (ident, answer.text)
        assert answer.json() == {"detail": "no such observable"}


def test_405_names_every_method_of_the_path(api: httpx.Client) -> None:
    """GET and POST /sources were two routes: a 405 said ``Allow: GET, HEAD``."""
    answer = api.put("/api/v1/sources")
    assert answer.status_code == 405
    assert set(answer.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_the_openapi_document_describes_bodies_parameters_and_answers(
    api: httpx.Client,
) -> None:
    """It listed no request body, no query parameter, no answer schema and no 400, so a
    client (or a fuzzer) could not know what to send or expect."""
    spec = api.get("/api/v1/openapi.json").json()
    assert spec == json.loads(json.dumps(OPENAPI))
    post = spec["paths"]["/api/v1/sources"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NewSource"
    }
    assert {"201", "400", "401", "409"} <= set(post["responses"])
    new = spec["components"]["schemas"]["NewSource"]["properties"]
    # every field a source is written with (unreadable_secrets is read from the store only)
    assert set(new) == {f for f in Source.__dataclass_fields__} - {"unreadable_secrets"}
    names = {p["name"] for p in spec["paths"]["/api/v1/observables"]["get"]["parameters"]}
    assert names == {"source", "kind", "search", "all", "limit", "offset", "after"}
    shown = api.post("/api/v1/sources", json=GOOD).json()
    assert set(shown) == set(spec["components"]["schemas"]["Source"]["properties"])


def test_a_stored_absurd_interval_does_not_stop_the_schedule(store: FeedStore) -> None:
    """A source stored with a 999999-week interval (the API took it before durations were
    bounded) made ``last + interval`` overflow in every scheduler pass: no source was polled
    any more. The scheduler now compares ``now - last``, which cannot overflow."""
    now = datetime(2026, 11, 20, tzinfo=UTC)
    store.add_source(
        Source(
            name="absurd",
            hostname="h.example",
            collection="c",
            polling_interval=timedelta(weeks=999_999),
        )
    )
    store.set_status("absurd", last_start=now - timedelta(days=1), result="ok")
    store.add_source(Source(name="due", hostname="h.example", collection="c"))
    polled: list[str] = []

    def poll(store: FeedStore, source: Source, log: ThreatFeedLog, **_: Any) -> PollResult:
        polled.append(source.name)
        store.set_status(source.name, last_start=now, result="ok")
        return PollResult(source.name)

    scheduler = Scheduler(store, ThreatFeedLog(store, write_file=False), now=lambda: now, poll=poll)
    scheduler.run_once()
    assert polled == ["due"]


def test_a_body_over_the_limit_is_413_and_not_read(api: httpx.Client, store: FeedStore) -> None:
    """Bodies were read whole, whatever their size: one request could take the server's memory."""

    def endless() -> Iterator[bytes]:  # chunked: no length declared; stops when refused
        yield b'{"name": "big", "description": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536

    refused = api.post(
        "/api/v1/sources", content=endless(), headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 413 and refused.json()["field"] == "body"
    answer = declared_but_not_sent(
        str(api.base_url), "/api/v1/sources", 10**12, f"Authorization: Bearer {TOKEN}\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert store.list_sources() == []
    assert api.post("/api/v1/sources", json=GOOD).status_code == 201
