"""The Observables page in a real browser: search, filter by kind, open an observable's page,
page on by key (as GET /api/v1/observables pages), export the view as CSV, JSON lines and
STIX 2.1; a hostile pulse title is text."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from datetime import UTC, datetime

import httpx
from console_helpers import API_TOKEN, Console

from feedgate.mail.model import Inspection, Match, Part
from feedgate.mail.policy import evaluate
from feedgate.observables import Kind, Observable
from feedgate.stix import read_observables

with contextlib.suppress(ImportError):
    from playwright.sync_api import Dialog, Page, expect

HOSTILE = "<img src=x onerror=alert(1)>"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def mixed_source(console: Console) -> str:
    """A source holding 3 IPv4 addresses, a domain whose pulse title is hostile, and a URL."""
    name = console.add_source("obs").name
    observables = [
        *(
            Observable(Kind.IPV4, f"192.0.2.{n}", None, {"package_title": "Scanners"})
            for n in (1, 2, 3)
        ),
        Observable(
            Kind.DOMAIN, "evil-login.example", None, {"package_title": HOSTILE, "tlp": "amber"}
        ),
        Observable(Kind.URL, "http://evil-login.example/a", None, {"package_title": "Phish"}),
    ]
    with console.store.segment(name) as segment:
        segment.upsert(observables, datetime.now(UTC))
        segment.finish(datetime.now(UTC))
    return name


def values(page: Page) -> list[str]:
    return page.locator("table.observables td.value").all_inner_texts()


def test_search_filter_and_open_an_observable_with_a_hostile_title(
    console: Console, logged_in: Page
) -> None:
    name = mixed_source(console)
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    logged_in.on("dialog", record)
    logged_in.goto(console.url + "/observables")
    logged_in.get_by_label("Source").select_option(name)
    logged_in.get_by_label("Kind").select_option("ipv4")
    logged_in.get_by_role("button", name="Search").click()
    expect(logged_in.locator("table.observables tbody tr")).to_have_count(3)
    assert sorted(values(logged_in)) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    logged_in.get_by_label("Kind").select_option("")
    logged_in.get_by_label("Search").fill("evil-login")
    logged_in.get_by_role("button", name="Search").click()
    expect(logged_in.locator("table.observables tbody tr")).to_have_count(2)
    assert sorted(values(logged_in)) == ["evil-login.example", "http://evil-login.example/a"]
    first = logged_in.locator("table.observables tbody tr").filter(has_text="domain")
    expect(first.locator("td.title")).to_have_text(HOSTILE)
    expect(first.locator("td.source")).to_have_text(name)
    expect(logged_in.locator("main img")).to_have_count(0)
    # a message it matched, in the match log as the gateway records it
    domain = console.store.observables(source=name, kind="domain")[0]
    assert domain.id is not None
    hit = Match(Part.FROM, "domain", domain.value, domain.value, name, domain.id)
    policy = console.ctx.policy
    verdict = evaluate([hit], Inspection((), message_id="<hit-1@example.net>"), policy.load())
    policy.record(verdict, "<hit-1@example.net>", datetime.now(UTC))
    first.get_by_role("link", name="evil-login.example").click()
    expect(logged_in.get_by_role("heading", level=1)).to_contain_text("evil-login.example")
    expect(logged_in.locator("dd.title")).to_have_text(HOSTILE)
    context = logged_in.locator("table.context tr")
    expect(context.filter(has_text="tlp")).to_contain_text("amber")
    expect(context.filter(has_text="package_title").locator("td")).to_have_text(HOSTILE)
    expect(logged_in.locator("main img")).to_have_count(0)
    detail = httpx.get(f"{console.url}/api/v1/observables/{domain.id}", headers=AUTH).json()
    assert detail["context"]["package_title"] == HOSTILE
    assert [m["message_id"] for m in detail["matches"]] == ["<hit-1@example.net>"]
    match_row = logged_in.locator("table.matches tbody tr")
    expect(match_row.locator("td.message-id")).to_have_text("<hit-1@example.net>")
    expect(match_row.locator("td.action")).to_contain_text(detail["matches"][0]["action"])
    assert dialogs == []
    # a kind that is none is said beside the field, not a server error
    logged_in.goto(console.url + "/observables?kind=mutexes")
    expect(logged_in.locator("#kind-error")).to_contain_text("is not a kind")


def test_pages_follow_by_key_and_agree_with_the_api(console: Console, logged_in: Page) -> None:
    name = console.add_source("many").name
    console.seed(name, 120)
    logged_in.goto(console.url + f"/observables?source={name}")
    api = httpx.get(
        console.url + "/api/v1/observables", params={"source": name, "limit": "50"}, headers=AUTH
    ).json()
    rows = logged_in.locator("table.observables tbody tr")
    expect(rows).to_have_count(50)
    assert values(logged_in) == [o["value"] for o in api]
    ids = [int(i or 0) for i in [rows.nth(n).get_attribute("data-id") for n in range(50)]]
    assert ids == [o["id"] for o in api]
    logged_in.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(50)
    second = httpx.get(
        console.url + "/api/v1/observables",
        params={"source": name, "limit": "50", "after": str(ids[-1])},
        headers=AUTH,
    ).json()
    assert values(logged_in) == [o["value"] for o in second]
    assert int(rows.first.get_attribute("data-id") or 0) > ids[-1]
    assert f"after={ids[-1]}" in logged_in.url
    logged_in.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(20)
    expect(logged_in.get_by_role("link", name="Next page")).to_have_count(0)
    logged_in.get_by_role("link", name="First page").click()
    assert values(logged_in)[0] == api[0]["value"]


def test_the_view_exports_as_csv_jsonl_and_stix(console: Console, logged_in: Page) -> None:
    name = mixed_source(console)
    logged_in.goto(console.url + f"/observables?source={name}&kind=ipv4")
    links = {
        fmt: logged_in.get_by_role("link", name=label).get_attribute("href")
        for fmt, label in (("csv", "CSV"), ("jsonl", "JSON lines"), ("stix", "STIX 2.1"))
    }
    wanted = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    texts = {}
    for fmt, href in links.items():
        answer = logged_in.request.get(console.url + str(href))
        assert answer.ok, answer.text()
        assert "attachment" in answer.headers["content-disposition"]
        texts[fmt] = answer.text()
    table = list(csv.DictReader(io.StringIO(texts["csv"])))
    assert sorted(r["value"] for r in table) == wanted
    assert {r["source"] for r in table} == {name} and {r["package_title"] for r in table} == {
        "Scanners"
    }
    lines = [json.loads(line) for line in texts["jsonl"].splitlines()]
    assert sorted((r["kind"], r["value"], r["source"]) for r in lines) == [
        ("ipv4", v, name) for v in wanted
    ]
    bundle = json.loads(texts["stix"])
    assert bundle["type"] == "bundle"
    assert sorted(o["pattern"] for o in bundle["objects"]) == [
        f"[ipv4-addr:value = '{v}']" for v in wanted
    ]
    assert sorted(o.value for o in read_observables(texts["stix"].encode())) == wanted
    # without a session the export is the login page's, not the data
    outside = httpx.get(console.url + str(links["csv"]), follow_redirects=False)
    assert outside.status_code == 303 and "192.0.2" not in outside.text
