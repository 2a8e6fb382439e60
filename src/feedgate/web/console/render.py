"""Pages from templates: one Jinja2 environment with autoescape on, and :func:`render`, which
every console page answers with.

Everything a feed says is untrusted text (pulse titles, descriptions, indicator values) and
so is every name an admin typed: the environment escapes every ``{{ value }}`` of every
template (``autoescape=True`` for all, not only by file name), and nothing is marked safe. An
undefined variable is an error (``StrictUndefined``), not an empty string that hides a typo.

:func:`render` adds what ``base.html`` needs: the session (user, CSRF token), the nav with the
current section marked, and the flash message the previous request left (:func:`flash`: after
a POST, the redirect's page says what was done). Pages are never cached (``no-store``): they
show a logged-in user's data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from feedgate.feeds.console_users import ConsoleSession

from .context import NavItem

__all__ = [
    "FLASH_COOKIE",
    "NO_STORE",
    "ConsoleState",
    "console_state",
    "flash",
    "render",
    "session_of",
    "templates",
]

#: The cookie a flash message waits in for the next page (signed with the session's CSRF
#: token, so only this console, for this session, can have written it).
FLASH_COOKIE: Final = "feedgate_flash"
#: What every console page says about caching.
NO_STORE: Final = {"Cache-Control": "no-store"}
_FLASH_MAX: Final = 600


def _when(moment: datetime | None) -> str:
    """A moment as a table shows it: UTC to the minute (``-`` for none); ``iso`` gives the
    whole of it, for a ``<time datetime=...>`` and its tooltip."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def templates() -> jinja2.Environment:
    """The console's Jinja2 environment: the package's ``templates/``, autoescape on for
    every template, undefined names an error; filters ``when`` (a datetime in UTC, to the
    minute), ``iso`` (to the second, for ``<time datetime>``), ``count``
    (thousands separated) and ``q`` (a path segment, every reserved character quoted)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("feedgate.web.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["iso"] = _iso
    env.filters["count"] = _count
    env.filters["q"] = lambda value: quote(str(value), safe="")
    return env


@dataclass(frozen=True)
class ConsoleState:
    """What the console app keeps for :func:`render` (``app.state.console``)."""

    env: jinja2.Environment
    nav: Sequence[NavItem]


def console_state(request: Request) -> ConsoleState:
    state = getattr(request.app.state, "console", None)
    assert isinstance(state, ConsoleState), "render() outside the console app"
    return state


def session_of(request: Request) -> ConsoleSession | None:
    """The request's session, as :func:`~feedgate.web.console.auth.require_user` found it
    (None on the login page)."""
    session = getattr(request.state, "session", None)
    return session if isinstance(session, ConsoleSession) else None


def _mac(session: ConsoleSession, text: bytes) -> str:
    digest = hmac.new(session.csrf_token.encode(), b"flash\0" + text, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def flash(request: Request, response: Response, text: str, level: str = "ok") -> Response:
    """Leave ``text`` for the next page this session renders (after a POST's redirect);
    ``level`` "ok" or "error". Returns ``response``."""
    session = session_of(request)
    if session is None:
        return response
    raw = f"{level if level in ('ok', 'error') else 'ok'}:{text[:_FLASH_MAX]}".encode()
    value = base64.urlsafe_b64encode(raw).decode().rstrip("=") + "." + _mac(session, raw)
    response.set_cookie(
        FLASH_COOKIE,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def _taken_flash(request: Request, session: ConsoleSession | None) -> dict[str, str] | None:
    value = request.cookies.get(FLASH_COOKIE)
    if not value or session is None or "." not in value:
        return None
    encoded, mac = value.rsplit(".", 1)
    try:
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        return None
    if not hmac.compare_digest(mac.encode(), _mac(session, raw).encode()):
        return None
    level, _, text = raw.decode("utf-8", "replace").partition(":")
    return {"level": level, "text": text}


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The page ``template`` rendered with ``context`` plus ``request``, ``session`` (or
    None), ``csrf_token`` (the session's, for every form: ``<input type="hidden"
    name="csrf_token" value="{{ csrf_token }}">``), ``nav`` (label, path, current) and
    ``flash`` (the message :func:`flash` left, or None; taken, so shown once)."""
    state = console_state(request)
    session = session_of(request)
    path = request.url.path
    nav = [
        {
            "label": item.label,
            "path": item.path,
            "current": path == item.path or path.startswith(item.path.rstrip("/") + "/"),
        }
        for item in state.nav
    ]
    message = _taken_flash(request, session)
    body = state.env.get_template(template).render(
        request=request,
        session=session,
        csrf_token=session.csrf_token if session else "",
        nav=nav,
        flash=message,
        **context,
    )
    response = HTMLResponse(body, status_code, headers=NO_STORE)
    if request.cookies.get(FLASH_COOKIE):
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response
