"""Poll Now (``POST /sources/{name}/poll``): poll a source at once, with the code ``feedgate
poll`` runs, and watch it live.

The poll is the scheduler's Poll Now (:meth:`feedgate.feeds.scheduler.Scheduler.poll_now`:
the source's lease, renewed while it polls, around :func:`feedgate.feeds.poller.poll_source`),
as ``feedgate poll`` and ``POST /api/v1/sources/{name}/poll`` run it; when another node holds
the lease nothing is polled and the page says who does (the API's 409). It runs in a thread
of its own, so the POST answers at once with a redirect to the poll's page
(``GET /sources/{name}/poll``), whose script (``poll_now.js``) asks
``GET /sources/{name}/poll/status`` every half second for the figures the poller reports
(:class:`~feedgate.feeds.poller.PollProgress`: segment, blocks, observables read) and the
threat-feed log lines written since the poll began, ending with the log's own summary line
("... N observables read ...").
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from feedgate.feeds.log import format_entry
from feedgate.feeds.poller import PollProgress, PollResult, poll_source
from feedgate.feeds.scheduler import LeaseHeld, Scheduler
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore

from .auth import page_route
from .context import ConsoleContext, Page
from .render import NO_STORE, render
from .sources import PATH as SOURCES_PATH
from .sources import POLL_PATH

__all__ = ["PAGE", "PollRun", "PollRuns", "routes"]

STATUS_PATH: Final = POLL_PATH + "/status"
_log = logging.getLogger("feedgate.web.console")


@dataclass
class PollRun:
    """One Poll Now of one source, as its page shows it; updated from the poll's thread."""

    source: str
    after_id: int
    lines: list[str] = field(default_factory=list)
    progress: PollProgress | None = None
    result: PollResult | None = None
    refused: str | None = None
    failed: str | None = None
    done: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def read_lines(self, store: FeedStore) -> None:
        """Take the source's log lines written since the last call (the poller calls it
        after each line it writes)."""
        with self.lock:
            entries = store.log_entries(self.source, after_id=self.after_id)
            for entry in entries:
                self.lines.append(format_entry(entry))
                self.after_id = entry.id

    def update(self, progress: PollProgress) -> None:
        with self.lock:
            self.progress = progress

    def snapshot(self, start: int = 0) -> dict[str, Any]:
        """What the status endpoint answers: the figures and the lines from ``start`` on."""
        with self.lock:
            shown = self.progress
            result = self.result
            return {
                "source": self.source,
                "done": self.done,
                "ok": None if result is None else result.ok,
                "refused": self.refused,
                "error": self.failed or (result.error if result is not None else None),
                "segment": shown.segment if shown else (result.segments if result else 0),
                "segments": shown.segments if shown else (result.segments if result else 0),
                "blocks": result.blocks if result else (shown.blocks if shown else 0),
                "read": result.read if result else (shown.read if shown else 0),
                "new": result.new if result else None,
                "lines": self.lines[start:],
                "next": len(self.lines),
                "last": self.lines[-1] if self.done and self.lines else None,
            }


class PollRuns:
    """This console's Poll Nows, the latest per source (one at a time per source)."""

    def __init__(self, ctx: ConsoleContext) -> None:
        self.ctx = ctx
        self._runs: dict[str, PollRun] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> PollRun | None:
        with self._lock:
            return self._runs.get(name)

    def start(self, source: Source) -> PollRun:
        """Start polling ``source``; returns once the lease is taken and the poll runs (or
        once it was refused: :attr:`PollRun.refused` says by whom)."""
        store = self.ctx.store
        with self._lock:
            running = self._runs.get(source.name)
            if running is not None and not running.done:
                return running  # this console polls it already: that poll is the one to watch
            run = PollRun(source.name, after_id=store.last_log_id())
            self._runs[source.name] = run
        begun = threading.Event()

        def poll(*args: Any, **options: Any) -> PollResult:
            begun.set()  # called with the lease held
            return poll_source(
                *args, written=lambda: run.read_lines(store), progress=run.update, **options
            )

        def work() -> None:
            scheduler = Scheduler(store, self.ctx.feed_log, lease=self.ctx.lease, poll=poll)
            try:
                result = scheduler.poll_now(source)
                with run.lock:
                    run.result = result
            except LeaseHeld as exc:
                with run.lock:
                    run.refused = str(exc)
            except Exception as exc:  # a database failure: said on the page, logged in full
                _log.exception("Poll Now of source %s failed", source.name)
                with run.lock:
                    run.failed = " ".join(str(exc).split()) or type(exc).__name__
            finally:
                run.read_lines(store)
                with run.lock:
                    run.done = True
                begun.set()

        threading.Thread(target=work, name=f"poll now {source.name}", daemon=True).start()
        begun.wait()
        return run


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    runs = PollRuns(ctx)

    def missing(request: Request, name: str) -> Response:
        return render(
            request,
            "error.html",
            404,
            title="No such source",
            message=f"There is no source named {name!r} (it may have been deleted meanwhile).",
            back=SOURCES_PATH,
        )

    def poll_now(request: Request) -> Response:
        name = request.path_params["name"]
        found = ctx.store.get_source(name)
        if found is None:
            return missing(request, name)
        run = runs.start(found)
        if run.refused is not None:
            return render(
                request,
                "error.html",
                409,
                title=f"Source {name} is being polled",
                message=f"Not polled: {run.refused}.",
                back=SOURCES_PATH,
            )
        return RedirectResponse(request.url.path, 303, headers=NO_STORE)

    def poll_page(request: Request) -> Response:
        name = request.path_params["name"]
        if ctx.store.get_source(name) is None:
            return missing(request, name)
        run = runs.get(name)
        return render(
            request,
            "poll.html",
            title=f"Poll Now: {name}",
            name=name,
            run=run.snapshot() if run is not None else None,
            back=SOURCES_PATH,
        )

    def status(request: Request) -> Response:
        run = runs.get(request.path_params["name"])
        if run is None:
            return JSONResponse({"detail": "this source was not polled from this console"}, 404)
        raw = request.query_params.get("from", "0")
        start = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 0
        return JSONResponse(run.snapshot(start), headers=NO_STORE)

    return [
        page_route(POLL_PATH, poll_now, methods=("POST",)),
        page_route(POLL_PATH, poll_page),
        page_route(STATUS_PATH, status),
    ]


PAGE: Final = Page(None, routes)
