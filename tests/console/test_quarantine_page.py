"""The Quarantine page in a real browser: a message held by QuarantineStore.add (with a real
Envelope and Verdict, as the gateway holds one) is listed, opened (its hostile Subject and body
shown as text, no script run), released to a real aiosmtpd sink (arriving once, the page and the
REST API then saying released), refused by a dead relay (the error shown, the message kept),
and deleted after a confirmation; the retro-scan's findings page lists what GET /api/v1/retro
lists."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import httpx
import pytest
from console_helpers import API_TOKEN, Console

from feedgate.mail.model import Action, Envelope, Match, Part
from feedgate.mail.policy import Verdict
from feedgate.mail.quarantine import QuarantineStore
from postfix import Sink, free_port

with contextlib.suppress(ImportError):
    from playwright.sync_api import Dialog, Page, expect

HOSTILE = "<script>alert(1)</script>"


def held(console: Console, relay: str) -> tuple[str, str, str]:
    """A message quarantined as the gateway quarantines one: (its id, its source, subject)."""
    source = console.add_source("qsrc").name
    subject = f"invoice {uuid.uuid4().hex[:6]} {HOSTILE}"
    raw = (
        f"From: a@x.test\r\nTo: b@y.test\r\nSubject: {subject}\r\nMessage-ID: <q@x>\r\n\r\n"
        f"see http://bad.example/ {HOSTILE}\r\n"
    ).encode()
    envelope = Envelope("a@x.test", ("b@y.test", "c@y.test"), "192.0.2.1", "helo.test", "q1")
    match = Match(Part.URL, "domain", "bad.example", "bad.example", source, 1, {"title": HOSTILE})
    verdict = Verdict(None, Action.QUARANTINE, rules=("threat-feeds",), matches=(match,))
    ident = QuarantineStore(console.store.engine).add(raw, envelope, verdict, relay=relay)
    return ident, source, subject


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    running = Sink()
    running.start()
    yield running
    running.stop()


def api() -> httpx.Client:
    return httpx.Client(headers={"Authorization": f"Bearer {API_TOKEN}"}, trust_env=False)


def no_dialogs(page: Page) -> list[str]:
    seen: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        seen.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return seen


def test_list_open_and_release_to_the_sink(console: Console, logged_in: Page, sink: Sink) -> None:
    ident, source, subject = held(console, f"127.0.0.1:{sink.port}")
    dialogs = no_dialogs(logged_in)
    logged_in.goto(console.url + "/quarantine")
    logged_in.get_by_label("Source").select_option(source)
    logged_in.get_by_role("button", name="Filter").click()
    row = logged_in.locator(f'tr[data-message="{ident}"]')
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("a@x.test")
    expect(cells.nth(2)).to_have_text("b@y.test, c@y.test")
    expect(cells.nth(3)).to_have_text(subject)
    expect(cells.nth(4)).to_have_text("threat-feeds")
    expect(cells.nth(5)).to_have_text(source)
    expect(cells.nth(7)).to_have_text("held")
    with api() as client:  # the page lists what the API lists, in its order
        listed = client.get(console.url + "/api/v1/quarantine", params={"source": source}).json()
    assert [m["id"] for m in listed] == [ident]
    assert logged_in.locator("tr[data-message]").count() == len(listed)

    row.get_by_role("link", name=subject).click()
    expect(logged_in.get_by_role("heading", name=subject)).to_be_visible()
    raw = logged_in.get_by_label("Raw message")
    expect(raw).to_contain_text(f"Subject: {subject}")
    expect(raw).to_contain_text(f"see http://bad.example/ {HOSTILE}")
    expect(logged_in.locator("table.matches")).to_contain_text(HOSTILE)  # the context, as text
    expect(logged_in.locator("table.headers")).to_contain_text("Message-ID")

    sink.clear()
    logged_in.get_by_role("button", name="Release").click()
    expect(logged_in.get_by_role("status")).to_contain_text(f"Released message {ident}")
    expect(logged_in.locator("dd.state")).to_contain_text("released")
    expect(logged_in.locator("dd.state")).to_contain_text("by console:admin")
    expect(logged_in.get_by_role("button", name="Release")).to_have_count(0)
    [arrived] = sink.wait_count(1)
    assert arrived.rcpt_tos == ("b@y.test", "c@y.test") and subject.encode() in arrived.content
    with api() as client:
        one = client.get(f"{console.url}/api/v1/quarantine/{ident}").json()
        listed = client.get(console.url + "/api/v1/quarantine", params={"source": source}).json()
    assert one["released_by"] == "console:admin" and one["released_at"] and listed == []
    logged_in.goto(f"{console.url}/quarantine?source={source}")
    expect(logged_in.locator("tr[data-message]")).to_have_count(0)  # held ones only
    logged_in.goto(f"{console.url}/quarantine?source={source}&all=1")
    expect(logged_in.locator(f'tr[data-message="{ident}"] td.state')).to_have_text("released")
    assert len(sink.messages) == 1 and dialogs == []


def test_a_dead_relay_keeps_it_then_delete_confirmed(console: Console, logged_in: Page) -> None:
    dead = f"127.0.0.1:{free_port()}"
    ident, _source, _subject = held(console, dead)
    logged_in.goto(f"{console.url}/quarantine/{ident}")
    logged_in.get_by_role("button", name="Release").click()
    flash = logged_in.get_by_role("status")
    expect(flash).to_contain_text(f"message {ident} not released")
    expect(flash).to_contain_text("it stays in the quarantine")
    expect(logged_in.locator("dd.state")).to_contain_text("release failed")
    expect(logged_in.locator(".release-error")).to_contain_text(dead)
    store = QuarantineStore(console.store.engine)
    kept = store.get(ident)
    assert kept.released_at is None and kept.release_error and dead in kept.release_error

    logged_in.get_by_role("link", name="Delete").click()
    expect(logged_in.get_by_role("heading", name=f"Delete message {ident}?")).to_be_visible()
    assert store.get(ident).id == ident  # asking deleted nothing
    logged_in.get_by_role("button", name=f"Delete message {ident}").click()
    expect(logged_in.get_by_role("status")).to_contain_text(f"Deleted quarantined message {ident}")
    with api() as client:
        assert client.get(f"{console.url}/api/v1/quarantine/{ident}").status_code == 404
    logged_in.goto(f"{console.url}/quarantine/{ident}")
    expect(logged_in.get_by_role("heading", name="No such message")).to_be_visible()


def test_release_and_delete_without_the_csrf_token_are_refused(console: Console) -> None:
    ident, _source, _subject = held(console, f"127.0.0.1:{free_port()}")
    cookie = console.session_cookie()
    with httpx.Client(
        base_url=console.url, cookies={cookie["name"]: cookie["value"]}, trust_env=False
    ) as client:
        for path in (f"/quarantine/{ident}/release", f"/quarantine/{ident}/delete"):
            refused = client.post(path, data={"csrf_token": "forged"})
            assert refused.status_code == 403, path
    kept = QuarantineStore(console.store.engine).get(ident)
    assert kept.released_at is None and kept.release_error is None  # nothing was even tried


def test_the_list_is_paged_newest_first(console: Console, logged_in: Page) -> None:
    from feedgate.web.console.quarantine import PAGE_SIZE

    first, source, _subject = held(console, "127.0.0.1:25")
    store = QuarantineStore(console.store.engine)
    template = store.get(first)
    raw = store.raw(first)
    match = Match(Part.URL, "domain", "bad.example", "bad.example", source, 1, {})
    verdict = Verdict(None, Action.QUARANTINE, rules=("threat-feeds",), matches=(match,))
    for _ in range(PAGE_SIZE):
        store.add(raw, template.envelope, verdict, relay="127.0.0.1:25")
    with api() as client:
        listed = client.get(console.url + "/api/v1/quarantine", params={"source": source}).json()
    assert len(listed) == PAGE_SIZE + 1
    logged_in.goto(f"{console.url}/quarantine?source={source}")
    ids = logged_in.locator("tr[data-message]")
    expect(ids).to_have_count(PAGE_SIZE)
    expect(logged_in.get_by_text(f"page 1 of 2 · {PAGE_SIZE + 1} messages")).to_be_visible()
    shown = [ids.nth(i).get_attribute("data-message") for i in range(PAGE_SIZE)]
    logged_in.get_by_role("link", name="Older").click()
    expect(ids).to_have_count(1)
    shown.append(ids.first.get_attribute("data-message"))
    assert shown == [m["id"] for m in listed]  # the API's order: newest first
    times = [m["time"] for m in listed]
    assert times == sorted(times, reverse=True) and first in shown
    expect(logged_in.get_by_role("link", name="Newer")).to_be_visible()
