"""The Quarantine page (``/quarantine``): the messages a quarantine rule kept, newest first,
filtered by source and paged; one message's headers, matches (with their context) and raw
text; Release and Delete (confirmed first); and the retro-scan's findings
(``/quarantine/retro``).

A page shows what the REST API shows, through the same calls: the list, a message and its
bytes are :class:`~feedgate.mail.quarantine.QuarantineStore`'s ``list``, ``get`` and ``raw``
(``GET /api/v1/quarantine...``), a release is :func:`feedgate.web.api_quarantine.release_message`
(``POST .../release``: the relay and TLS recorded with the message), a delete the store's
``delete``; the retro-scan's findings are :func:`feedgate.mail.retro.retro_finds` over the
window :func:`~feedgate.web.api_policy.since_moment` reads (``GET /api/v1/retro``).

The raw message is shown as text: it is whatever a sender chose to send, so it is escaped like
every other value (never rendered as HTML, never linked).
"""

from __future__ import annotations

import email.errors
import email.header
import email.parser
import email.policy
from typing import Any, Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from feedgate.feeds.sources import SourceError
from feedgate.mail.quarantine import QuarantinedMessage, QuarantineError, QuarantineStore
from feedgate.mail.retro import retro_finds
from feedgate.mail.rewrite import split_message
from feedgate.web.api_policy import DEFAULT_SINCE, since_moment
from feedgate.web.api_quarantine import release_message

from . import auth
from .auth import page_route
from .context import ConsoleContext, NavItem, Page
from .render import NO_STORE, flash, render

__all__ = ["PAGE", "PAGE_SIZE", "PATH", "RELEASED_BY", "RETRO_PATH", "released_by", "routes"]

PATH: Final = "/quarantine"
RETRO_PATH: Final = "/quarantine/retro"
#: Messages a page of the list shows.
PAGE_SIZE: Final = 50
#: How a release from the console is recorded: ``console:<user>`` (the API's is ``api``).
RELEASED_BY: Final = "console:{user}"
#: The raw text shown at most (the rest is in ``GET /api/v1/quarantine/{id}/raw``).
RAW_SHOWN: Final = 256 * 1024


def released_by(user: str) -> str:
    """Who a release by console user ``user`` is recorded as."""
    return RELEASED_BY.format(user=user)


def _state(message: QuarantinedMessage) -> str:
    if message.released_at is not None:
        return "released"
    if message.claimed_by is not None:
        return "being released"
    if message.release_error is not None:
        return "release failed"
    return "held"


def _row(message: QuarantinedMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "at": message.at,
        "mail_from": message.envelope.mail_from or "<>",
        "rcpt_tos": list(message.envelope.rcpt_tos),
        "subject": message.subject,
        "rules": list(message.rules),
        "sources": sorted({str(m.get("source")) for m in message.matches}),
        "size": message.size,
        "state": _state(message),
        "message": message,
    }


def _headers(raw: bytes) -> list[tuple[str, str]]:
    """The header fields of ``raw`` in order, each decoded (RFC 2047) for reading."""
    block, _sep, _body = split_message(raw)
    try:
        parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(block)
    except (ValueError, TypeError, email.errors.MessageError):
        return []
    out = []
    for name, value in parsed.items():
        try:
            shown = str(email.header.make_header(email.header.decode_header(str(value))))
        except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
            shown = str(value)
        out.append((name, " ".join(shown.split())))
    return out


def _page_number(text: str | None) -> int:
    try:
        return max(1, int(text or "1"))
    except ValueError:
        return 1


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    quarantine = QuarantineStore(ctx.store.engine, now=ctx.now)

    def back(request: Request, ident: str, text: str, level: str = "ok") -> Response:
        target = f"{PATH}/{ident}" if ident.isalnum() else PATH
        return flash(request, RedirectResponse(target, 303, headers=NO_STORE), text, level)

    def missing(request: Request, exc: QuarantineError) -> Response:
        return render(
            request, "error.html", 404, title="No such message", message=exc.message, back=PATH
        )

    def listing(request: Request) -> Response:
        q = request.query_params
        source = (q.get("source") or "").strip()
        since = (q.get("since") or "").strip()
        show_all = q.get("all") == "1"
        number = _page_number(q.get("page"))
        error = None
        try:  # the API's window: the same default (7d) and words
            found = quarantine.list(
                since=since_moment(since, ctx.now()), source=source or None, released=show_all
            )
        except SourceError as exc:
            error, found = str(exc), []
        pages = max(1, -(-len(found) // PAGE_SIZE))
        number = min(number, pages)
        shown = found[(number - 1) * PAGE_SIZE : number * PAGE_SIZE]

        def link(page: int) -> str:
            params = {
                "source": source,
                "since": since,
                "all": "1" if show_all else "",
                "page": str(page),
            }
            return PATH + "?" + urlencode({k: v for k, v in params.items() if v})

        return render(
            request,
            "quarantine.html",
            title="Quarantine",
            rows=[_row(m) for m in shown],
            total=len(found),
            source=source,
            since=since or DEFAULT_SINCE,
            show_all=show_all,
            error=error,
            sources=sorted(ctx.store.source_names()),
            page=number,
            pages=pages,
            previous=link(number - 1) if number > 1 else None,
            next=link(number + 1) if number < pages else None,
        )

    def show(request: Request) -> Response:
        ident = request.path_params["id"]
        try:
            message = quarantine.get(ident)
            raw = quarantine.raw(ident)
        except QuarantineError as exc:
            return missing(request, exc)
        return render(
            request,
            "quarantine_show.html",
            title=f"Quarantined message {ident}",
            row=_row(message),
            m=message,
            headers=_headers(raw),
            raw=raw[:RAW_SHOWN].decode("utf-8", "replace"),
            cut=len(raw) > RAW_SHOWN,
        )

    def release(request: Request) -> Response:
        ident = request.path_params["id"]
        session = auth.user(request)
        try:
            done = release_message(quarantine, ident, released_by(session.user))
        except QuarantineError as exc:
            return back(request, ident, exc.message, "error")
        rcpts = ", ".join(done.envelope.rcpt_tos)
        relay = done.relay or "its relay"
        return back(request, ident, f"Released message {ident} to {rcpts} through {relay}.")

    def confirm_delete(request: Request) -> Response:
        ident = request.path_params["id"]
        try:
            message = quarantine.get(ident)
        except QuarantineError as exc:
            return missing(request, exc)
        return render(
            request, "quarantine_delete.html", title=f"Delete message {ident}", row=_row(message)
        )

    def delete(request: Request) -> Response:
        ident = request.path_params["id"]
        try:
            quarantine.delete(ident)
        except QuarantineError as exc:
            return missing(request, exc)
        text = f"Deleted quarantined message {ident} for good."
        return flash(request, RedirectResponse(PATH, 303, headers=NO_STORE), text)

    def retro(request: Request) -> Response:
        q = request.query_params
        source = (q.get("source") or "").strip()
        since = (q.get("since") or "").strip()
        error = None
        try:
            start = since_moment(since, ctx.now())
            finds = retro_finds(ctx.store.engine, since=start, source=source or None)
        except SourceError as exc:
            error, finds = str(exc), []
        return render(
            request,
            "quarantine_retro.html",
            title="Retro-scan findings",
            finds=list(reversed(finds)),  # newest first, as the quarantine's list
            source=source,
            since=since or DEFAULT_SINCE,
            sources=sorted(ctx.store.source_names()),
            error=error,
        )

    return [
        page_route(PATH, listing),
        page_route(RETRO_PATH, retro),
        page_route(PATH + "/{id}", show),
        page_route(PATH + "/{id}/release", release, methods=("POST",)),
        page_route(PATH + "/{id}/delete", confirm_delete),
        page_route(PATH + "/{id}/delete", delete, methods=("POST",)),
    ]


PAGE: Final = Page(NavItem("Quarantine", PATH), routes)
