"""What every console page stands on: the stores it reads (:class:`ConsoleContext`) and how a
page module declares itself (:class:`Page`: its nav item and its routes).

A page module (``sources.py``, ``log.py``, ...) exports ``PAGE = Page(NavItem(label, path),
routes)``, where ``routes(ctx)`` returns its Starlette routes, each made with
:func:`feedgate.web.console.auth.page_route` (login required, CSRF checked on every method but
GET/HEAD); :data:`feedgate.web.console.app.PAGES` lists the modules' pages in nav order, and
the nav is built from that list alone, so a page that exists is linked and none that does not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final

from starlette.routing import BaseRoute

from feedgate.feeds.console_users import ConsoleUsers
from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.scheduler import DEFAULT_LEASE
from feedgate.feeds.store import FeedStore
from feedgate.mail.policy_store import PolicyStore

__all__ = ["LOGIN_DELAY", "ConsoleContext", "NavItem", "Page"]

#: Seconds a refused login is answered after, at the least (from when it arrived): with the
#: throttle, guessing does not pay. Waited on the event loop, so waiting ties up no thread.
LOGIN_DELAY: Final = 1.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ConsoleContext:
    """The stores and settings the console's pages read: the same objects the REST API is
    built on (``feedgate serve`` makes both from one store), so a page shows what the API
    shows. ``now`` is the pages' clock; ``lease`` what Poll Now holds a source's lease for."""

    store: FeedStore
    feed_log: ThreatFeedLog
    users: ConsoleUsers
    policy: PolicyStore
    lease: timedelta = DEFAULT_LEASE
    now: Callable[[], datetime] = field(default=_utcnow)
    login_delay: float = LOGIN_DELAY


@dataclass(frozen=True)
class NavItem:
    """An entry of the console's nav: its label and the path it links to (the section is
    "current" on every path under it)."""

    label: str
    path: str


@dataclass(frozen=True)
class Page:
    """A page module's declaration: its nav entry (None: not in the nav) and its routes."""

    nav: NavItem | None
    routes: Callable[[ConsoleContext], list[BaseRoute]]
