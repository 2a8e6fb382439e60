"""What fuzzing the hub's OTX REST API found, kept as plain requests over a real socket: each was
an HTTP 500 with a traceback in the server log; one stored a pulse that then broke every list
and search showing it, for every user. Each is now a 400 (or DRF's 404 for a page) saying what
is wrong, and nothing is stored."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hub_fixture import Hub

from feedgate.hub.rest import MAX_BODY_BYTES
from http_raw import declared_but_not_sent

ALICE_PULSE = {"name": "robustness", "indicators": [{"indicator": "192.0.2.9", "type": "IPv4"}]}


@pytest.fixture
def api(hub: Hub) -> Iterator[httpx.Client]:
    headers = {"X-OTX-API-KEY": hub.api_key}
    with httpx.Client(base_url=hub.url, headers=headers, trust_env=False) as client:
        yield client


def post_raw(api: httpx.Client, path: str, text: str, method: str = "POST") -> httpx.Response:
    """Send JSON written by hand (``\\ud800`` escapes, which httpx's JSON encoding refuses)."""
    headers = {"Content-Type": "application/json"}
    return api.request(method, path, content=text.encode(), headers=headers)


def my_pulse_count(api: httpx.Client) -> int:
    answer = api.get("/api/v1/pulses/my")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["count"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pulses/subscribed?page=99999999999999999999",
        "/api/v1/pulses/my?page=9223372036854775807&limit=2",
        "/api/v1/pulses/events?page=99999999999999999999",
        "/api/v1/search/pulses?q=a&page=99999999999999999999",
    ],
)
def test_a_page_beyond_any_offset_is_drfs_404(api: httpx.Client, path: str) -> None:
    """(page - 1) * limit went to SQL as the offset: over 64 bits, a 500."""
    answer = api.get(path)
    assert answer.status_code == 404, answer.text
    assert answer.json() == {"detail": "Invalid page."}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/pulses/events?since=0001-01-01T00:00:00%2B05:00", "since"),
        ("/api/v1/pulses/subscribed?modified_since=9999-12-31T23:59:59-05:00", "modified_since"),
        ("/api/v1/pulses/my?modified_since=0001-01-01T00:00:00%2B00:01", "modified_since"),
    ],
)
def test_a_time_that_utc_cannot_hold_is_400_naming_it(
    api: httpx.Client, path: str, field: str
) -> None:
    """Converting it to UTC raised OverflowError, not ValueError: a 500."""
    answer = api.get(path)
    assert answer.status_code == 400, answer.text
    (message,) = answer.json()[field]
    assert message.startswith("not a time that UTC can hold: ")


def test_an_indicator_expiring_before_year_one_in_utc_is_400(api: httpx.Client) -> None:
    before = my_pulse_count(api)
    ind = {"indicator": "192.0.2.1", "type": "IPv4", "expiration": "0001-01-01T00:00:00+05:00"}
    answer = api.post("/api/v1/pulses/create", json={"name": "x", "indicators": [ind]})
    assert answer.status_code == 400, answer.text
    (errors,) = answer.json()["indicators"]
    assert errors["expiration"][0].startswith("not a time that UTC can hold")
    assert my_pulse_count(api) == before


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "x\\ud800"}',
        '{"name": "ok", "tags": ["\\udfff"]}',  # was stored: then every list showing it was 500
        '{"name": "ok", "indicators": [{"indicator": "192.0.2.1", "type": "IPv4", '
        '"title": "\\ud800"}]}',
        '{"name": "ok", "TLP": "\\ud800"}',  # the 400 quoting it failed to render: a 500
        '{"name": "ok", "indicators": [{"indicator": "192.0.2.1", "type": "\\ud800"}]}',
        '{"name": "ok", "\\ud800": 1}',
    ],
)
def test_text_that_is_not_valid_unicode_is_400_and_not_stored(
    api: httpx.Client, hub: Hub, body: str
) -> None:
    before = my_pulse_count(api)
    answer = post_raw(api, "/api/v1/pulses/create", body)
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith("JSON parse error - text ") and "lone surrogate" in detail
    assert my_pulse_count(api) == before
    assert api.get("/api/v1/search/pulses", params={"q": "ok"}).status_code == 200


def test_a_nul_character_is_400_and_not_stored(api: httpx.Client) -> None:
    """SQLite kept it; PostgreSQL refuses NUL in text (a 500 there)."""
    before = my_pulse_count(api)
    answer = api.post("/api/v1/pulses/create", json={"name": "ok", "description": "a\x00b"})
    assert answer.status_code == 400, answer.text
    assert "NUL character" in answer.json()["detail"]
    assert my_pulse_count(api) == before


def test_a_bad_edit_keeps_the_stored_pulse(api: httpx.Client) -> None:
    created = api.post("/api/v1/pulses/create", json=ALICE_PULSE)
    assert created.status_code == 201, created.text
    path = f"/api/v1/pulses/{created.json()['id']}"
    for body in ('{"tags": {"add": ["\\ud800"]}}', '{"description": "\\u0000"}', "[" * 100_000):
        answer = post_raw(api, path, body, method="PATCH")
        assert answer.status_code == 400, answer.text
    assert api.get(path).json() == created.json()


def test_a_json_body_nested_too_deep_is_400(api: httpx.Client) -> None:
    """json.loads raises RecursionError, not ValueError, for it: that was a 500."""
    answer = post_raw(api, "/api/v1/pulses/create", "[" * 100_000)
    assert answer.status_code == 400
    assert answer.json() == {"detail": "JSON parse error - nested too deep."}


def test_text_beyond_the_basic_plane_is_still_taken(api: httpx.Client) -> None:
    """A complete surrogate pair is one character (here U+1F600), not a lone surrogate."""
    answer = post_raw(api, "/api/v1/pulses/create", '{"name": "ok \\ud83d\\ude00"}')
    assert answer.status_code == 201, answer.text
    assert answer.json()["name"] == "ok \U0001f600"
    shown = api.get("/api/v1/search/pulses", params={"q": "ok \U0001f600"})
    assert shown.status_code == 200 and shown.json()["count"] >= 1


def test_a_body_over_the_limit_is_413_and_not_read(api: httpx.Client, hub: Hub) -> None:
    """Bodies were read whole, whatever their size: one request could take the hub's memory."""
    answer = declared_but_not_sent(
        hub.url, "/api/v1/pulses/create", MAX_BODY_BYTES + 1, f"X-OTX-API-KEY: {hub.api_key}\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"Request body too large" in answer
    before = my_pulse_count(api)
    created = api.post("/api/v1/pulses/create", json=ALICE_PULSE)
    assert created.status_code == 201, created.text
    assert my_pulse_count(api) == before + 1
