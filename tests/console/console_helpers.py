"""A real console server for the tests: the app ``feedgate serve`` serves (the console's routes
and the REST API behind them) on a temporary SQLite database, served by uvicorn on a free port
in a thread (:func:`feedgate.asgi_server.serving`), with a console user and helpers to seed
sources, observables and sessions.

Pages build on it like this (see tests/console/conftest.py)::

    def test_something(console: Console, logged_in: Page) -> None:
        console.add_source("otx-x", description="...")
        logged_in.goto(console.url + "/sources")
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from feedgate.asgi_server import serving
from feedgate.db import engine
from feedgate.feeds.console_users import ConsoleUsers
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.sources import Source, make_source
from feedgate.feeds.store import FeedStore
from feedgate.mail.policy_store import PolicyStore
from feedgate.observables import Kind, Observable
from feedgate.web.api import create_api
from feedgate.web.console import ConsoleContext, console_app

#: The console user every test server has, and its password.
ADMIN = "admin"
PASSWORD = "console-test-Pa55word"
#: The REST API's token on the test servers.
API_TOKEN = "console-test-api-token-0123456789abcdef"
#: How long a refused login is answered after on the test servers (the real default is 1 s;
#: shorter keeps the suite quick, and the tests check it is waited).
LOGIN_DELAY = 0.3


@dataclass
class Console:
    """A running console: its URL, and the stores behind it (the same objects it serves)."""

    url: str
    store: FeedStore
    users: ConsoleUsers
    ctx: ConsoleContext

    def add_source(self, prefix: str = "feed", **fields: Any) -> Source:
        """A new source (through make_source, as every face adds one) named ``prefix-<random>``
        unless ``name`` is given: tests sharing a server never collide."""
        values: dict[str, Any] = {
            "name": f"{prefix}-{uuid.uuid4().hex[:8]}",
            "hostname": "taxii.example.org",
            "poll_path": "/taxii/poll",
            "collection": "user_AlienVault",
            "description": "a test feed",
        }
        values.update(fields)
        source = make_source(values)
        self.store.add_source(source)
        return source

    def seed(self, name: str, count: int, *, polled: bool = True) -> None:
        """``count`` IPv4 observables in ``name``, and a last poll that brought them."""
        now = datetime.now(UTC)
        observables = [
            Observable(Kind.IPV4, f"198.18.{n >> 8 & 255}.{n & 255}", None, {"n": n})
            for n in range(count)
        ]
        with self.store.segment(name) as segment:
            segment.upsert(observables, now)
            segment.finish(now)
        if polled:
            self.store.set_status(
                name,
                last_start=now - timedelta(seconds=3),
                last_end=now,
                result="ok",
                blocks=1,
                read=count,
                new=count,
                updated=0,
                expired=0,
            )

    def session_cookie(self, user: str = ADMIN) -> dict[str, Any]:
        """A fresh session of ``user`` as a Playwright cookie (what a login would set)."""
        from feedgate.web.console.auth import SESSION_COOKIE

        token = self.users.login(user, PASSWORD, "test-fixture").token
        return {"name": SESSION_COOKIE, "value": token, "url": self.url}


@contextmanager
def running_console(
    directory: Path, now: Callable[[], datetime] | None = None, **users_options: Any
) -> Iterator[Console]:
    """A console on a new database in ``directory`` with user :data:`ADMIN`; ``now`` is its
    pages' clock (default: the real one); ``users_options`` go to ConsoleUsers (limits of the
    throttle, say)."""
    eng = engine(str(directory / "feeds.db"))
    store = FeedStore(eng)
    feed_log = ThreatFeedLog(store, write_file=False)
    users = ConsoleUsers(eng, **users_options)
    users.add(ADMIN, PASSWORD)
    policy = PolicyStore(eng, store.source_names)
    ctx = ConsoleContext(store, feed_log, users, policy, login_delay=LOGIN_DELAY)
    if now is not None:
        ctx = dataclasses.replace(ctx, now=now)
    app = console_app(ctx, create_api(store, feed_log, API_TOKEN, policy=policy))
    with serving(app) as url:
        yield Console(url, store, users, ctx)
    eng.dispose()


def failures_of(console: Console) -> int:
    """Login attempts on record (what throttling counts)."""
    with console.store.engine.connect() as conn:
        return int(
            conn.execute(sa.text("SELECT count(*) FROM console_login_failures")).scalar_one()
        )
