"""The Sources page (``/sources``, "External Threat Feed Manager"): every source with its last
poll, the observables it holds and its next poll; Enable/Disable and Delete (confirmed first).

A page shows what the REST API shows, through the same functions: each row is
:func:`feedgate.web.api.source_json` of a source (as ``GET /api/v1/sources`` answers),
Enable/Disable write through :func:`~feedgate.web.api.change_source` (``PATCH``), Delete
through the store's ``delete_source`` (``DELETE``); the observables held are the store's
count, the next poll the scheduler's rule (:func:`feedgate.feeds.scheduler.next_poll`).

Add Source, Edit and Poll Now are linked here (:data:`ADD_PATH`, :data:`EDIT_PATH`,
:data:`POLL_PATH`) and served by the source forms' module, not by this one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from feedgate.feeds.scheduler import next_poll
from feedgate.feeds.sources import Source, format_duration
from feedgate.web.api import change_source, source_json

from .auth import page_route
from .context import ConsoleContext, NavItem, Page
from .render import NO_STORE, flash, render

__all__ = ["ADD_PATH", "EDIT_PATH", "PAGE", "PATH", "POLL_PATH", "routes"]

#: The page's path and title (the gateway's own words).
PATH: Final = "/sources"
TITLE: Final = "External Threat Feed Manager"
#: The source forms' and Poll Now's routes (not this module's: see the module doc).
ADD_PATH: Final = "/sources/add"
EDIT_PATH: Final = "/sources/{name}/edit"
POLL_PATH: Final = "/sources/{name}/poll"


def _moment(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _last_poll(status: dict[str, Any]) -> dict[str, Any]:
    """The "last poll" cell from the API's status object: its result, when, and what it read
    (or its error)."""
    result = status.get("result")
    if result is None:
        return {"result": "never", "when": None, "detail": ""}
    if result == "running":
        return {"result": "running", "when": _moment(status.get("last_start")), "detail": ""}
    detail = ""
    if result == "error":
        detail = " ".join(str(status.get("error") or "").split())
    elif status.get("read") is not None:
        detail = (
            f"{status['read']:,} read, {status.get('new') or 0:,} new, "
            f"{status.get('updated') or 0:,} updated, {status.get('expired') or 0:,} expired"
        )
    when = _moment(status.get("last_end")) or _moment(status.get("last_start"))
    return {"result": str(result), "when": when, "detail": detail}


def _row(ctx: ConsoleContext, stored: Source, now: datetime) -> dict[str, Any]:
    source = source_json(stored, ctx.store)
    name = str(source["name"])
    last_start = _moment(source["status"].get("last_start"))
    default_port = 443 if source["use_https"] else 80
    return {
        "name": name,
        "description": source["description"],
        "host": source["hostname"]
        + ("" if source["port"] == default_port else f":{source['port']}"),
        "collection": source["collection"],
        "enabled": bool(source["enabled"]),
        "mode": source["mode"],
        "interval": source["polling_interval"],
        "last_poll": _last_poll(source["status"]),
        "held": sum(ctx.store.count_observables(source=name).values()),
        "next_poll": next_poll(stored, last_start, now),
        "edit": EDIT_PATH.format(name=quote(name, safe="")),
        "poll": POLL_PATH.format(name=quote(name, safe="")),
    }


def _missing(request: Request, name: str) -> Response:
    return render(
        request,
        "error.html",
        404,
        title="No such source",
        message=f"There is no source named {name!r} (it may have been deleted meanwhile).",
        back=PATH,
    )


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    def sources_page(request: Request) -> Response:
        now = ctx.now()
        rows = [_row(ctx, source, now) for source in ctx.store.list_sources()]
        return render(request, "sources.html", title=TITLE, rows=rows, now=now, add=ADD_PATH)

    def switch(enabled: bool) -> Callable[[Request], Response]:
        def set_enabled(request: Request) -> Response:
            name = request.path_params["name"]
            found = ctx.store.get_source(name)
            if found is None:
                return _missing(request, name)
            if found.enabled != enabled:
                change_source(ctx.store, found, {"enabled": enabled})
            text = (
                f"Source {name} enabled: it is polled every "
                f"{format_duration(found.polling_interval)} and its observables are enforced."
                if enabled
                else f"Source {name} disabled: it is not polled and its observables are not "
                "enforced until it is enabled again."
            )
            return flash(request, RedirectResponse(PATH, 303, headers=NO_STORE), text)

        set_enabled.__name__ = "enable" if enabled else "disable"
        return set_enabled

    def confirm_delete(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ctx.store.source_names():  # no decrypting: any source can be deleted
            return _missing(request, name)
        held = sum(ctx.store.count_observables(source=name, live_only=False).values())
        return render(
            request, "source_delete.html", title=f"Delete source {name}", name=name, held=held
        )

    def delete(request: Request) -> Response:
        name = request.path_params["name"]
        if not ctx.store.delete_source(name):
            return _missing(request, name)
        text = f"Deleted source {name} with its observables (its threat-feed log lines stay)."
        return flash(request, RedirectResponse(PATH, 303, headers=NO_STORE), text)

    return [
        page_route(PATH, sources_page),
        page_route("/sources/{name}/enable", switch(True), methods=("POST",)),
        page_route("/sources/{name}/disable", switch(False), methods=("POST",)),
        page_route("/sources/{name}/delete", confirm_delete),
        page_route("/sources/{name}/delete", delete, methods=("POST",)),
    ]


PAGE: Final = Page(NavItem("Sources", PATH), routes)
