"""The console's test fixtures: one Chromium for the whole session (Debian's, driven by
Playwright), one console server for the session, a fresh browser context per test.

* ``browser`` (session): Playwright's Chromium launched from Debian's binary
  (:data:`CHROMIUM`; Playwright's own browser download cannot work here, and is never tried).
  Without the binary or the playwright package the browser tests are skipped loudly, or fail
  under FEEDGATE_REQUIRE_ALL=1 (``peers.require``).
* ``console`` (session): :func:`console_helpers.running_console`, a real server on a temporary
  SQLite database. Tests share it, so each makes sources of its own (``console.add_source``
  names them uniquely) and none may throttle its address (a test that does starts its own).
* ``page`` (a logged-out page) and ``logged_in`` (a page whose context holds a fresh session
  of ``admin``, made as a login makes it): a new browser context each, closed after the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from console_helpers import Console, running_console

from feedgate.feeds import secrets
from peers import require

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: Debian's Chromium itself (not /usr/bin/chromium, a shell wrapper): `make sysdeps` installs it.
CHROMIUM = Path(os.environ.get("FEEDGATE_TEST_CHROMIUM", "/usr/lib/chromium/chromium"))
#: Root needs --no-sandbox (CI runs as root); the others keep a container's small /dev/shm and
#: missing GPU from mattering.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
#: The viewport of a laptop screen: what the console is laid out for.
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        require("the playwright package is not installed: pip install -e '.[test]'")
    if not os.access(CHROMIUM, os.X_OK):
        require(f"Chromium is not installed ({CHROMIUM}): make sysdeps (as root) installs it")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
        except Error as exc:
            require(f"Chromium ({CHROMIUM}) does not start: {str(exc).splitlines()[0]}")
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(secrets.KEY_ENV, secrets.generate_key())  # sources' secrets
        with running_console(tmp_path_factory.mktemp("console")) as running:
            yield running


def _page(browser: Browser, cookies: list[dict[str, Any]]) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    if cookies:
        context.add_cookies(cookies)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page of a new browser context with no session."""
    yield from _page(browser, [])


@pytest.fixture
def logged_in(browser: Browser, console: Console) -> Iterator[Page]:
    """A page of a new browser context holding a fresh session of ``admin``."""
    yield from _page(browser, [console.session_cookie()])
