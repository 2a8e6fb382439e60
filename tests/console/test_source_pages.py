"""The source pages in a real browser against a seeded hub on 127.0.0.1: Add Source (a field's
error beside it, what was typed kept), Edit (the password kept, never in the page), Test
connection, Poll Now with its live figures and the log's line, the threat-feed log and its live
tail; and that the pages and the REST API agree on a source."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from console_helpers import API_TOKEN, Console

from feedgate import db
from feedgate.asgi_server import serving
from feedgate.hub.app import create_app
from feedgate.hub.seed import seed
from feedgate.hub.store import HubStore

with contextlib.suppress(ImportError):
    from playwright.sync_api import Page, expect

PULSES = 6
PER_PULSE = 4
SECRET_PASSWORD = "hub-Pa55-never-shown"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, str, HubStore]]:
    """A seeded hub (host, port, API key, store): its pulses end now, over the past months."""
    store = HubStore(db.engine(str(tmp_path_factory.mktemp("hub") / "hub.db")))
    seed(store, pulses=PULSES, indicators_per_pulse=PER_PULSE, seed=3, until=datetime.now(UTC))
    _, key = store.create_user("console-admin")
    assert key is not None
    with serving(create_app(store, page_size=5)) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port), key, store


def api_source(console: Console, name: str) -> dict[str, object]:
    answer = httpx.get(
        f"{console.url}/api/v1/sources/{name}",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        trust_env=False,
    )
    assert answer.status_code == 200
    return dict(answer.json())


def fill(page: Page, label: str, value: str) -> None:
    page.get_by_label(label, exact=True).fill(value)


def test_add_with_an_error_then_edit_and_test_connection(
    logged_in: Page, console: Console, hub: tuple[str, int, str, HubStore]
) -> None:
    host, port, key, _ = hub
    name = f"hubfeed-{datetime.now(UTC).strftime('%H%M%S%f')}"
    logged_in.goto(console.url + "/sources")
    logged_in.locator(".heading").get_by_role("link", name="Add Source").click()
    expect(logged_in.get_by_role("heading", name="Add Source")).to_be_visible()
    fill(logged_in, "Source Name", name)
    fill(logged_in, "Description", "the hub's pulses")
    fill(logged_in, "Hostname", f"http://{host}")  # a URL, not a host name
    fill(logged_in, "Polling Path", "/taxii/poll")
    fill(logged_in, "Collection Name", "user_AlienVault")
    fill(logged_in, "Port", str(port))
    logged_in.get_by_label("Use HTTPS", exact=True).uncheck()
    fill(logged_in, "Username", key)
    fill(logged_in, "Password", SECRET_PASSWORD)
    fill(logged_in, "Age of Threat Feed", "365d")
    fill(logged_in, "Time Span of Poll Segment", "30d")
    logged_in.get_by_role("button", name="Submit").click()

    hostname = logged_in.locator('[data-field="hostname"]')
    expect(hostname.locator(".field-error")).to_contain_text("looks like a URL")
    expect(logged_in.get_by_label("Description", exact=True)).to_have_value("the hub's pulses")
    expect(logged_in.get_by_label("Port", exact=True)).to_have_value(str(port))
    assert SECRET_PASSWORD not in logged_in.content()
    assert key not in logged_in.content()  # the user name is the API key: not sent back either
    for secret in ("password", "username"):  # and the admin is told to type them again
        expect(logged_in.locator(f'[data-field="{secret}"] .field-error')).to_contain_text(
            "type it again"
        )
    assert console.store.get_source(name) is None  # nothing saved

    fill(logged_in, "Hostname", host)
    fill(logged_in, "Username", key)
    fill(logged_in, "Password", SECRET_PASSWORD)  # not sent back: typed again
    logged_in.get_by_role("button", name="Submit").click()
    expect(logged_in).to_have_url(console.url + "/sources")
    expect(logged_in.locator(f'tr[data-source="{name}"]')).to_contain_text("user_AlienVault")
    stored = console.store.get_source(name)
    assert stored is not None and stored.password == SECRET_PASSWORD and stored.username == key

    logged_in.locator(f'tr[data-source="{name}"]').get_by_role("link", name="Edit").click()
    expect(logged_in.get_by_role("heading", name=f"Edit source {name}")).to_be_visible()
    html = logged_in.content()
    assert SECRET_PASSWORD not in html
    expect(logged_in.locator('[data-field="password"]')).to_contain_text("set")

    logged_in.get_by_role("button", name="Test connection").click()
    result = logged_in.locator("#test-result")
    expect(result).to_contain_text("Connected")
    expect(result.locator("li.mine")).to_contain_text("user_AlienVault")

    fill(logged_in, "Polling Interval", "2h")
    logged_in.get_by_role("button", name="Submit").click()
    expect(logged_in).to_have_url(console.url + "/sources")
    edited = console.store.get_source(name)
    assert edited is not None and edited.password == SECRET_PASSWORD and edited.username == key
    shown = api_source(console, name)
    assert shown["polling_interval"] == "2h" and shown["password_set"] is True
    assert shown["description"] == "the hub's pulses" and shown["port"] == port
    assert SECRET_PASSWORD not in logged_in.content()


def test_poll_now_shows_the_count_and_the_log_line_then_the_log_tails(
    logged_in: Page, console: Console, hub: tuple[str, int, str, HubStore]
) -> None:
    host, port, key, _ = hub
    source = console.add_source(
        "polled",
        hostname=host,
        port=port,
        use_https=False,
        username=key,
        password="x",
        age="365d",
        poll_segment="30d",
        max_retries=0,
    )
    logged_in.goto(console.url + "/sources")
    row = logged_in.locator(f'tr[data-source="{source.name}"]')
    row.get_by_role("button", name="Poll Now").click()
    expect(logged_in.locator("#poll-state")).to_have_text("Done.", timeout=30_000)
    held = sum(console.store.count_observables(source=source.name).values())
    assert held > 0
    result = console.store.status(source.name)
    last = logged_in.locator("#poll-last")
    expect(last).to_contain_text("poll done")
    expect(last).to_contain_text(f"{result.read} observables read")
    expect(logged_in.locator("#poll-read")).to_have_text(f"{result.read:,}")
    expect(logged_in.locator("#poll-lines li").first).to_contain_text("poll started")

    # the Sources page and the API agree on what the poll did
    logged_in.goto(console.url + "/sources")
    expect(row.locator("td.held")).to_have_text(f"{held:,}")
    shown = api_source(console, source.name)
    assert shown["status"]["read"] == result.read  # type: ignore[index]
    row.get_by_role("button", name="Disable").click()
    expect(row.locator("td.enabled")).to_have_text("no")
    assert api_source(console, source.name)["enabled"] is False

    logged_in.goto(f"{console.url}/log?source={source.name}")
    rows = logged_in.locator("#log-rows tr")
    expect(rows.first.locator("td.message")).to_contain_text(f"{result.read} observables read")
    before = rows.count()
    console.ctx.feed_log.warning(source.name, "a line written after the page was loaded")
    expect(rows.first.locator("td.message")).to_have_text(
        "a line written after the page was loaded"
    )
    expect(rows).to_have_count(before + 1)
    logged_in.goto(f"{console.url}/log?source={source.name}&level=warning")
    expect(rows).to_have_count(1)
    api = httpx.get(
        f"{console.url}/api/v1/log",
        params={"source": source.name, "level": "warning"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        trust_env=False,
    ).json()
    assert [e["message"] for e in api] == ["a line written after the page was loaded"]
