"""The REST API of the mail policy: rules, exceptions and hits, thin over
:class:`~feedgate.mail.policy_store.PolicyStore` (the same methods ``feedgate rule``,
``feedgate exception`` and ``feedgate hits`` call, so both faces take and refuse the same).

A row is what the CLI's ``--format jsonl`` prints (:meth:`Rule.to_dict`,
:meth:`ExceptionEntry.to_dict`, :meth:`Hits.to_dict`). Refusals: a field that cannot be used is
400 ``{"detail", "field"}``, a rule or exception that is not there 404, a name or value taken
409 (:func:`policy_error_response`, which :func:`feedgate.web.api.create_api`'s guard calls).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from feedgate.feeds.sources import parse_duration
from feedgate.mail.policy_store import DEFAULT_TOP, MAX_TOP, PolicyStore, check_mode, check_top
from feedgate.mail.rules import PolicyConflict, PolicyError, PolicyNotFound

__all__ = [
    "DEFAULT_SINCE",
    "DEFAULT_TOP",
    "MAX_TOP",
    "policy_error_response",
    "policy_routes",
    "since_moment",
]

DEFAULT_SINCE: Final = "7d"
#: What a new rule is written with (POST /rules) and a rule's fields a PATCH can change.
RULE_FIELDS: Final = (
    "name",
    "parts",
    "sources",
    "kinds",
    "action",
    "position",
    "enabled",
    "subject_prefix",
)


def since_moment(text: str | None, now: datetime) -> datetime | None:
    """The start of the hits window ``text`` names, counted back from ``now``: a duration as
    the source options take them (``7d``, ``12h``), or ``all`` (None: the whole log). Empty
    or None: :data:`DEFAULT_SINCE`. Raises :class:`~feedgate.feeds.sources.SourceError` for
    field ``since``."""
    text = (text or "").strip() or DEFAULT_SINCE
    if text.lower() == "all":
        return None
    return now - parse_duration(text, "since")


def policy_error_response(exc: PolicyError) -> Response:
    """400, 404 or 409 with ``{"detail", "field"}`` (module doc)."""
    status = (
        404 if isinstance(exc, PolicyNotFound) else 409 if isinstance(exc, PolicyConflict) else 400
    )
    return JSONResponse({"detail": exc.message, "field": exc.field}, status)


def _fields(data: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise PolicyError(f"body: expected a JSON object with the {what}", "body")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        shown = (
            unknown[0] if unknown[0].isprintable() and unknown[0].isascii() else ascii(unknown[0])
        )
        raise PolicyError(f"{shown}: unknown field: the fields are {', '.join(allowed)}", shown)
    return dict(data)


def policy_routes(
    policy: PolicyStore,
    guard: Callable[[Callable[[Request], Response]], Callable[[Request], Response]],
    body: Callable[[Request], Any],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Route]:
    """The routes of the policy API; ``guard`` is the API's token check and error mapping,
    ``body`` its bounded JSON reader, ``now`` the clock the hits window counts back from."""

    def rules_root(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([rule.to_dict() for rule in policy.list_rules()])
        data = _fields(body(request), RULE_FIELDS, "rule's fields")
        if "action" not in data:
            raise PolicyError(
                "action: missing: say what the rule does: reject, drop, quarantine, tag, header"
                " or log",
                "action",
            )
        rule = policy.add_rule(data.pop("name", None), **data)
        return JSONResponse(rule.to_dict(), 201)

    def one_rule(request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "DELETE":
            policy.delete_rule(name)
            return Response(status_code=204)
        if request.method == "PATCH":
            changes = _fields(body(request), RULE_FIELDS, "fields to change")
            return JSONResponse(policy.edit_rule(name, **changes).to_dict())
        return JSONResponse(policy.get_rule(name).to_dict())

    def exceptions_root(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse([entry.to_dict() for entry in policy.list_exceptions()])
        if request.method == "DELETE":  # ?value=: a URL with slashes, not in the path
            value = request.query_params.get("value")
            if value is None:
                raise PolicyError(
                    "value: missing: DELETE /api/v1/exceptions?value=<the value>", "value"
                )
            policy.delete_exception(value)
            return Response(status_code=204)
        data = _fields(body(request), ("value", "note"), "exception's value and note")
        entry = policy.add_exception(data.get("value", ""), data.get("note", ""))
        return JSONResponse(entry.to_dict(), 201)

    def one_exception(request: Request) -> Response:
        policy.delete_exception(request.path_params["value"])
        return Response(status_code=204)

    def hits(request: Request) -> Response:
        q = request.query_params
        start = since_moment(q.get("since"), now())
        top = check_top(q.get("top") or DEFAULT_TOP)  # the limit and its words: the library's
        mode = check_mode(q.get("mode"))
        return JSONResponse(policy.hits(q.get("source") or None, start, top, mode).to_dict())

    return [
        Route("/api/v1/rules", guard(rules_root), methods=["GET", "POST"]),
        Route("/api/v1/rules/{name}", guard(one_rule), methods=["GET", "PATCH", "DELETE"]),
        Route("/api/v1/exceptions", guard(exceptions_root), methods=["GET", "POST", "DELETE"]),
        Route("/api/v1/exceptions/{value:path}", guard(one_exception), methods=["DELETE"]),
        Route("/api/v1/hits", guard(hits), methods=["GET"]),
    ]
