"""The console app: its routes, the pages' registry, the security headers, and the one ASGI app
``feedgate serve`` and ``up`` serve (the console's routes first, then the REST API).

Pages are registered in :data:`PAGES` (one line per page module, in nav order), and the nav is
built from it. Every route a page module returns must have been made with
:func:`~.auth.page_route` (login and CSRF): :func:`console_routes` refuses one that was not, so a
forgotten guard fails at start-up, never in production.

Every answer (the API's too) carries :data:`SECURITY_HEADERS`: a Content-Security-Policy that
allows scripts, styles, images and fonts only from this server and no inline script or style
(a value a feed smuggled into a page could not run even if escaping failed), no framing
(clickjacking), no MIME sniffing, no Referer to other sites.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import auth, log, observables, policy, poll_now, quarantine, reports, source_form, sources
from .context import ConsoleContext, Page
from .render import ConsoleState, templates

__all__ = ["CSP", "PAGES", "SECURITY_HEADERS", "SecurityHeaders", "console_app", "console_routes"]

#: The console's pages in nav order (Sources, Log, Observables, Policy, Quarantine, Reports):
#: a page module exports ``PAGE`` (:class:`~.context.Page`) and is added here, one line.
PAGES: Final[tuple[Page, ...]] = (
    sources.PAGE,
    source_form.PAGE,
    poll_now.PAGE,
    log.PAGE,
    observables.PAGE,
    policy.PAGE,
    quarantine.PAGE,
    reports.PAGE,
)

#: The Content-Security-Policy of every answer.
CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: Final[dict[str, str]] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
}

_STATIC: Final = Path(__file__).parent / "static"


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP answer (unless the
    answer set one of them itself)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, with_headers)


def console_routes(ctx: ConsoleContext, pages: Sequence[Page] = PAGES) -> list[BaseRoute]:
    """Every route of the console: login/logout, the static files, and each page of ``pages``;
    ValueError for a page route not made with :func:`~.auth.page_route`."""
    routes: list[BaseRoute] = [
        *auth.routes(ctx),
        Mount("/static", app=StaticFiles(directory=_STATIC), name="static"),
    ]
    for page in pages:
        for route in page.routes(ctx):
            if not (isinstance(route, Route) and auth.is_guarded(route.endpoint)):
                raise ValueError(
                    f"console route {getattr(route, 'path', route)!r} is not behind the login:"
                    " make it with feedgate.web.console.auth.page_route"
                )
            routes.append(route)
    return routes


def console_app(ctx: ConsoleContext, api: ASGIApp, pages: Sequence[Page] = PAGES) -> ASGIApp:
    """The console's routes (with ``pages``) first, then ``api`` (the REST API of
    :func:`feedgate.web.api.create_api`, which keeps its bearer token) for every other path,
    all behind :class:`SecurityHeaders`."""
    app = Starlette(routes=[*console_routes(ctx, pages), Mount("", app=api)])
    app.state.console = ConsoleState(templates(), [p.nav for p in pages if p.nav is not None])
    app.state.console_users = ctx.users
    return SecurityHeaders(app)
