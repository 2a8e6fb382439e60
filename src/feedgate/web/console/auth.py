"""Logging in and out of the console, and the guard every other page stands behind.

* :func:`require_user` wraps a page's handler: a visitor without a live session is sent to
  ``/login?next=<the page>`` (303), and every method but GET and HEAD must carry the session's
  CSRF token (:mod:`.csrf`) or is answered 403 before the handler runs, so nothing changes.
  The handler then finds the session with :func:`user`, the form with :func:`form` and the raw
  body (a script's JSON) with :func:`body`. A plain ``def`` handler runs in a worker thread
  (the stores block), an ``async def`` one on the loop (server-sent events). :func:`page_route`
  is the one way a page module makes a route.
* ``/login`` (GET: the form; POST: a login) begins a session: a random token in a cookie that
  scripts cannot read (HttpOnly), that no other site's request carries (SameSite=Strict), sent
  only over HTTPS when the console is served over HTTPS (Secure). A refused login is answered
  no sooner than :data:`~.context.LOGIN_DELAY` after it arrived, waited on the event loop; a
  throttled address (:class:`~feedgate.feeds.console_users.ConsoleUsers`) is told how long to
  wait (429).
* ``/logout`` (POST, with the CSRF token) ends the session on the server and drops the cookie.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from feedgate.feeds.console_users import ConsoleSession, ConsoleUsers, LoginRefused

from . import csrf
from .context import ConsoleContext
from .render import NO_STORE, render

__all__ = [
    "HOME",
    "SESSION_COOKIE",
    "Handler",
    "body",
    "form",
    "is_guarded",
    "page_route",
    "require_user",
    "routes",
    "safe_next",
    "user",
]

#: The session cookie's name.
SESSION_COOKIE: Final = "feedgate_session"
#: Where a login goes when it was not sent from a page.
HOME: Final = "/sources"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
_GUARDED: Final = "__feedgate_console_guarded__"

#: A page handler: a plain function (run in a worker thread) or a coroutine function.
Handler = Callable[[Request], Response] | Callable[[Request], Awaitable[Response]]


def _users(request: Request) -> ConsoleUsers:
    users = getattr(request.app.state, "console_users", None)
    assert isinstance(users, ConsoleUsers), "a console route outside the console app"
    return users


def user(request: Request) -> ConsoleSession:
    """The session of a request that passed :func:`require_user`."""
    session = getattr(request.state, "session", None)
    assert isinstance(session, ConsoleSession), "user() in a handler without require_user"
    return session


def form(request: Request) -> FormData:
    """The form of a POST (or other unsafe method) that passed :func:`require_user`: read
    once, against the size limit, before the CSRF check."""
    found = getattr(request.state, "form", None)
    assert isinstance(found, FormData), "form() of a GET, or in a handler without require_user"
    return found


def body(request: Request) -> bytes:
    """The body of a POST (or other unsafe method) that passed :func:`require_user`, as read
    for the CSRF check (the stream is spent by then): what a script's JSON request sent."""
    found = getattr(request.state, "body", None)
    assert isinstance(found, bytes), "body() of a GET, or in a handler without require_user"
    return found


def safe_next(target: str | None) -> str:
    """``target`` if it is a path on this server (``/...``, not ``//host`` nor a scheme), else
    :data:`HOME`: the login's ``next`` never sends anyone to another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(c in target for c in "\r\n\t\\"):
        return HOME
    return target


def _login_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login" if here in ("/", HOME) else f"/login?next={quote(here, safe='')}"


def _forbidden(request: Request) -> Response:
    return render(
        request,
        "error.html",
        403,
        title="Refused",
        message="This form was not sent from this console page, or it is stale: nothing was "
        "changed. Go back, reload the page and try again.",
    )


def require_user(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` behind the login and, for every method but GET/HEAD, the CSRF check (see
    the module doc)."""

    async def endpoint(request: Request) -> Response:
        users = _users(request)
        token = request.cookies.get(SESSION_COOKIE)
        session = await run_in_threadpool(users.session, token) if token else None
        if session is None:
            return RedirectResponse(_login_url(request), 303, headers=NO_STORE)
        request.state.session = session
        if request.method not in _SAFE_METHODS:
            try:
                submitted = await csrf.read_form(request)
            except csrf.FormTooLarge:
                return render(
                    request,
                    "error.html",
                    413,
                    title="Too large",
                    message=f"The form is over {csrf.MAX_FORM_BYTES:,} bytes: nothing was done.",
                )
            given = submitted.form
            if not csrf.valid(csrf.given_token(request, given), session.csrf_token):
                await given.close()
                return _forbidden(request)
            request.state.form = given
            request.state.body = submitted.body
            try:
                return await _call(handler, request)
            finally:
                await given.close()
        return await _call(handler, request)

    setattr(endpoint, _GUARDED, True)
    endpoint.__name__ = getattr(handler, "__name__", "page")
    endpoint.__doc__ = handler.__doc__
    return endpoint


async def _call(handler: Handler, request: Request) -> Response:
    if inspect.iscoroutinefunction(handler):
        return await cast(Callable[[Request], Awaitable[Response]], handler)(request)
    return await run_in_threadpool(cast(Callable[[Request], Response], handler), request)


def is_guarded(endpoint: Any) -> bool:
    """Whether ``endpoint`` came from :func:`require_user` (the app refuses page routes that
    did not)."""
    return bool(getattr(endpoint, _GUARDED, False))


def page_route(path: str, handler: Handler, methods: tuple[str, ...] = ("GET",)) -> Route:
    """A console page's route: ``handler`` at ``path`` behind :func:`require_user`."""
    return Route(path, require_user(handler), methods=list(methods))


# --- /login and /logout -----------------------------------------------------------------------


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(
    request: Request,
    status_code: int = 200,
    *,
    error: str = "",
    name: str = "",
    target: str | None = None,
) -> Response:
    """The login form (a fresh double-submit token with it); ``target``: where a login goes
    (default: the query's ``next``)."""
    token = csrf.new_login_token()
    response = render(
        request,
        "login.html",
        status_code,
        title="Log in",
        login_token=token,
        next=target or safe_next(request.query_params.get("next") or None),
        error=error,
        username=name,
        logged_out=request.query_params.get("logged_out") == "1",
    )
    response.set_cookie(
        csrf.LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/login",
    )
    return response


def _minutes(seconds: float) -> str:
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    """``/login`` and ``/logout``; ``/`` goes to the first page."""

    async def login_get(request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        if token and await run_in_threadpool(ctx.users.session, token) is not None:
            target = safe_next(request.query_params.get("next") or None)
            return RedirectResponse(target, 303, headers=NO_STORE)
        return _login_page(request)

    async def login_post(request: Request) -> Response:
        arrived = time.monotonic()
        try:
            given = (await csrf.read_form(request)).form
        except csrf.FormTooLarge:
            return _login_page(request, 413, error="The form was too large.")
        name = str(given.get("username") or "")
        password = str(given.get("password") or "")
        target = safe_next(str(given.get("next") or "") or None)
        token = str(given.get(csrf.FIELD) or "")
        await given.close()
        if not csrf.valid(token, request.cookies.get(csrf.LOGIN_COOKIE) or ""):
            return _login_page(
                request,
                403,
                error="The login form was stale or not sent from this console: try again.",
                name=name,
                target=target,
            )
        address = request.client.host if request.client else None
        try:
            new = await run_in_threadpool(ctx.users.login, name, password, address)
        except LoginRefused as refused:
            await asyncio.sleep(max(0.0, ctx.login_delay - (time.monotonic() - arrived)))
            if refused.reason == "throttled":
                wait = refused.retry_after.total_seconds() if refused.retry_after else 60.0
                response = _login_page(
                    request,
                    429,
                    error=f"Too many failed logins from your address: try again in "
                    f"{_minutes(wait)}.",
                    name=name,
                    target=target,
                )
                response.headers["Retry-After"] = str(max(1, int(wait)))
                return response
            return _login_page(
                request, 401, error="Wrong user name or password.", name=name, target=target
            )
        response = RedirectResponse(target, 303, headers=NO_STORE)
        response.set_cookie(
            SESSION_COOKIE,
            new.token,
            httponly=True,
            samesite="strict",
            secure=_secure(request),
            path="/",
        )
        response.delete_cookie(csrf.LOGIN_COOKIE, path="/login")
        return response

    def logout(request: Request) -> Response:
        ctx.users.logout(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login?logged_out=1", 303, headers=NO_STORE)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def home(request: Request) -> Response:
        return RedirectResponse(HOME, 303, headers=NO_STORE)

    return [
        Route("/", home, methods=["GET"]),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        page_route("/logout", logout, methods=("POST",)),
    ]
