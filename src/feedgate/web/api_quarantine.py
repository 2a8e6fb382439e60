"""The REST API of the quarantine, thin over :class:`~feedgate.mail.quarantine.QuarantineStore`
(the methods ``feedgate quarantine`` calls, so both faces list, release and delete alike).

A row is what ``feedgate quarantine list --format jsonl`` prints
(:meth:`QuarantinedMessage.to_dict`). A release is recorded as released by ``api``; its body may
name the relay and the TLS towards it (``relay_tls``, the levels of ``--relay-tls``; default:
the TLS recorded with the message, the gateway's ``--relay-tls`` when it quarantined it, ``may``
for the milter's; given, it wins). Refusals: 404 for an id that is not there, 409 for a message
already released or being released by another node or admin right now, 400 for a relay that
is not ``HOST:PORT`` (or none known), an unknown TLS level or a recorded one that cannot be
used here (its CA file unreadable), 502 when the relay refused the message or could not be
reached (it stays held, the reason recorded and in ``detail``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedgate.feeds.sources import SourceError
from feedgate.mail.quarantine import (
    QuarantinedMessage,
    QuarantineError,
    QuarantineNotFound,
    QuarantineStore,
    ReleaseInProgress,
    ReleaseRefused,
)
from feedgate.mail.relay import TLS_LEVELS, RelayTlsError, relay_tls

from .api_policy import since_moment

__all__ = ["QUARANTINE_PATHS", "RELEASED_BY", "quarantine_routes", "release_message"]

#: Who a release through the API is recorded as.
RELEASED_BY: Final = "api"


def _refusal(exc: QuarantineError) -> Response:
    if isinstance(exc, QuarantineNotFound):
        status = 404
    elif isinstance(exc, ReleaseRefused):
        status = 502
    elif isinstance(exc, ReleaseInProgress) or "already released" in exc.message:
        status = 409
    else:
        status = 400
    return JSONResponse({"detail": exc.message}, status)


def release_message(
    quarantine: QuarantineStore, ident: str, by: str, data: Any = None
) -> QuarantinedMessage:
    """Release message ``ident`` as ``by`` with the options of a release's body (``None`` or
    ``{}``: the relay and TLS recorded with it; ``relay``, ``relay_tls``: given, they win):
    the one release of the REST API and the console. Raises
    :class:`~feedgate.feeds.sources.SourceError` for a bad body and the store's
    :class:`~feedgate.mail.quarantine.QuarantineError` for a refused release."""
    if data is None:
        data = {}
    if not isinstance(data, dict) or set(data) - {"relay", "relay_tls"}:
        raise SourceError("body", 'expected {} or {"relay": "HOST:PORT", "relay_tls": "may"}')
    relay = data.get("relay")
    if relay is not None and not isinstance(relay, str):
        raise SourceError("relay", "expected HOST:PORT as a string")
    level = data.get("relay_tls")
    if level is not None and not isinstance(level, str):
        raise SourceError("relay_tls", f"expected one of {', '.join(TLS_LEVELS)}")
    try:
        tls = None if level is None else relay_tls(level)  # None: the recorded TLS
    except RelayTlsError as exc:
        raise SourceError("relay_tls", str(exc)) from None
    return quarantine.release(ident, by=by, relay=relay, tls=tls)


def quarantine_routes(
    quarantine: QuarantineStore,
    guard: Callable[[Callable[[Request], Response]], Callable[[Request], Response]],
    body: Callable[[Request], Any],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    """The routes of ``/api/v1/quarantine``; ``guard`` is the API's token check and error
    mapping, ``body`` its bounded JSON reader, ``now`` the clock ``since`` counts back from."""

    def mapped(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            try:
                return handler(request)
            except QuarantineError as exc:
                return _refusal(exc)

        return guard(run)

    def root(request: Request) -> Response:
        q = request.query_params
        start = since_moment(q.get("since"), now())
        released = (q.get("all") or "").lower() in ("1", "true", "yes")
        found = quarantine.list(since=start, source=q.get("source") or None, released=released)
        return JSONResponse([m.to_dict() for m in found])

    def one(request: Request) -> Response:
        ident = request.path_params["id"]
        if request.method == "DELETE":
            quarantine.delete(ident)
            return Response(status_code=204)
        return JSONResponse(quarantine.get(ident).to_dict())

    def raw(request: Request) -> Response:
        return Response(quarantine.raw(request.path_params["id"]), media_type="message/rfc822")

    def release(request: Request) -> Response:
        released = release_message(
            quarantine, request.path_params["id"], RELEASED_BY, body(request)
        )
        return JSONResponse(released.to_dict())

    return [
        Route("/api/v1/quarantine", mapped(root), methods=["GET"]),
        Route("/api/v1/quarantine/{id}", mapped(one), methods=["GET", "DELETE"]),
        Route("/api/v1/quarantine/{id}/raw", mapped(raw), methods=["GET"]),
        Route("/api/v1/quarantine/{id}/release", mapped(release), methods=["POST"]),
    ]


def _answers(ok: str, description: str, **errors: str) -> dict[str, Any]:
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    out: dict[str, Any] = {ok: {"description": description}, "401": {"description": "no token"}}
    out.update(
        {code.lstrip("_"): {"description": t, "content": error} for code, t in errors.items()}
    )
    return out


_ID: Final = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_SEC: Final[list[dict[str, list[str]]]] = [{"token": []}]

#: The OpenAPI ``paths`` of the quarantine (merged into :data:`feedgate.web.api.OPENAPI`).
QUARANTINE_PATHS: Final[dict[str, Any]] = {
    "/api/v1/quarantine": {
        "get": {
            "summary": "Quarantined messages, newest first (held ones; all=true: released too)",
            "security": _SEC,
            "parameters": [
                {
                    "name": n,
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": d,
                }
                for n, d in (
                    ("since", "how far back: 7d (default), 12h, all"),
                    ("source", "only messages this source's observables matched"),
                    ("all", "true: released messages too"),
                )
            ],
            "responses": _answers("200", "the messages (no bytes)", _400="a bad since"),
        }
    },
    "/api/v1/quarantine/{id}": {
        "parameters": [_ID],
        "get": {
            "summary": "One quarantined message",
            "security": _SEC,
            "responses": _answers("200", "the message (no bytes)", _404="no such message"),
        },
        "delete": {
            "summary": "Delete a quarantined message for good",
            "security": _SEC,
            "responses": _answers("204", "deleted", _404="no such message"),
        },
    },
    "/api/v1/quarantine/{id}/raw": {
        "parameters": [_ID],
        "get": {
            "summary": "The message's bytes, exactly as received (message/rfc822)",
            "security": _SEC,
            "responses": _answers("200", "the bytes", _404="no such message"),
        },
    },
    "/api/v1/quarantine/{id}/release": {
        "parameters": [_ID],
        "post": {
            "summary": "Send the message, byte for byte, to its envelope's recipients through its"
            " relay (or body.relay) with its recorded relay TLS (or body.relay_tls); recorded as"
            " released by api",
            "security": _SEC,
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "relay": {"type": "string"},
                                "relay_tls": {
                                    "type": "string",
                                    "enum": list(TLS_LEVELS),
                                    "description": "default: the TLS recorded with the"
                                    " message (the gateway's --relay-tls; may for the"
                                    " milter's)",
                                },
                            },
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": _answers(
                "200",
                "released",
                _400="a bad relay (or none known), or an unknown relay_tls",
                _404="no such message",
                _409="already released, or being released by another node or admin now",
                _502="the relay refused it: it stays held, the answer recorded",
            ),
        },
    },
}
