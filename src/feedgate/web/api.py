"""The feed manager's JSON REST API: sources, Poll Now, observables, the threat-feed log.

Thin over :mod:`feedgate.feeds` (design.md: the web layer holds no logic of its own): it turns
JSON into a validated :class:`~feedgate.feeds.sources.Source` and results into JSON. Every
request needs the API token (``Authorization: Bearer <token>``); secrets are accepted when a
source is written and never returned. ``GET /api/v1/openapi.json`` describes it all.
"""

from __future__ import annotations

import dataclasses
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedgate.feeds.log import ThreatFeedLog, format_entry
from feedgate.feeds.poller import PollResult, poll_source
from feedgate.feeds.scheduler import DEFAULT_LEASE, LeaseHeld, Scheduler
from feedgate.feeds.sources import (
    SECRET_FIELDS,
    Source,
    SourceError,
    format_duration,
    parse_duration,
    validate,
)
from feedgate.feeds.store import FeedStore, FeedStoreError

_DURATIONS: Final = ("polling_interval", "age", "poll_segment")
_FIELDS: Final = {f.name for f in dataclasses.fields(Source)}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def source_json(source: Source, store: FeedStore) -> dict[str, Any]:
    """A source as JSON: durations as text, secrets only as "is set", its last poll."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(Source):
        value = getattr(source, field.name)
        if field.name in SECRET_FIELDS:
            out[f"{field.name}_set"] = value is not None
        elif field.name in _DURATIONS:
            out[field.name] = format_duration(value)
        elif field.name == "enforce":
            out[field.name] = sorted(value)
        else:
            out[field.name] = value
    status = store.status(source.name)
    out["status"] = {
        k: _iso(v) if isinstance(v, datetime) else v for k, v in dataclasses.asdict(status).items()
    }
    return out


def source_from_json(data: Any, base: Source | None = None) -> Source:
    """A validated source from a JSON object (``base``: the source an update starts from)."""
    if not isinstance(data, dict):
        raise SourceError("body", "expected a JSON object")
    unknown = set(data) - _FIELDS
    if unknown:
        raise SourceError(sorted(unknown)[0], "unknown field")
    values: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    for key, value in data.items():
        if key in _DURATIONS:
            if not isinstance(value, str):
                raise SourceError(key, 'a duration such as "60m", "30d"')
            values[key] = parse_duration(value, key)
        elif key == "enforce":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SourceError(key, "a list of observable kinds")
            values[key] = frozenset(value)
        else:
            values[key] = value
    try:
        source = Source(**values)
    except TypeError as exc:
        raise SourceError("body", f"missing or wrong fields: {exc}") from None
    return validate(source)


def poll_json(result: PollResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


def create_api(
    store: FeedStore,
    feed_log: ThreatFeedLog,
    token: str,
    *,
    poll: Callable[..., PollResult] = poll_source,
    lease: timedelta = DEFAULT_LEASE,
) -> Starlette:
    """The REST API over ``store``; requests must carry ``token``. Poll Now takes the source's
    lease (``lease`` long, renewed while it polls) as a node of its own; 409 when another node
    holds it."""

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)

    def guard(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def wrapped(request: Request) -> Response:
            if not authorised(request):
                return JSONResponse({"detail": "an API token is needed (Bearer)"}, 401)
            try:
                return handler(request)
            except SourceError as exc:
                return JSONResponse({"detail": exc.message, "field": exc.field}, 400)
            except FeedStoreError as exc:
                return JSONResponse({"detail": str(exc)}, 409)

        return wrapped

    def body(request: Request) -> Any:
        import json

        import anyio.from_thread

        raw = anyio.from_thread.run(request.body)
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise SourceError("body", "not valid JSON") from None

    def get_source(request: Request) -> Source | Response:
        source = store.get_source(request.path_params["name"])
        if source is None:
            return JSONResponse({"detail": "no such source"}, 404)
        return source

    def list_sources(request: Request) -> Response:
        return JSONResponse([source_json(s, store) for s in store.list_sources()])

    def create_source(request: Request) -> Response:
        source = source_from_json(body(request))
        store.add_source(source)
        return JSONResponse(source_json(source, store), 201)

    def one_source(request: Request) -> Response:
        found = get_source(request)
        if isinstance(found, Response):
            return found
        if request.method == "DELETE":
            store.delete_source(found.name)
            return Response(status_code=204)
        if request.method == "PATCH":
            data = body(request)
            if isinstance(data, dict) and data.get("name", found.name) != found.name:
                raise SourceError("name", "a source cannot be renamed")
            updated = source_from_json(data, found)
            store.update_source(updated)
            return JSONResponse(source_json(updated, store))
        return JSONResponse(source_json(found, store))

    def poll_now(request: Request) -> Response:
        found = get_source(request)
        if isinstance(found, Response):
            return found
        try:
            result = Scheduler(store, feed_log, lease=lease, poll=poll).poll_now(found)
        except LeaseHeld as exc:
            holder = exc.holder
            return JSONResponse(
                {
                    "detail": str(exc),
                    "node": holder.node if holder is not None else None,
                    "since": _iso(holder.since) if holder is not None else None,
                },
                409,
            )
        return JSONResponse(poll_json(result))

    def observables(request: Request) -> Response:
        q = request.query_params
        limit = min(int(q.get("limit", "100")), 10_000) if q.get("limit", "100").isdigit() else 100
        offset = int(q.get("offset", "0")) if q.get("offset", "0").isdigit() else 0
        rows = store.observables(
            source=q.get("source"),
            kind=q.get("kind"),
            search=q.get("search"),
            live_only=q.get("all") not in ("1", "true"),
            limit=limit,
            offset=offset,
        )
        return JSONResponse(
            [
                {
                    "source": r.source,
                    "kind": r.kind,
                    "value": r.value,
                    "type": r.original_type,
                    "first_seen": _iso(r.first_seen),
                    "last_seen": _iso(r.last_seen),
                    "valid_until": _iso(r.valid_until),
                    "expired": r.expired,
                    "context": r.context,
                }
                for r in rows
            ]
        )

    def log_rows(request: Request) -> Response:
        q = request.query_params
        after = int(q.get("after", "0")) if q.get("after", "0").isdigit() else 0
        entries = store.log_entries(q.get("source"), after_id=after, limit=1000)
        return JSONResponse(
            [
                {
                    "id": e.id,
                    "at": _iso(e.at),
                    "level": e.level,
                    "source": e.source,
                    "message": e.message,
                    "line": format_entry(e),
                }
                for e in entries
            ]
        )

    def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    return Starlette(
        routes=[
            Route("/api/v1/openapi.json", openapi, methods=["GET"]),
            Route("/api/v1/sources", guard(list_sources), methods=["GET"]),
            Route("/api/v1/sources", guard(create_source), methods=["POST"]),
            Route("/api/v1/sources/{name}", guard(one_source), methods=["GET", "PATCH", "DELETE"]),
            Route("/api/v1/sources/{name}/poll", guard(poll_now), methods=["POST"]),
            Route("/api/v1/observables", guard(observables), methods=["GET"]),
            Route("/api/v1/log", guard(log_rows), methods=["GET"]),
        ]
    )


def _op(summary: str, ok: str = "200", **more: str) -> dict[str, Any]:
    """An operation; ``more``: further responses, by status code (``_409="..."``)."""
    responses = {ok: {"description": "OK"}, "401": {"description": "no or wrong token"}}
    responses.update({code.lstrip("_"): {"description": text} for code, text in more.items()})
    return {"summary": summary, "security": [{"token": []}], "responses": responses}


#: The API's OpenAPI 3.0 description (what `schemathesis` or any client generator reads).
OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.0.3",
    "info": {"title": "feedgate feed manager", "version": "1"},
    "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
    "paths": {
        "/api/v1/sources": {
            "get": _op("List the sources with their last poll"),
            "post": _op("Add a source (JSON fields of the Source; durations as text)", "201"),
        },
        "/api/v1/sources/{name}": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": _op("One source"),
            "patch": _op("Change fields of a source"),
            "delete": _op("Delete a source and its observables", "204"),
        },
        "/api/v1/sources/{name}/poll": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "post": _op(
                "Poll Now: poll the source under its lease, due or not; the poll's result",
                _404="no such source",
                _409='another node is polling the source: {"detail", "node", "since"}; '
                "nothing was polled",
            ),
        },
        "/api/v1/observables": {"get": _op("Browse and search observables")},
        "/api/v1/log": {"get": _op("The threat-feed log")},
    },
}
