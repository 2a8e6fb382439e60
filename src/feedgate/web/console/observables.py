"""The Observables page (``/observables``): the observables held, searched and filtered by kind
and source, paged by key over millions of rows, each linked to its own page; the view
exported as CSV, JSON lines or a STIX 2.1 bundle, streamed.

One rule, one place: a page is :func:`feedgate.web.api.browse_observables` of the request's
query (what ``GET /api/v1/observables`` answers for the same query), each row
:func:`~feedgate.web.api.observable_json`; an observable's page is
:func:`~feedgate.web.api.observable_detail` (``GET /api/v1/observables/{id}``: its context and
the messages it matched, from the match log). Paging is by key: "Next page" asks for the rows
``after`` the last row's id, so no page costs a ``count(*)`` or skips rows with ``OFFSET``.
An export reads the filters with :func:`~feedgate.web.api.observable_filters` and streams the
store's ``export_rows`` (one read transaction, flat memory) through the CLI's own writers
(:func:`feedgate.feeds.export.row_writer`) or :mod:`feedgate.stix.bundle21`.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from feedgate.feeds.export import row_writer
from feedgate.feeds.store import ExportRow, FeedStore
from feedgate.observables import Kind
from feedgate.stix.bundle21 import Indicator, bundle_chunks
from feedgate.web.api import (
    MAX_OBSERVABLE_MATCHES,
    MAX_OBSERVABLES,
    ParameterError,
    browse_observables,
    count_parameter,
    observable_detail,
    observable_filters,
    observable_json,
)

from .auth import page_route
from .context import ConsoleContext, NavItem, Page
from .render import NO_STORE, render

__all__ = ["EXPORTS", "PAGE", "PAGE_SIZE", "PATH", "routes"]

PATH: Final = "/observables"
TITLE: Final = "Observables"
#: Rows a page shows.
PAGE_SIZE: Final = 50
#: Export format -> (file suffix, media type).
EXPORTS: Final[dict[str, tuple[str, str]]] = {
    "csv": ("csv", "text/csv; charset=utf-8"),
    "jsonl": ("jsonl", "application/x-ndjson; charset=utf-8"),
    "stix": ("stix.json", "application/stix+json;version=2.1"),
}
#: Characters an export gathers before sending them.
_FLUSH: Final = 64 * 1024
#: The query parameters a view is made of (kept by paging and exports).
_FILTERS: Final = ("search", "kind", "source", "all")


def _moment(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _title(context: dict[str, Any]) -> str:
    """The pulse's (package's) title an admin knows an observable by."""
    for key in ("package_title", "indicator_title", "title"):
        found = context.get(key)
        if isinstance(found, str) and found.strip():
            return found
    return ""


def _row(shown: dict[str, Any]) -> dict[str, Any]:
    return {
        **shown,
        "title": _title(shown["context"]),
        "first_seen": _moment(shown["first_seen"]),
        "last_seen": _moment(shown["last_seen"]),
        "valid_until": _moment(shown["valid_until"]),
        "link": f"{PATH}/{shown['id']}",
    }


def _view(request: Request) -> dict[str, str]:
    """The view's filters as given (for the form, the paging and the export links)."""
    q = request.query_params
    return {name: q[name] for name in _FILTERS if q.get(name)}


def _stream(store: FeedStore, fmt: str, filters: dict[str, Any]) -> Iterator[str]:
    """The export of ``filters`` in ``fmt``, a piece at a time (the store's read ends when
    the iterator is exhausted or closed)."""
    rows = store.export_rows(**filters)
    try:
        if fmt == "stix":
            yield from _joined(bundle_chunks(_indicators(rows)))
            return
        out = io.StringIO()
        write = row_writer(fmt, out)
        for row in rows:
            write(row)
            if out.tell() >= _FLUSH:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()
    finally:
        rows.close()


def _joined(pieces: Iterator[str]) -> Iterator[str]:
    """``pieces`` gathered into sends of about :data:`_FLUSH` characters."""
    gathered: list[str] = []
    size = 0
    for piece in pieces:
        gathered.append(piece)
        size += len(piece)
        if size >= _FLUSH:
            yield "".join(gathered)
            gathered, size = [], 0
    yield "".join(gathered)


def _indicators(rows: Iterator[ExportRow]) -> Iterator[Indicator]:
    """Each row as an :class:`Indicator`, its context merged; a shared layer (the same text
    for the many indicators of a pulse) is decoded once while its rows come."""
    layer_text: str | None = None
    layer: dict[str, Any] = {}
    for row in rows:
        context = json.loads(row.own_context)
        if row.shared_context is not None:
            if row.shared_context is not layer_text:
                layer_text, layer = row.shared_context, json.loads(row.shared_context)
            context = {**layer, **context}
        yield Indicator(
            row.source, row.kind, row.value, row.first_seen, row.last_seen, row.valid_until, context
        )


def _context_rows(context: dict[str, Any]) -> list[tuple[str, str]]:
    """Every key of a context with its value as text (JSON for what is not a string)."""
    return [
        (str(key), value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
        for key, value in context.items()
    ]


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    def observables_page(request: Request) -> Response:
        view = _view(request)
        errors: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        limit = PAGE_SIZE
        try:
            limit = count_parameter(request, "limit", PAGE_SIZE, maximum=MAX_OBSERVABLES)
            rows = [
                _row(observable_json(r))
                for r in browse_observables(ctx.store, request, default_limit=PAGE_SIZE)
            ]
        except ParameterError as exc:
            errors[exc.field] = exc.message
        paging = {**view, **({"limit": str(limit)} if limit != PAGE_SIZE else {})}
        after = request.query_params.get("after")
        # A full page may have a next one (keyset: the rows after this page's last one).
        next_link = (
            f"{PATH}?{urlencode({**paging, 'after': rows[-1]['id']})}"
            if rows and len(rows) >= limit
            else None
        )
        return render(
            request,
            "observables.html",
            title=TITLE,
            rows=rows,
            view=view,
            errors=errors,
            kinds=[str(k) for k in Kind],
            sources=ctx.store.source_names(),
            first_link=f"{PATH}?{urlencode(paging)}" if after else None,
            next_link=next_link,
            exports={fmt: f"{PATH}/export/{fmt}?{urlencode(view)}" for fmt in EXPORTS},
        )

    def one(request: Request) -> Response:
        # A plain segment, not {id:int}: a path that is no id is this page's 404, behind the
        # login like every other, not the router's.
        found = observable_detail(ctx.store, ctx.policy, str(request.path_params["id"]))
        if found is None:
            return render(
                request,
                "error.html",
                404,
                title="No such observable",
                message="There is no observable of that id (its source may have been deleted).",
                back=PATH,
            )
        matches = [{**m, "at": _moment(m["at"])} for m in found.pop("matches")]
        return render(
            request,
            "observable.html",
            title=f"{found['kind']} {found['value']}",
            o=_row(found),
            context_rows=_context_rows(found["context"]),
            matches=matches,
            most=MAX_OBSERVABLE_MATCHES,
        )

    def export(request: Request) -> Response:
        fmt = request.path_params["fmt"]
        if fmt not in EXPORTS:
            return render(
                request,
                "error.html",
                404,
                title="No such export",
                message=f"Exports are {', '.join(EXPORTS)}.",
                back=PATH,
            )
        try:
            filters = observable_filters(request)
        except ParameterError as exc:
            return render(
                request, "error.html", 400, title="Cannot export", message=str(exc), back=PATH
            )
        suffix, media = EXPORTS[fmt]
        headers = {
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="observables.{suffix}"',
        }
        return StreamingResponse(
            _stream(ctx.store, fmt, filters), media_type=media, headers=headers
        )

    return [
        page_route(PATH, observables_page),
        page_route(PATH + "/export/{fmt}", export),
        page_route(PATH + "/{id}", one),
    ]


PAGE: Final = Page(NavItem("Observables", PATH), routes)
