"""The console in a real browser (Debian's Chromium, Playwright): logging in and out, the
Sources page and its buttons, refused logins, CSRF, hostile feed text, security headers."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

import httpx
import pytest
from console_helpers import (
    ADMIN,
    API_TOKEN,
    LOGIN_DELAY,
    PASSWORD,
    Console,
    failures_of,
    running_console,
)

from feedgate.feeds.console_users import MAX_FAILURES
from feedgate.web.console.app import CSP
from feedgate.web.console.auth import SESSION_COOKIE

# Without Playwright, the browser fixture skips each test loudly (fails them in CI).
with contextlib.suppress(ImportError):
    from playwright.sync_api import Browser, Dialog, Page, expect

HOSTILE = "<img src=x onerror=alert(1)>"


def log_in(page: Page, user: str = ADMIN, password: str = PASSWORD) -> None:
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-source="{name}"]')


def test_log_in_see_the_sources_and_log_out(page: Page, console: Console) -> None:
    source = console.add_source("otx", description="AlienVault's pulses", port=8443)
    console.seed(source.name, 3)
    page.goto(console.url + "/sources")
    expect(page).to_have_url(re.compile(r"/login$"))
    log_in(page)
    expect(page).to_have_url(console.url + "/sources")
    expect(page.get_by_role("heading", name="External Threat Feed Manager")).to_be_visible()
    cells = row(page, source.name).locator("td")
    expect(cells.nth(0)).to_contain_text(source.name)
    expect(cells.nth(0)).to_contain_text("AlienVault's pulses")
    expect(cells.nth(1)).to_have_text("taxii.example.org:8443")
    expect(cells.nth(2)).to_have_text("user_AlienVault")
    expect(cells.nth(3)).to_have_text("yes")
    expect(cells.nth(4)).to_have_text("enforce")
    expect(cells.nth(5)).to_contain_text("ok")
    expect(cells.nth(5)).to_contain_text("3 read, 3 new, 0 updated, 0 expired")
    expect(cells.nth(6)).to_have_text("3")
    expect(cells.nth(7)).to_contain_text("every 1h")
    for role, name in (("button", "Poll Now"), ("link", "Edit"), ("button", "Disable")):
        expect(row(page, source.name).get_by_role(role, name=name)).to_be_visible()  # type: ignore[arg-type]
    expect(row(page, source.name).get_by_role("link", name="Delete")).to_be_visible()

    (cookie,) = [c for c in page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert console.users.session(cookie["value"]) is not None

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login\?logged_out=1$"))
    expect(page.get_by_text("You have logged out.")).to_be_visible()
    assert console.users.session(cookie["value"]) is None  # ended on the server too
    page.goto(console.url + "/sources")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_a_page_asked_for_before_login_is_shown_after_it(page: Page, console: Console) -> None:
    source = console.add_source()
    page.goto(f"{console.url}/sources/{source.name}/delete")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fsources%2F"))
    log_in(page)
    expect(page).to_have_url(f"{console.url}/sources/{source.name}/delete")


def test_disable_and_enable_a_source(logged_in: Page, console: Console) -> None:
    source = console.add_source()
    logged_in.goto(console.url + "/sources")
    row(logged_in, source.name).get_by_role("button", name="Disable").click()
    expect(logged_in.get_by_role("status")).to_contain_text(f"Source {source.name} disabled")
    expect(row(logged_in, source.name).locator("td.enabled")).to_have_text("no")
    expect(row(logged_in, source.name).locator("td.next-poll")).to_have_text(
        "not polled (disabled)"
    )
    assert console.store.get_source(source.name).enabled is False  # type: ignore[union-attr]
    row(logged_in, source.name).get_by_role("button", name="Enable").click()
    expect(logged_in.get_by_role("status")).to_contain_text(f"Source {source.name} enabled")
    expect(row(logged_in, source.name).locator("td.enabled")).to_have_text("yes")
    expect(row(logged_in, source.name).locator("td.next-poll")).to_have_text("due now")
    assert console.store.get_source(source.name).enabled is True  # type: ignore[union-attr]
    logged_in.reload()  # the flash message is shown once
    expect(logged_in.get_by_role("status")).to_have_count(0)


def test_delete_a_source_after_confirming(logged_in: Page, console: Console) -> None:
    source = console.add_source()
    console.seed(source.name, 2)
    logged_in.goto(console.url + "/sources")
    row(logged_in, source.name).get_by_role("link", name="Delete").click()
    expect(logged_in.get_by_role("heading")).to_have_text(f"Delete source {source.name}?")
    expect(logged_in.get_by_text("Its 2 observables are deleted with it")).to_be_visible()
    logged_in.get_by_role("link", name="Cancel").click()
    expect(logged_in).to_have_url(console.url + "/sources")
    assert console.store.get_source(source.name) is not None

    row(logged_in, source.name).get_by_role("link", name="Delete").click()
    logged_in.get_by_role("button", name=f"Delete source {source.name}").click()
    expect(logged_in).to_have_url(console.url + "/sources")
    expect(logged_in.get_by_role("status")).to_contain_text(f"Deleted source {source.name}")
    expect(row(logged_in, source.name)).to_have_count(0)
    assert console.store.get_source(source.name) is None
    assert console.store.count_observables(source=source.name) == {}


def test_a_wrong_password_is_refused_slowly(page: Page, console: Console) -> None:
    page.goto(console.url + "/login")
    started = time.monotonic()
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        log_in(page, password="not the password")
    took = time.monotonic() - started
    assert answer.value.status == 401
    assert took >= LOGIN_DELAY
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page.get_by_label("Username")).to_have_value(ADMIN)  # kept; the password is not
    expect(page.get_by_label("Password")).to_have_value("")
    assert SESSION_COOKIE not in {c["name"] for c in page.context.cookies()}
    log_in(page)  # a good login clears the address's record
    expect(page).to_have_url(console.url + "/sources")
    assert failures_of(console) == 0


def test_repeated_failures_are_throttled(browser: Browser, tmp_path: Path) -> None:
    """A server of its own: throttling 127.0.0.1 on the shared one would refuse the others."""
    with running_console(tmp_path) as console:
        context = browser.new_context()
        page = context.new_page()
        page.goto(console.url + "/login")
        for _ in range(MAX_FAILURES):
            log_in(page, password="guess")
            expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            log_in(page)  # the right password, and still refused
        assert answer.value.status == 429
        assert int(answer.value.headers["retry-after"]) > 14 * 60
        expect(page.get_by_role("alert")).to_have_text(
            "Too many failed logins from your address: try again in 15 minutes."
        )
        assert SESSION_COOKIE not in {c["name"] for c in context.cookies()}
        context.close()


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(
    logged_in: Page, console: Console
) -> None:
    source = console.add_source()
    logged_in.goto(console.url + "/sources")
    token = logged_in.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token
    request = logged_in.request  # the page's cookies: a logged-in session
    for form in ({}, {"csrf_token": "forged"}, {"csrf_token": token[:-1]}):
        refused = request.post(f"{console.url}/sources/{source.name}/disable", form=form)
        assert refused.status == 403 and "nothing was changed" in refused.text()
        assert request.post(f"{console.url}/sources/{source.name}/delete", form=form).status == 403
        assert request.post(f"{console.url}/logout", form=form).status == 403
    assert console.store.get_source(source.name).enabled is True  # type: ignore[union-attr]
    logged_in.reload()
    expect(logged_in.get_by_role("heading", name="External Threat Feed Manager")).to_be_visible()
    # the same request with the token is what the button sends
    done = request.post(
        f"{console.url}/sources/{source.name}/disable", form={"csrf_token": token}, max_redirects=0
    )
    assert done.status == 303
    assert console.store.get_source(source.name).enabled is False  # type: ignore[union-attr]


def test_hostile_feed_text_is_shown_as_text_and_runs_nothing(
    logged_in: Page, console: Console
) -> None:
    source = console.add_source(description=HOSTILE, collection=HOSTILE)
    dialogs: list[str] = []

    def record(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    logged_in.on("dialog", record)
    logged_in.goto(console.url + "/sources")
    line = row(logged_in, source.name)
    expect(line.locator("td.name .description")).to_have_text(HOSTILE)
    expect(line.locator("td.collection")).to_have_text(HOSTILE)
    expect(line.locator("img")).to_have_count(0)
    row(logged_in, source.name).get_by_role("link", name="Delete").click()
    expect(logged_in.get_by_role("heading")).to_contain_text(source.name)
    assert dialogs == []


def test_security_headers_and_the_api_keeps_its_token(logged_in: Page, console: Console) -> None:
    answer = logged_in.goto(console.url + "/sources")
    assert answer is not None
    headers = answer.headers
    assert headers["content-security-policy"] == CSP
    assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP
    assert "unsafe-inline" not in CSP
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"
    # a console session does not open the REST API: it keeps its bearer token
    assert logged_in.request.get(console.url + "/api/v1/sources").status == 401
    with_token = logged_in.request.get(
        console.url + "/api/v1/sources", headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert with_token.status == 200


def test_the_page_shows_what_the_api_says(logged_in: Page, console: Console) -> None:
    source = console.add_source("agree", description="API and page", use_https=False, port=8080)
    console.seed(source.name, 5)
    api = httpx.get(
        f"{console.url}/api/v1/sources/{source.name}",
        headers={"Authorization": f"Bearer {API_TOKEN}"},
    ).json()
    logged_in.goto(console.url + "/sources")
    cells = row(logged_in, source.name).locator("td")
    expect(cells.nth(1)).to_have_text(f"{api['hostname']}:{api['port']}")
    expect(cells.nth(2)).to_have_text(api["collection"])
    expect(cells.nth(3)).to_have_text("yes" if api["enabled"] else "no")
    expect(cells.nth(4)).to_have_text(api["mode"])
    expect(cells.nth(5)).to_contain_text(api["status"]["result"])
    expect(cells.nth(5)).to_contain_text(f"{api['status']['read']} read")
    assert sum(console.store.count_observables(source=source.name).values()) == 5
    expect(cells.nth(6)).to_have_text("5")


@pytest.mark.parametrize("path", ["/sources", "/"])
def test_the_nav_and_the_log_out_button_are_on_every_page(
    logged_in: Page, console: Console, path: str
) -> None:
    logged_in.goto(console.url + path)
    nav = logged_in.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Sources")).to_have_attribute("aria-current", "page")
    expect(logged_in.get_by_role("button", name="Log out")).to_be_visible()
    expect(logged_in.locator(".who")).to_have_text(ADMIN)
