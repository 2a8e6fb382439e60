"""The console over HTTP, without a browser: every page route is behind the login and every
unsafe one behind the CSRF check (walked over the registered routes, so a page added later is
held to it too), the login form's own CSRF cookie, where a login may send the browser, the
Secure cookie over HTTPS, form size limits, static files, and the scheduler rule the Sources
page shows as "next poll"."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from console_helpers import ADMIN, API_TOKEN, PASSWORD, Console
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from feedgate.feeds.log import ThreatFeedLog
from feedgate.feeds.scheduler import Scheduler, next_poll
from feedgate.web.console import console_routes
from feedgate.web.console.auth import HOME, SESSION_COOKIE, page_route, safe_next
from feedgate.web.console.context import NavItem, Page
from feedgate.web.console.csrf import LOGIN_COOKIE, MAX_FORM_BYTES


def client(console: Console, *, session: bool = False) -> httpx.Client:
    cookies = {SESSION_COOKIE: console.session_cookie()["value"]} if session else {}
    return httpx.Client(base_url=console.url, cookies=cookies, follow_redirects=False)


def concrete(path: str, name: str) -> str:
    return re.sub(r"\{[^}]+\}", name, path)


def page_routes(console: Console) -> list[Route]:
    return [
        r
        for r in console_routes(console.ctx)
        if isinstance(r, Route) and r.path not in ("/", "/login")
    ]


def test_every_page_sends_a_visitor_without_a_session_to_the_login(console: Console) -> None:
    name = console.add_source().name
    with client(console) as http:
        for route in page_routes(console):
            for method in sorted(route.methods or ()):
                if method == "HEAD":
                    continue
                path = concrete(route.path, name)
                answer = http.request(method, path)
                assert answer.status_code == 303, (method, path)
                assert answer.headers["location"].startswith("/login"), (method, path)
        assert console.store.get_source(name) is not None  # no POST did anything


def test_every_unsafe_route_needs_the_csrf_token(console: Console) -> None:
    name = console.add_source().name
    unsafe = [
        (method, concrete(route.path, name))
        for route in page_routes(console)
        for method in sorted(route.methods or ())
        if method not in ("GET", "HEAD")
    ]
    assert ("POST", f"/sources/{name}/delete") in unsafe and ("POST", "/logout") in unsafe
    with client(console, session=True) as http:
        for method, path in unsafe:
            answer = http.request(method, path, data={"csrf_token": "forged"})
            assert answer.status_code == 403, (method, path)
        assert http.get("/sources").status_code == 200  # the session was not logged out
    source = console.store.get_source(name)
    assert source is not None and source.enabled


def test_a_page_route_not_behind_the_login_is_refused_at_start() -> None:
    def handler(request: Request) -> Response:
        return PlainTextResponse("open")

    open_page = Page(NavItem("Open", "/open"), lambda ctx: [Route("/open", handler)])
    with pytest.raises(ValueError, match="'/open' is not behind the login"):
        console_routes(None, [open_page])  # type: ignore[arg-type]
    guarded = Page(NavItem("Open", "/open"), lambda ctx: [page_route("/open", handler)])
    assert [r.path for r in console_routes(None, [guarded])][-1] == "/open"  # type: ignore[arg-type,attr-defined]


def _login_form(http: httpx.Client) -> str:
    form = http.get("/login")
    assert form.status_code == 200 and LOGIN_COOKIE in form.cookies
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert found
    return found.group(1)


def test_the_login_form_needs_its_own_csrf_cookie(console: Console) -> None:
    with client(console) as http:
        token = _login_form(http)
        http.cookies.delete(LOGIN_COOKIE)
        form = {"username": ADMIN, "password": PASSWORD, "csrf_token": token}
        refused = http.post("/login", data=form)
        assert refused.status_code == 403 and SESSION_COOKIE not in refused.cookies
        assert "stale or not sent from this console" in refused.text
    with client(console) as http:
        token = _login_form(http)
        done = http.post(
            "/login", data={"username": ADMIN, "password": PASSWORD, "csrf_token": token}
        )
        assert done.status_code == 303 and done.headers["location"] == HOME
        assert SESSION_COOKIE in done.cookies


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "x"],
)
def test_a_login_never_sends_the_browser_to_another_site(console: Console, target: str) -> None:
    assert safe_next(target) == HOME
    with client(console) as http:
        token = _login_form(http)
        form = {"username": ADMIN, "password": PASSWORD, "csrf_token": token, "next": target}
        done = http.post("/login", data=form)
        assert done.status_code == 303 and done.headers["location"] == HOME


def test_a_login_goes_on_to_the_page_asked_for(console: Console) -> None:
    assert safe_next("/sources/x/delete?a=1") == "/sources/x/delete?a=1"
    with client(console) as http:
        asked = http.get("/sources/feed-1/delete")
        assert asked.headers["location"] == "/login?next=%2Fsources%2Ffeed-1%2Fdelete"
        form_page = http.get(asked.headers["location"])
        assert 'name="next" value="/sources/feed-1/delete"' in form_page.text


def test_the_session_cookie_is_secure_over_https(console: Console) -> None:
    """Behind a TLS-terminating proxy on the host (uvicorn takes X-Forwarded-Proto from
    127.0.0.1), the request's scheme is https, and the cookies are sent only over HTTPS."""
    https = {"X-Forwarded-Proto": "https"}
    with client(console) as http:
        form = http.get("/login", headers=https)
        assert "; secure" in form.headers["set-cookie"].lower()
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token
        value = token.group(1)  # the cookie's too; the client keeps no Secure one for http
        done = http.post(
            "/login",
            data={"username": ADMIN, "password": PASSWORD, "csrf_token": value},
            headers={**https, "Cookie": f"{LOGIN_COOKIE}={value}"},
        )
    assert done.status_code == 303
    (cookie,) = [c for c in done.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    assert "; secure" in cookie.lower() and "; httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    with client(console) as http:
        form = http.get("/login")  # plain HTTP: a Secure cookie would never come back
        assert "secure" not in form.headers["set-cookie"].lower()


def test_a_form_over_the_limit_is_refused_unread(console: Console) -> None:
    name = console.add_source().name
    with client(console, session=True) as http:
        answer = http.post(
            f"/sources/{name}/disable",
            content=b"a=" + b"x" * (MAX_FORM_BYTES + 1),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert answer.status_code == 413
    assert console.store.get_source(name).enabled  # type: ignore[union-attr]


def test_static_files_need_no_login_and_are_not_sniffed(console: Console) -> None:
    with client(console) as http:
        css = http.get("/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert css.headers["x-content-type-options"] == "nosniff"


def test_the_api_answers_behind_the_console(console: Console) -> None:
    with client(console) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/api/v1/sources").status_code == 401
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        assert http.get("/api/v1/sources", headers=auth).status_code == 200
        assert http.get("/").headers["location"] == HOME


def test_next_poll_is_the_schedulers_rule(console: Console) -> None:
    now = datetime.now(UTC)
    source = console.add_source(polling_interval="2h")
    scheduler = Scheduler(
        console.store, ThreatFeedLog(console.store, write_file=False), now=lambda: now
    )
    due = {s.name for s in scheduler.due()}
    assert next_poll(source, None, now) == now and source.name in due  # never polled
    console.store.set_status(source.name, last_start=now - timedelta(minutes=30), result="ok")
    assert next_poll(source, now - timedelta(minutes=30), now) == now + timedelta(minutes=90)
    assert source.name not in {s.name for s in scheduler.due()}
    later = now + timedelta(minutes=90)
    assert next_poll(source, now - timedelta(minutes=30), later) == later
    assert source.name in {
        s.name for s in Scheduler(console.store, scheduler.feed_log, now=lambda: later).due()
    }
    disabled = console.add_source(enabled=False)
    assert next_poll(disabled, None, now) is None


def test_a_scripts_request_carries_the_token_in_a_header_and_its_body_reaches_the_page(
    console: Console,
) -> None:
    """What a page's script (fetch) sends: JSON, the CSRF token in X-CSRF-Token; the handler
    reads the body the guard read (body()) and the user (user()). Async handlers too."""
    import json

    from feedgate.asgi_server import serving
    from feedgate.web.console import console_app
    from feedgate.web.console.auth import body, user
    from feedgate.web.console.csrf import HEADER

    def echo(request: Request) -> Response:
        return PlainTextResponse(f"{user(request).user}:{json.loads(body(request))['n']}")

    async def async_echo(request: Request) -> Response:
        return PlainTextResponse(f"async {user(request).user}:{body(request).decode()}")

    page = Page(
        NavItem("Echo", "/echo"),
        lambda ctx: [
            page_route("/echo", echo, methods=("POST",)),
            page_route("/echo-async", async_echo, methods=("POST",)),
        ],
    )
    app = console_app(console.ctx, PlainTextResponse("api"), pages=[page])
    cookie = console.session_cookie()["value"]
    csrf = console.users.session(cookie).csrf_token  # type: ignore[union-attr]
    with serving(app) as url, httpx.Client(base_url=url, cookies={SESSION_COOKIE: cookie}) as http:
        sent = {"content": b'{"n": 7}', "headers": {"Content-Type": "application/json"}}
        refused = http.post("/echo", **sent)  # type: ignore[arg-type]
        assert refused.status_code == 403
        with_header = {**sent["headers"], HEADER: csrf}  # type: ignore[dict-item]
        assert http.post("/echo", content=b'{"n": 7}', headers=with_header).text == "admin:7"
        answer = http.post("/echo-async", content=b"{}", headers=with_header)
        assert answer.text == "async admin:{}"
        assert http.get("/sources").text == "api"  # only the pages given: the rest is the API's
