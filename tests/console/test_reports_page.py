"""The Reports page and the retro-scan's findings in a real browser, each on a console of its
own (exact counts): the match log as the gateway writes it (PolicyStore.record with real
Verdicts, yesterday and today by the real clock) drawn as SVG charts and tables whose counts are
GET /api/v1/hits's; a message delivered, then caught by a later poll's retro-scan, listed on
/quarantine/retro as GET /api/v1/retro lists it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from console_helpers import API_TOKEN, Console, running_console

from feedgate.mail.mailindex import MailIndex
from feedgate.mail.model import Action, Match, Part
from feedgate.mail.policy import Verdict
from feedgate.mail.retro import RetroScanner
from feedgate.mail.scanner import Scanner
from feedgate.observables import Kind, Observable

with contextlib.suppress(ImportError):
    from playwright.sync_api import Browser, Page, expect


@contextlib.contextmanager
def fresh(
    browser: Browser, tmp_path: Path, now: Callable[[], datetime] | None = None
) -> Iterator[tuple[Console, Page]]:
    """A console on a new database (its pages' clock ``now``), and a page logged in to it."""
    with running_console(tmp_path, now) as own:
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.add_cookies([own.session_cookie()])  # type: ignore[list-item]
        page = context.new_page()
        page.set_default_timeout(10_000)
        try:
            yield own, page
        finally:
            context.close()


def api_get(console: Console, path: str, **params: str) -> object:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    with httpx.Client(headers=headers, trust_env=False) as client:
        answer = client.get(console.url + path, params=params)
        answer.raise_for_status()
        return answer.json()


def verdict(action: Action, *matches: Match) -> Verdict:
    return Verdict(
        None,
        action,
        rules=("threat-feeds",),
        matches=matches,
        match_rules=tuple(("threat-feeds",) for _ in matches),
        rule_actions={"threat-feeds": action},
    )


def cells(page: Page, selector: str) -> list[list[str]]:
    rows = page.locator(selector + " tbody tr")
    return [
        [c.strip() for c in rows.nth(i).locator("th, td").all_text_contents()]
        for i in range(rows.count())
    ]


def test_reports_draw_the_match_log_as_the_hits_api_counts_it(
    browser: Browser, console: Console, tmp_path: Path
) -> None:
    with fresh(browser, tmp_path) as (own, page):
        a = own.add_source("rep-a").name
        b = own.add_source("rep-b").name
        own.seed(a, 3)
        now = datetime.now(UTC)
        yesterday, today = now - timedelta(days=1), now
        ip1 = Match(Part.CLIENT_IP, "ipv4", "198.18.0.1", "198.18.0.1", a, 1, {})
        ip2 = Match(Part.CLIENT_IP, "ipv4", "198.18.0.2", "198.18.0.2", a, 2, {})
        dom = Match(Part.URL, "domain", "evil.example", "evil.example", b, 3, {})
        policy = own.ctx.policy
        assert policy.record(verdict(Action.QUARANTINE, ip1, ip2), "<m1@x>", yesterday) == 2
        assert policy.record(verdict(Action.QUARANTINE, ip1), "<m2@x>", today) == 1
        assert policy.record(verdict(Action.TAG, dom), "<m3@x>", today) == 1

        page.goto(own.url + "/reports")
        expect(page.get_by_role("heading", name="Reports", exact=True)).to_be_visible()
        d1, d2 = yesterday.date().isoformat(), today.date().isoformat()
        per_source = cells(page, "table.per-source")
        assert [row[0] for row in per_source][-2:] == [d1, d2]  # the window's days, ascending
        assert len(per_source) == 8  # 7d back from today's clock: 8 UTC days
        assert per_source[-2][1:] == ["1", "0", "1"] and per_source[-1][1:] == ["1", "1", "2"]
        assert all(row[1:] == ["0", "0", "0"] for row in per_source[:-2])
        per_action = cells(page, "table.per-action")
        assert per_action[-2][1:] == ["1", "0", "1"] and per_action[-1][1:] == ["1", "1", "2"]
        headers = page.locator("table.per-action thead th").all_text_contents()
        assert headers == ["Day", "quarantine", "tag", "Total"]

        hits = api_get(own, "/api/v1/hits")
        assert isinstance(hits, dict)
        assert cells(page, "table.hits-per-source") == [
            [
                s["source"],
                s["mode"],
                str(s["hits"]),
                str(s["messages"]),
                s["last"][:16].replace("T", " ") + " UTC",
            ]
            for s in hits["sources"]
        ]
        assert [(s["source"], s["hits"], s["messages"]) for s in hits["sources"]] == [
            (a, 3, 2),
            (b, 1, 1),
        ]
        top = cells(page, "table.top")
        assert [(r[0], r[1], r[2], r[4]) for r in top] == [
            (t["value"], t["kind"], t["source"], str(t["hits"])) for t in hits["top"]
        ]
        # the charts: one rect a non-zero (day, series), its tooltip the table's count
        bars = page.locator("svg.per-source > rect title").all_text_contents()
        assert sorted(bars) == sorted([f"{d1}: {a} 1", f"{d2}: {a} 1", f"{d2}: {b} 1"])
        legend = page.locator("#per-source ul.legend li").all_text_contents()
        assert [t.strip() for t in legend] == sorted([a, b])
        top_bars = page.locator("svg.top > rect title").all_text_contents()
        assert top_bars[0] == f"ipv4 198.18.0.1: {a} 2"
        held = cells(page, "table.held")
        assert [a, "3", "3"] in held and [b, "0", "0"] in held
        assert page.locator("svg.chart").count() == 5

        page.goto(own.url + "/reports?since=all")
        assert cells(page, "table.per-source")[0][0] == d1  # "all": from the first day logged
        page.goto(own.url + "/reports?since=soon")
        expect(page.get_by_role("alert")).to_contain_text("since")


def test_reports_chart_the_held_counts_polls_wrote(
    browser: Browser, console: Console, tmp_path: Path
) -> None:
    """The held counts' history as FeedStore.record_held (what every poll ends with) wrote
    it: per day the day's last count, summed over kinds per source in the chart, per kind in
    the table; the days run to the console's clock (injected, frozen: no midnight race)."""
    moment = datetime.now(UTC)
    with fresh(browser, tmp_path, now=lambda: moment) as (own, page):
        a = own.add_source("held-a").name
        b = own.add_source("held-b").name
        store = own.store
        own.seed(a, 2)
        two_days_ago, yesterday = moment - timedelta(days=2), moment - timedelta(days=1)
        store.record_held(a, two_days_ago)  # 2 ipv4
        store.record_held(a, yesterday - timedelta(minutes=1))
        with store.segment(b) as seg:
            seg.upsert([Observable(Kind.DOMAIN, "evil.example", None, {})], moment)
        own.seed(a, 5)
        store.record_held(a, yesterday)  # the day's last: 5, not the 2 a minute before
        store.record_held(b, moment)
        store.record_held(a, moment)
        seen = store.held_history()
        assert len(seen) == 4  # one snapshot a source and day: yesterday's first was replaced

        page.goto(own.url + "/reports")
        d0, d1, d2 = (m.date().isoformat() for m in (two_days_ago, yesterday, moment))
        assert page.locator("table.held-over-time thead th").all_text_contents() == [
            "Day",
            "Source",
            "domain",
            "ipv4",
            "Total",
        ]
        assert cells(page, "table.held-over-time") == [
            [d0, a, "0", "2", "2"],
            [d1, a, "0", "5", "5"],
            [d2, a, "0", "5", "5"],
            [d2, b, "1", "0", "1"],
        ]
        bars = page.locator("svg.held-over-time > rect title").all_text_contents()
        assert sorted(bars) == sorted(
            [f"{d0}: {a} 2", f"{d1}: {a} 5", f"{d2}: {a} 5", f"{d2}: {b} 1"]
        )
        ticks = page.locator("svg.held-over-time > text").all_text_contents()
        assert d2[5:] in ticks and len([t for t in ticks if "-" in t]) == 8  # 7d back: 8 days
        legend = page.locator("#held-over-time ul.legend li").all_text_contents()
        assert [t.strip() for t in legend] == sorted([a, b])


def test_retro_findings_are_listed_as_the_api_lists_them(
    browser: Browser, console: Console, tmp_path: Path
) -> None:
    with fresh(browser, tmp_path) as (own, page):
        source = own.add_source("retro").name
        store, policy = own.store, own.ctx.policy
        index = MailIndex(store.engine)
        raw = (
            b"From: billing@phish.example\r\nSubject: Invoice <script>alert(1)</script>\r\n"
            b"Message-ID: <inv@phish.example>\r\n\r\nhttp://www.evil.example/pay\r\n"
        )
        scanner = Scanner(store, policy, mail_index=index)
        passed = scanner.scan(raw, message="Q7", client_ip="203.0.113.9", envelope_from="b@x")
        assert passed.action == Action.DELIVER
        now = datetime.now(UTC)
        with store.segment(source) as segment:
            segment.upsert([Observable(Kind.DOMAIN, "evil.example", None, {})], now)
            segment.finish(now)
        [found] = RetroScanner(store, policy, index).run_once()

        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(own.url + "/quarantine")
        page.get_by_role("link", name="Retro-scan findings").click()
        row = page.locator(f'tr[data-find="{found.id}"]')
        texts = row.locator("td").all_inner_texts()
        assert "Invoice <script>alert(1)</script>" in texts[2] and "<inv@phish.example>" in texts[2]
        assert texts[4:7] == ["deliver", "quarantine (threat-feeds)", "enforce"]
        assert "domain evil.example" in texts[7] and texts[8] == source
        listed = api_get(own, "/api/v1/retro")
        assert isinstance(listed, list)
        assert [r["id"] for r in listed] == [found.id]
        assert page.locator("tr[data-find]").count() == len(listed)
        page.goto(f"{own.url}/quarantine/retro?source=other")
        expect(page.locator("tr[data-find]")).to_have_count(0)
        assert dialogs == []
