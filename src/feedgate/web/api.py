"""The feed manager's JSON REST API: sources, Poll Now, observables, the threat-feed log, and
the mail policy's rules, exceptions and hits (:mod:`.api_policy`).

Thin over :mod:`feedgate.feeds` (design.md: the web layer holds no logic of its own): it turns
JSON into a validated :class:`~feedgate.feeds.sources.Source` and results into JSON. Every
request needs the API token (``Authorization: Bearer <token>``) but three that a newcomer or a
health check makes first: ``GET /api/v1/`` (what exists and which header to send),
``GET /healthz`` and ``GET /api/v1/openapi.json``, which describes it all. Secrets are accepted
when a source is written and never returned.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedgate.asgi_body import read_limited_from_thread
from feedgate.feeds.log import ThreatFeedLog, format_entry
from feedgate.feeds.poller import PollResult, poll_source
from feedgate.feeds.scheduler import DEFAULT_LEASE, LeaseHeld, Scheduler
from feedgate.feeds.sources import (
    MAX_DURATION,
    MAX_NAME_LENGTH,
    MAX_RETRIES,
    MAX_SEGMENTS,
    MAX_TIMEOUT,
    MIN_POLLING_INTERVAL,
    MIN_TIMEOUT,
    MODES,
    NAME_PATTERN,
    SECRET_FIELDS,
    SECRET_SET,
    TAXII_VERSIONS,
    Source,
    SourceError,
    format_duration,
    make_source,
    shown_username,
)
from feedgate.feeds.store import (
    FeedStore,
    FeedStoreError,
    SourceStatus,
    StoredObservable,
    kind_filter,
)
from feedgate.mail.exceptions import MAX_EXCEPTION_LENGTH, MAX_NOTE_LENGTH
from feedgate.mail.model import PARTS
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.quarantine import QuarantineStore
from feedgate.mail.rules import (
    DEFAULT_RULE,
    DEFAULT_SUBJECT_PREFIX,
    KINDS,
    MAX_RULE_NAME_LENGTH,
    RULE_ACTIONS,
    PolicyError,
)
from feedgate.observables import ENFORCEABLE_KINDS

from .api_policy import DEFAULT_SINCE, DEFAULT_TOP, MAX_TOP, policy_error_response, policy_routes
from .api_quarantine import QUARANTINE_PATHS, quarantine_routes
from .api_retro import RETRO_ROW, retro_routes

_DURATIONS: Final = ("polling_interval", "age", "poll_segment", "timeout")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def source_json(source: Source, store: FeedStore) -> dict[str, Any]:
    """A source as JSON: durations as text, secrets only as "is set" (a secret user name as
    ``(secret, set)``, as the CLI shows it), its last poll."""
    return _source_json(source, store.status(source.name))


def _source_json(source: Source, status: SourceStatus) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in dataclasses.fields(Source):
        value = getattr(source, field.name)
        if field.name == "username":
            out[field.name] = shown_username(source)
        elif field.name in SECRET_FIELDS:
            out[f"{field.name}_set"] = value is not None or field.name in source.unreadable_secrets
        elif field.name == "unreadable_secrets":
            out[field.name] = sorted(value)
        elif field.name in _DURATIONS:
            out[field.name] = format_duration(value)
        elif field.name == "enforce":
            out[field.name] = sorted(value)
        else:
            out[field.name] = value
    out["status"] = {
        k: _iso(v) if isinstance(v, datetime) else v for k, v in dataclasses.asdict(status).items()
    }
    return out


def source_from_json(data: Any, base: Source | None = None) -> Source:
    """A validated source from a JSON object (``base``: the source an update starts from), by
    :func:`~feedgate.feeds.sources.make_source`, as the CLI makes one."""
    if not isinstance(data, dict):
        raise SourceError("body", "expected a JSON object")
    return make_source(data, base)


def change_source(store: FeedStore, found: Source, data: Any) -> Source:
    """``found`` changed by ``data`` (as ``PATCH /api/v1/sources/{name}`` takes it), validated
    and stored; :class:`SourceError` for a field that cannot be, a rename included. The
    console's Enable/Disable and Edit write through it too."""
    if isinstance(data, dict) and data.get("name", found.name) != found.name:
        raise SourceError("name", "a source cannot be renamed")
    updated = source_from_json(data, found)
    store.update_source(updated)
    return updated


def poll_json(result: PollResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


#: The largest request body taken: a source is a few hundred bytes of JSON.
MAX_BODY_BYTES: Final = 1024**2


class BodyTooLarge(Exception):
    """A request body over :data:`MAX_BODY_BYTES`: 413, nothing read past the limit."""


class ParameterError(ValueError):
    """A query parameter that cannot be used: 400, naming it."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.field = name
        self.message = message


#: Offsets and ids are 64-bit integers in both databases.
_MAX_INT64: Final = 2**63 - 1
#: The levels of the threat-feed log (``GET /log?level=`` takes one).
LOG_LEVELS: Final = ("info", "warning", "error")
#: The most log rows one ``GET /log`` answers (page on with ``after``, or ``before``).
MAX_LOG_ROWS: Final = 1000


def count_parameter(request: Request, name: str, default: int, maximum: int = _MAX_INT64) -> int:
    """A whole number from the query string (``default`` when absent), at most ``maximum``."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > _MAX_INT64:
        raise ParameterError(name, f"{raw[:40]!r} is not a whole number from 0 to {_MAX_INT64}")
    return min(int(raw), maximum)


#: The most observables one ``GET /observables`` answers.
MAX_OBSERVABLES: Final = 10_000


def observable_filters(request: Request) -> dict[str, Any]:
    """The filters of a browse from the query string (``source``, ``kind``, ``search``,
    ``all``), as :meth:`FeedStore.observables` and ``export_rows`` take them; ParameterError
    for a kind that is none (the CLI's rule and message, ``feedgate observables``)."""
    q = request.query_params
    kind = q.get("kind") or None  # empty: any kind, as the other parameters
    if kind is not None:
        try:
            kind = kind_filter(kind)
        except ValueError as exc:
            raise ParameterError("kind", str(exc)) from None
    return {
        "source": q.get("source") or None,
        "kind": kind,
        "search": q.get("search") or None,
        "live_only": q.get("all") not in ("1", "true"),
    }


def browse_observables(
    store: FeedStore, request: Request, default_limit: int = 100
) -> list[StoredObservable]:
    """The page of observables ``GET /api/v1/observables`` answers for ``request``'s query
    (filters of :func:`observable_filters`; ``limit``, ``offset``, and ``after``: the keyset
    page after the row of that id), for the API and the console alike."""
    limit = count_parameter(request, "limit", default_limit, maximum=MAX_OBSERVABLES)
    offset = count_parameter(request, "offset", 0)
    after = request.query_params.get("after")
    return store.observables(
        **observable_filters(request),
        limit=limit,
        offset=offset,
        after_id=None if after in (None, "") else count_parameter(request, "after", 0),
    )


def observable_json(r: StoredObservable) -> dict[str, Any]:
    """A stored observable as the API shows it."""
    return {
        "id": r.id,
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


#: The most messages an observable's page lists (newest first).
MAX_OBSERVABLE_MATCHES: Final = 50


def observable_detail(
    store: FeedStore, policy: PolicyStore, ident: str, matches: int = MAX_OBSERVABLE_MATCHES
) -> dict[str, Any] | None:
    """One observable as ``GET /api/v1/observables/{id}`` answers it (None: no such id, or
    ``ident`` is none): :func:`observable_json` and ``matches``, the messages it matched,
    newest first, from the match log (:meth:`PolicyStore.matches_of`)."""
    if not (ident.isascii() and ident.isdigit() and len(ident) <= 18):
        return None
    found = store.observable(int(ident))
    if found is None or found.id is None:
        return None
    logged = policy.matches_of(found.source, found.id, matches)
    return {**observable_json(found), "matches": [m.to_dict() for m in logged]}


#: What a client must send; said by a 401, the API root and the OpenAPI document.
AUTH_HEADER: Final = "Authorization"
AUTH_SCHEME: Final = "Bearer"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def refusal(header: str | None, token: str) -> Response | None:
    """The 401 for an ``Authorization`` header that does not carry ``token``, or None when it
    does. RFC 6750: every 401 sends a ``WWW-Authenticate: Bearer`` challenge, with
    ``error="invalid_token"`` when a token was given but is wrong; no token and a wrong one are
    told apart, so an admin knows whether to add the header or fix its value. The comparison
    is of digests in constant time: it gives away neither the token's characters nor its
    length."""
    scheme, _, given = (header or "").strip().partition(" ")
    challenge = f'{AUTH_SCHEME} realm="feedgate"'
    usage = f"send {AUTH_HEADER}: {AUTH_SCHEME} <token>"
    if scheme.lower() != AUTH_SCHEME.lower():
        detail = f"an API token is needed: {usage}"
        if scheme:
            shown = scheme if scheme.isascii() and scheme.isprintable() else ascii(scheme)
            detail = f"the API takes a {AUTH_SCHEME} token, not {shown[:20]}: {usage}"
        return JSONResponse({"detail": detail}, 401, headers={"WWW-Authenticate": challenge})
    if hmac.compare_digest(_digest(given.strip()), _digest(token)):
        return None
    return JSONResponse(
        {
            "detail": "the API token is wrong: send the server's FEEDGATE_API_TOKEN, or the one"
            " it keeps in its data directory's api-token file"
        },
        401,
        headers={
            "WWW-Authenticate": f'{challenge}, error="invalid_token", '
            'error_description="the token is wrong"'
        },
    )


#: The API root's answer: what exists, how to authenticate, where the full description is.
INDEX: Final[dict[str, Any]] = {
    "name": "feedgate feed manager",
    "version": "1",
    "auth": {
        "header": AUTH_HEADER,
        "scheme": AUTH_SCHEME,
        "value": f"{AUTH_SCHEME} <token>",
        "detail": "every link below needs it; the token is FEEDGATE_API_TOKEN, or the one "
        "feedgate serve made on its first start and keeps in its data directory's api-token",
    },
    "openapi": "/api/v1/openapi.json",
    "health": "/healthz",
    "links": {
        "sources": "/api/v1/sources",
        "observables": "/api/v1/observables",
        "log": "/api/v1/log",
        "rules": "/api/v1/rules",
        "exceptions": "/api/v1/exceptions",
        "hits": "/api/v1/hits",
        "retro": "/api/v1/retro",
        "quarantine": "/api/v1/quarantine",
    },
}


def create_api(
    store: FeedStore,
    feed_log: ThreatFeedLog,
    token: str,
    *,
    poll: Callable[..., PollResult] = poll_source,
    lease: timedelta = DEFAULT_LEASE,
    policy: PolicyStore | None = None,
    now: Callable[[], datetime] | None = None,
) -> Starlette:
    """The REST API over ``store``; requests must carry ``token``. Poll Now takes the source's
    lease (``lease`` long, renewed while it polls) as a node of its own; 409 when another node
    holds it. The mail policy is ``policy`` (default: the one in ``store``'s database, its
    rules naming ``store``'s sources); ``now`` is the clock the hits window counts back from."""
    if policy is None:
        policy = PolicyStore(store.engine, store.source_names)

    def guard(handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def wrapped(request: Request) -> Response:
            refused = refusal(request.headers.get("authorization"), token)
            if refused is not None:
                return refused
            try:
                return handler(request)
            except (SourceError, ParameterError) as exc:
                return JSONResponse({"detail": exc.message, "field": exc.field}, 400)
            except PolicyError as exc:
                return policy_error_response(exc)
            except BodyTooLarge:
                detail = f"the request body is over {MAX_BODY_BYTES} bytes"
                return JSONResponse({"detail": detail, "field": "body"}, 413)
            except FeedStoreError as exc:
                return JSONResponse({"detail": str(exc)}, 409)

        return wrapped

    def body(request: Request) -> Any:
        import json

        raw = read_limited_from_thread(request, MAX_BODY_BYTES)
        if raw is None:
            raise BodyTooLarge
        try:
            return json.loads(raw or b"null")
        except (ValueError, RecursionError):  # RecursionError: nested too deep to read
            raise SourceError("body", "not valid JSON") from None

    def get_source(request: Request) -> Source | Response:
        source = store.get_source(request.path_params["name"])
        if source is None:
            return JSONResponse({"detail": "no such source"}, 404)
        return source

    def sources_root(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([source_json(s, store) for s in store.list_sources()])
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
            return JSONResponse(source_json(change_source(store, found, body(request)), store))
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
        return JSONResponse([observable_json(r) for r in browse_observables(store, request)])

    def one_observable(request: Request) -> Response:
        found = observable_detail(store, policy, str(request.path_params["id"]))
        if found is None:
            return JSONResponse({"detail": "no such observable"}, 404)
        return JSONResponse(found)

    def log_rows(request: Request) -> Response:
        q = request.query_params
        after = count_parameter(request, "after", 0)
        before = count_parameter(request, "before", _MAX_INT64)
        limit = count_parameter(request, "limit", MAX_LOG_ROWS, maximum=MAX_LOG_ROWS)
        order = q.get("order") or "asc"
        if order not in ("asc", "desc"):
            raise ParameterError("order", f"{order[:40]!r}: give asc (oldest first) or desc")
        level = q.get("level") or None
        if level is not None and level not in LOG_LEVELS:
            raise ParameterError("level", f"{level[:40]!r}: give info, warning or error")
        entries = store.log_entries(
            q.get("source"),
            after_id=after,
            before_id=before,
            limit=limit,
            newest_first=order == "desc",
            level=level,
        )
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

    def index(request: Request) -> Response:
        return JSONResponse(INDEX)

    def healthz(request: Request) -> Response:
        """200 while the database answers (a load balancer's or a cluster's check; no token)."""
        try:
            store.last_log_id()
        except Exception:  # whatever the database says, the check's answer is "not healthy"
            return JSONResponse(
                {"status": "unavailable", "detail": "the database does not answer"}, 503
            )
        return JSONResponse({"status": "ok"})

    async def not_found(request: Request, exc: Exception) -> Response:
        detail = "no such path: GET /api/v1/ lists what exists"
        return JSONResponse({"detail": detail}, 404)

    return Starlette(
        exception_handlers={404: not_found},
        routes=[
            Route("/api/v1/", index, methods=["GET"]),
            Route("/api/v1", index, methods=["GET"]),  # not a redirect: curl does not follow it
            Route("/healthz", healthz, methods=["GET"]),
            Route("/api/v1/openapi.json", openapi, methods=["GET"]),
            # One route per path: Starlette's 405 names only the methods of the route it matched
            Route("/api/v1/sources", guard(sources_root), methods=["GET", "POST"]),
            Route("/api/v1/sources/{name}", guard(one_source), methods=["GET", "PATCH", "DELETE"]),
            Route("/api/v1/sources/{name}/poll", guard(poll_now), methods=["POST"]),
            Route("/api/v1/observables", guard(observables), methods=["GET"]),
            Route("/api/v1/observables/{id}", guard(one_observable), methods=["GET"]),
            Route("/api/v1/log", guard(log_rows), methods=["GET"]),
            *policy_routes(policy, guard, body, **({"now": now} if now else {})),
            *quarantine_routes(QuarantineStore(store.engine), guard, body),
            *retro_routes(store.engine, guard, **({"now": now} if now else {})),
        ],
    )


_ERROR: Final = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    ok: str = "200",
    schema: dict[str, Any] | None = None,
    *,
    body: str | None = None,
    query: tuple[dict[str, Any], ...] = (),
    **more: str,
) -> dict[str, Any]:
    """An operation: its ``ok`` answer (``schema`` its body, none when ``None``), its JSON
    request ``body`` (a component schema's name), its ``query`` parameters; ``more``: further
    answers by status code (``_409="..."``), each with an :data:`_ERROR` body."""
    good = _json(schema) if schema is not None else {"description": "OK"}
    challenge = {"schema": _TEXT, "description": 'Bearer, with error="invalid_token" if wrong'}
    refused = _json(_ERROR, "no token, or a wrong one") | {
        "headers": {"WWW-Authenticate": challenge}
    }
    responses = {ok: good, "401": refused}
    responses.update({code.lstrip("_"): _json(_ERROR, text) for code, text in more.items()})
    op: dict[str, Any] = {"summary": summary, "security": [{"token": []}], "responses": responses}
    if body is not None:
        responses["413"] = _json(_ERROR, f"the request body is over {MAX_BODY_BYTES} bytes")
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if query:
        op["parameters"] = list(query)
    return op


def _created(op: dict[str, Any]) -> dict[str, Any]:
    """``op`` (adding a source) with links from its answer to the operations on the source."""
    name = {"name": "$response.body#/name"}
    op["responses"]["201"]["links"] = {
        what: {"operationId": what, "parameters": name}
        for what in ("getSource", "changeSource", "deleteSource", "pollSource")
    }
    return op


def _param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "nullable": True, **more}


_TEXT: Final = {"type": "string"}
_WHEN: Final = _nullable("string", format="date-time")
_COUNT: Final = {"type": "integer", "minimum": 0}
_INT64: Final = {"type": "integer", "minimum": 0, "maximum": _MAX_INT64}
_DURATION: Final = {
    "type": "string",
    "pattern": r"^\s*([0-9]\s*)+[wdhmsWDHMS](\s*([0-9]\s*)+[wdhmsWDHMS])*\s*$",
    "description": 'a number and a unit s, m, h, d or w, or a sum of them: "90s", "60m", "1h30m"',
}
_KINDS: Final = sorted(kind.value for kind in ENFORCEABLE_KINDS)
#: What a source is written with (POST, PATCH): the fields of the Source and their rules.
_SOURCE_FIELDS: Final[dict[str, Any]] = {
    "name": {"type": "string", "pattern": f"^{NAME_PATTERN}$", "maxLength": MAX_NAME_LENGTH},
    "hostname": {
        "type": "string",
        "minLength": 1,
        "description": "a host name or IP address, not a URL",
    },
    "collection": {"type": "string", "minLength": 1},
    "description": _TEXT,
    "enabled": {"type": "boolean"},
    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
    "use_https": {"type": "boolean"},
    "poll_path": {"type": "string", "pattern": "^/"},
    "discovery_path": _nullable("string"),
    "taxii_version": {"type": "string", "enum": list(TAXII_VERSIONS)},
    "username": _nullable(
        "string",
        description=f"OTX: the API key. Shown as {SECRET_SET!r} when username_secret; sent"
        " back so, it keeps the stored one",
    ),
    "username_secret": _nullable(
        "boolean",
        description="store the user name encrypted, never show it; always for OTX; null or"
        " absent: yes when the password is empty or a placeholder such as x",
    ),
    "password": _nullable("string", writeOnly=True, description="needs username"),
    "cert_file": _nullable("string"),
    "key_file": _nullable("string", description="needs cert_file"),
    "key_password": _nullable("string", writeOnly=True, description="needs cert_file"),
    "ca_cert": _nullable("string"),
    "verify_ssl": {"type": "boolean"},
    "proxy_url": _nullable("string", description='http(s)://host:port, or "noproxy"'),
    "polling_interval": {
        **_DURATION,
        "description": f"at least {format_duration(MIN_POLLING_INTERVAL)},"
        f" at most {format_duration(MAX_DURATION)}",
    },
    "age": {**_DURATION, "description": f"more than 0s, at most {format_duration(MAX_DURATION)}"},
    "poll_segment": {
        **_DURATION,
        "description": f"at most the age, and at least the age / {MAX_SEGMENTS}",
    },
    "max_retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES},
    "timeout": {
        **_DURATION,
        "description": "per request (connect, each read of the answer): at least"
        f" {format_duration(MIN_TIMEOUT)}, at most {format_duration(MAX_TIMEOUT)}",
    },
    "enforce": {"type": "array", "items": {"type": "string", "enum": _KINDS}},
    "fp_gate": {
        "type": "boolean",
        "description": "false-positive gate: never enforce what would block the world",
    },
    "mode": {
        "type": "string",
        "enum": list(MODES),
        "description": "enforce: the rules act on the source's matches; monitor: they are"
        " only logged as what would have been done",
    },
}
_SOURCE_OUT: Final[dict[str, Any]] = {
    **{k: v for k, v in _SOURCE_FIELDS.items() if k not in SECRET_FIELDS},
    "username_secret": {"type": "boolean"},
    **{f"{k}_set": {"type": "boolean"} for k in SECRET_FIELDS},
    "unreadable_secrets": {
        "type": "array",
        "items": {"type": "string", "enum": sorted({*SECRET_FIELDS, "username"})},
        "description": "secrets stored under another key: polls fail until they are given again",
    },
    "status": {
        "type": "object",
        "properties": {
            "last_start": _WHEN,
            "last_end": _WHEN,
            "result": _nullable("string", enum=["ok", "error", "running", None]),
            "error": _nullable("string"),
            **{k: _nullable("integer") for k in ("blocks", "read", "new", "updated", "expired")},
            "watermark": _WHEN,
        },
    },
}

#: An OTX source as a client adds it (the key a placeholder: a real one goes in no document)...
_NEW_EXAMPLE: Final[dict[str, Any]] = {
    "name": "otx",
    "hostname": "otx.alienvault.com",
    "poll_path": "/taxii/poll",
    "collection": "user_AlienVault",
    "username": "<your OTX API key>",
    "timeout": "60s",
}
#: ... and as the API answers: made and shown by the code that answers, so the key is masked.
_SOURCE_EXAMPLE: Final = _source_json(make_source(_NEW_EXAMPLE), SourceStatus())

_NAME_SCHEMA: Final = {
    "type": "string",
    "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]*$",
    "maxLength": MAX_RULE_NAME_LENGTH,
}
_WORDS: Final = {
    "type": "array",
    "description": 'empty (or ["any"]): every one; a comma-separated string is taken too',
}
#: What a rule is written with (POST, PATCH): mail.rules.make_rule's rules.
_RULE_FIELDS: Final[dict[str, Any]] = {
    "name": _NAME_SCHEMA,
    "parts": {**_WORDS, "items": {"type": "string", "enum": [str(p) for p in PARTS]}},
    "sources": {
        **_WORDS,
        "items": {"type": "string"},
        "description": "feed source names; empty: every source",
    },
    "kinds": {**_WORDS, "items": {"type": "string", "enum": list(KINDS)}},
    "action": {"type": "string", "enum": [str(a) for a in RULE_ACTIONS]},
    "position": {
        "type": "integer",
        "minimum": 1,
        "description": "1: first; past the end, or absent in a POST: last",
    },
    "enabled": {"type": "boolean"},
    "subject_prefix": _nullable(
        "string",
        maxLength=64,
        description=f"tag rules only; null: {DEFAULT_SUBJECT_PREFIX}",
    ),
}
_RULE_OUT: Final[dict[str, Any]] = {
    **_RULE_FIELDS,
    "parts": {"type": "array", "items": _RULE_FIELDS["parts"]["items"]},
    "sources": {"type": "array", "items": {"type": "string"}},
    "kinds": {"type": "array", "items": _RULE_FIELDS["kinds"]["items"]},
}
_EXCEPTION_FIELDS: Final[dict[str, Any]] = {
    "value": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_EXCEPTION_LENGTH,
        "description": "a domain (covers its subdomains), e-mail address, IP address or"
        " network, URL or hash; the kind is read from it",
    },
    "note": {
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_NOTE_LENGTH,
        "description": "why it is trusted",
    },
}
_HITS_ROW: Final[dict[str, Any]] = {
    "source": _TEXT,
    "mode": {
        "type": "string",
        "enum": list(MODES),
        "description": "monitor: hits of a source in monitor mode (what it would have done;"
        " nothing was), counted apart from the enforced ones",
    },
    "hits": _COUNT,
    "last": {"type": "string", "format": "date-time"},
}
_POLICY_400: Final = 'a field that cannot be used: {"detail", "field"}'
_NAME_PATH: Final = [{"name": "name", "in": "path", "required": True, "schema": _TEXT}]


#: The API's OpenAPI 3.0 description (what `schemathesis` or any client generator reads).
OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.0.3",
    "info": {"title": "feedgate feed manager", "version": "1"},
    "components": {
        "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["detail"],
                "properties": {
                    "detail": {"type": "string", "description": "what is wrong, how to fix it"},
                    "field": {"type": "string", "description": "the field or parameter at fault"},
                    "node": _nullable("string", description="409 of Poll Now: the lease holder"),
                    "since": {**_WHEN, "description": "409 of Poll Now: held since"},
                },
            },
            "NewSource": {
                "type": "object",
                "required": ["name", "hostname", "collection"],
                "properties": _SOURCE_FIELDS,
                "additionalProperties": False,
                "example": _NEW_EXAMPLE,
            },
            "SourceChanges": {
                "type": "object",
                "properties": _SOURCE_FIELDS,
                "additionalProperties": False,
                "description": "the fields to change; name, if given, must be the source's",
            },
            "Source": {
                "type": "object",
                "required": sorted(_SOURCE_OUT),
                "properties": _SOURCE_OUT,
                "example": _SOURCE_EXAMPLE,
            },
            "PollResult": {
                "type": "object",
                "required": [f.name for f in dataclasses.fields(PollResult)],
                "properties": {
                    "source": _TEXT,
                    "ok": {"type": "boolean"},
                    **{
                        k: _COUNT
                        for k in ("segments", "blocks", "read", "new", "updated", "expired")
                    },
                    "skipped_blocks": _COUNT,
                    "skipped": {
                        "type": "object",
                        "additionalProperties": _COUNT,
                        "description": "values left out of the feed, by reason",
                    },
                    "error": _nullable("string"),
                    "seconds": {"type": "number", "minimum": 0},
                },
            },
            "Observable": {
                "type": "object",
                "required": ["source", "kind", "value", "first_seen", "last_seen", "expired"],
                "properties": {
                    "id": _INT64 | {"description": "the key to page on (after=)"},
                    "source": _TEXT,
                    "kind": _TEXT,
                    "value": _TEXT,
                    "type": _nullable("string", description="the feed's own type"),
                    "first_seen": {"type": "string", "format": "date-time"},
                    "last_seen": {"type": "string", "format": "date-time"},
                    "valid_until": _WHEN,
                    "expired": {"type": "boolean"},
                    "context": {"type": "object"},
                },
            },
            "NewRule": {
                "type": "object",
                "required": ["name", "action"],
                "properties": _RULE_FIELDS,
                "additionalProperties": False,
                "example": {
                    "name": "reject-phish",
                    "parts": ["url", "from"],
                    "kinds": ["url", "domain"],
                    "action": "reject",
                    "position": 1,
                },
            },
            "RuleChanges": {
                "type": "object",
                "properties": _RULE_FIELDS,
                "additionalProperties": False,
                "minProperties": 1,
                "description": "the fields to change (one at least): name renames, position moves",
            },
            "Rule": {
                "type": "object",
                "required": sorted(_RULE_OUT),
                "properties": _RULE_OUT,
                "example": DEFAULT_RULE.to_dict(),
            },
            "NewException": {
                "type": "object",
                "required": ["value", "note"],
                "properties": _EXCEPTION_FIELDS,
                "additionalProperties": False,
                "example": {"value": "partner.example", "note": "ticket 4711"},
            },
            "Exception": {
                "type": "object",
                "required": ["kind", "value", "note"],
                "properties": {
                    "kind": {"type": "string", "enum": list(KINDS)},
                    **_EXCEPTION_FIELDS,
                },
            },
            "Hits": {
                "type": "object",
                "required": ["sources", "top"],
                "properties": {
                    "sources": {
                        "type": "array",
                        "description": "per source and mode, most hits first",
                        "items": {
                            "type": "object",
                            "required": ["source", "mode", "hits", "messages", "last"],
                            "properties": {**_HITS_ROW, "messages": _COUNT},
                        },
                    },
                    "top": {
                        "type": "array",
                        "description": "the observables hit most, most first",
                        "items": {
                            "type": "object",
                            "required": ["source", "mode", "kind", "value", "hits", "last"],
                            "properties": {**_HITS_ROW, "kind": _TEXT, "value": _TEXT},
                        },
                    },
                },
            },
            "RetroFind": RETRO_ROW,
            "LogEntry": {
                "type": "object",
                "required": ["id", "at", "level", "source", "message", "line"],
                "properties": {
                    "id": {"type": "integer"},
                    "at": {"type": "string", "format": "date-time"},
                    "level": {"type": "string", "enum": ["info", "warning", "error"]},
                    "source": _nullable("string"),
                    "message": _TEXT,
                    "line": _TEXT,
                },
            },
        },
    },
    "paths": {
        "/api/v1/": {
            "get": {
                "summary": "The API root: its links, the header to send, this document's URL",
                "security": [],
                "responses": {"200": _json({"type": "object"})},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Whether the service and its database answer (no token needed)",
                "security": [],
                "responses": {
                    "200": _json({"type": "object"}),
                    "503": _json({"type": "object"}, "the database does not answer"),
                },
            }
        },
        "/api/v1/sources": {
            "get": _op(
                "List the sources with their last poll",
                schema={"type": "array", "items": _ref("Source")},
            ),
            "post": _created(
                _op(
                    "Add a source (JSON fields of the Source; durations as text)",
                    "201",
                    _ref("Source"),
                    body="NewSource",
                    _400='a field that cannot be used: {"detail", "field"}',
                    _409="a source of that name exists",
                )
            ),
        },
        "/api/v1/sources/{name}": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": _op("One source", schema=_ref("Source"), _404="no such source")
            | {"operationId": "getSource"},
            "patch": _op(
                "Change fields of a source",
                schema=_ref("Source"),
                body="SourceChanges",
                _400='a field that cannot be used: {"detail", "field"}',
                _404="no such source",
                _409="the source was deleted meanwhile",
            )
            | {"operationId": "changeSource"},
            "delete": _op("Delete a source and its observables", "204", _404="no such source")
            | {"operationId": "deleteSource"},
        },
        "/api/v1/sources/{name}/poll": {
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "post": _op(
                "Poll Now: poll the source under its lease, due or not; the poll's result",
                schema=_ref("PollResult"),
                _404="no such source",
                _409='another node is polling the source: {"detail", "node", "since"}; '
                "nothing was polled",
            )
            | {"operationId": "pollSource"},
        },
        "/api/v1/observables": {
            "get": _op(
                "Browse and search observables",
                schema={"type": "array", "items": _ref("Observable")},
                query=(
                    _param("source", _TEXT, "only this source's"),
                    _param("kind", _TEXT, "only this kind, in any case (ipv4, domain, ...)"),
                    _param("search", _TEXT, "text in the value or the context"),
                    _param("all", _TEXT, "1 or true: expired ones too"),
                    _param("limit", _INT64, "at most this many (10000 at most)"),
                    _param("offset", _INT64, "skip this many"),
                    _param(
                        "after",
                        _INT64,
                        "rows after the one of this id (the next page: the last row's id)",
                    ),
                ),
                _400='a parameter that cannot be used: {"detail", "field"}',
            )
        },
        "/api/v1/observables/{id}": {
            "parameters": [{"name": "id", "in": "path", "required": True, "schema": _INT64}],
            "get": _op(
                "One observable (expired or not) and the messages it matched, newest first"
                f" ({MAX_OBSERVABLE_MATCHES} at most)",
                schema={"type": "object"},
                _404="no such observable",
            )
            | {"operationId": "getObservable"},
        },
        "/api/v1/log": {
            "get": _op(
                f"The threat-feed log, oldest first (or newest), {MAX_LOG_ROWS} rows at most",
                schema={"type": "array", "items": _ref("LogEntry")},
                query=(
                    _param("source", _TEXT, "only this source's"),
                    _param(
                        "level", {"type": "string", "enum": list(LOG_LEVELS)}, "only this level's"
                    ),
                    _param("after", _INT64, "rows after this id"),
                    _param("before", _INT64, "rows before this id (page on with order=desc)"),
                    _param("limit", _INT64, f"at most this many ({MAX_LOG_ROWS} at most)"),
                    _param(
                        "order",
                        {"type": "string", "enum": ["asc", "desc"], "default": "asc"},
                        "asc: oldest first; desc: newest first (the newest rows)",
                    ),
                ),
                _400='a parameter that cannot be used: {"detail", "field"}',
            )
        },
        "/api/v1/rules": {
            "get": _op(
                "The mail policy's rules, in order", schema={"type": "array", "items": _ref("Rule")}
            ),
            "post": _op(
                "Add a rule (last, or at position; the rules from there move down)",
                "201",
                _ref("Rule"),
                body="NewRule",
                _400=_POLICY_400,
                _409="a rule of that name exists",
            ),
        },
        "/api/v1/rules/{name}": {
            "parameters": _NAME_PATH,
            "get": _op("One rule", schema=_ref("Rule"), _404="no such rule"),
            "patch": _op(
                "Change a rule: rename, move (position), enable or disable, or its match",
                schema=_ref("Rule"),
                body="RuleChanges",
                _400=_POLICY_400,
                _404="no such rule",
                _409="a rule of the new name exists",
            ),
            "delete": _op("Delete a rule (those after it move up)", "204", _404="no such rule"),
        },
        "/api/v1/exceptions": {
            "get": _op(
                "The exception list, by kind and value",
                schema={"type": "array", "items": _ref("Exception")},
            ),
            "post": _op(
                "Trust a value whatever a feed says (its kind read from it)",
                "201",
                _ref("Exception"),
                body="NewException",
                _400=_POLICY_400,
                _409="the value is on the list already",
            ),
            "delete": _op(
                "Delete the exception ?value= names (for values with slashes: URLs, networks)",
                "204",
                query=(
                    {
                        **_param(
                            "value", _TEXT, "the exception, spelt any way that means the same"
                        ),
                        "required": True,
                    },
                ),
                _400=_POLICY_400,
                _404="not on the exception list",
            ),
        },
        "/api/v1/exceptions/{value}": {
            "parameters": [
                {
                    "name": "value",
                    "in": "path",
                    "required": True,
                    "schema": _TEXT,
                    "description": "URL-encoded; slashes may stay as they are",
                }
            ],
            "delete": _op(
                "Delete an exception", "204", _400=_POLICY_400, _404="not on the exception list"
            ),
        },
        "/api/v1/hits": {
            "get": _op(
                "How often each source's observables were enforced in mail (or, in monitor mode,"
                " would have been), and the observables hit most",
                schema=_ref("Hits"),
                query=(
                    _param("source", _TEXT, "only this source's"),
                    _param(
                        "mode",
                        {"type": "string", "enum": list(MODES)},
                        "only the enforced hits, or only the monitored ones (none: both, apart)",
                    ),
                    _param(
                        "since",
                        {"type": "string", "default": DEFAULT_SINCE},
                        "a duration back from now (12h, 7d, 2w), or all",
                    ),
                    _param(
                        "top",
                        {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": MAX_TOP,
                            "default": DEFAULT_TOP,
                        },
                        f"how many observables to list ({MAX_TOP} at most)",
                    ),
                ),
                _400='a parameter that cannot be used: {"detail", "field"}',
            )
        },
        "/api/v1/retro": {
            "get": _op(
                "Delivered messages that observables added since would have caught (the"
                " retro-scan's findings), oldest first",
                schema={"type": "array", "items": _ref("RetroFind")},
                query=(
                    _param("source", _TEXT, "only this source's"),
                    _param(
                        "since",
                        {"type": "string", "default": DEFAULT_SINCE},
                        "a duration back from now (12h, 7d, 2w), or all",
                    ),
                ),
                _400='a parameter that cannot be used: {"detail", "field"}',
            )
        },
    },
}

OPENAPI["paths"].update(QUARANTINE_PATHS)  # /api/v1/quarantine (web.api_quarantine)
