"""The threat-feed log (``/log``): newest first, filtered by source and level, with a live
tail (server-sent events from ``/log/stream``).

The rows come from :meth:`feedgate.feeds.store.FeedStore.log_entries`, the one query of
``feedgate log`` and ``GET /api/v1/log``, each shown as :func:`feedgate.feeds.log.format_entry`
prints it. The tail is an ``async`` handler: it holds no worker thread while it waits, asks the
store (in a thread) for rows after the last one sent every :data:`TAIL_EVERY` seconds, and
sends each as an event whose id is the row's, so a reconnecting browser (``Last-Event-ID``)
misses none.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from feedgate.feeds.log import format_entry
from feedgate.feeds.store import LogEntry
from feedgate.web.api import LOG_LEVELS

from .auth import page_route
from .context import ConsoleContext, NavItem, Page
from .render import NO_STORE, render

__all__ = ["PAGE", "PATH", "ROWS", "STREAM_PATH", "TAIL_EVERY", "routes"]

PATH: Final = "/log"
STREAM_PATH: Final = "/log/stream"
TITLE: Final = "Threat-feed log"
#: Rows the page shows (the newest; older ones: ``feedgate log`` or the API's paging).
ROWS: Final = 500
#: Seconds between the live tail's looks at the log, and between its keep-alive comments.
TAIL_EVERY: Final = 1.0
KEEPALIVE: Final = 15.0


def _row(entry: LogEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(timespec="seconds"),
        "level": entry.level,
        "source": entry.source or "",
        "message": entry.message,
        "line": format_entry(entry),
    }


def _filters(request: Request) -> tuple[str | None, str | None]:
    q = request.query_params
    source = q.get("source") or None
    level = q.get("level") or None
    return source, level if level in LOG_LEVELS else None


def _whole(text: str | None) -> int:
    return int(text) if text and text.isascii() and text.isdigit() and len(text) < 19 else 0


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    def log_page(request: Request) -> Response:
        source, level = _filters(request)
        entries = ctx.store.log_entries(source, limit=ROWS, newest_first=True, level=level)
        newest = entries[0].id if entries else ctx.store.last_log_id()
        return render(
            request,
            "log.html",
            title=TITLE,
            rows=[_row(e) for e in entries],
            sources=ctx.store.source_names(),
            levels=LOG_LEVELS,
            source=source or "",
            level=level or "",
            newest=newest,
            limit=ROWS,
        )

    async def stream(request: Request) -> Response:
        source, level = _filters(request)
        after = _whole(request.headers.get("last-event-id")) or _whole(
            request.query_params.get("after")
        )

        async def events() -> AsyncIterator[str]:
            last = after
            quiet = 0.0
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                entries = await run_in_threadpool(
                    ctx.store.log_entries, source, last, 1000, level=level
                )
                for entry in entries:
                    last = entry.id
                    yield f"id: {entry.id}\ndata: {json.dumps(_row(entry))}\n\n"
                quiet = 0.0 if entries else quiet + TAIL_EVERY
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield ": still here\n\n"
                await asyncio.sleep(TAIL_EVERY)

        headers = {**NO_STORE, "X-Accel-Buffering": "no"}
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return [page_route(PATH, log_page), page_route(STREAM_PATH, stream)]


PAGE: Final = Page(NavItem("Log", PATH), routes)
