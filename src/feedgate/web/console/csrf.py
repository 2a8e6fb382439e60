"""CSRF protection of the console's forms, and the limited form reading it stands on.

Every request that may change something (any method but GET and HEAD) must carry the session's
CSRF token (:func:`feedgate.feeds.console_users.csrf_token`: an HMAC of the session cookie's
token), in the form field :data:`FIELD` or, for a script's ``fetch``, the header
:data:`HEADER`; without it the answer is 403 and nothing is done. A forged request from another
site cannot read the token (the same-origin policy), and the SameSite=Strict cookie would not
even be sent along: two locks, either of which suffices.

The login form has no session yet, so it is protected by a double-submit cookie
(:data:`LOGIN_COOKIE`): a random value in a SameSite=Strict cookie and in the form, which must be
equal. It keeps another site from logging a browser in to an account of the attacker's.

Bodies are read against :data:`MAX_FORM_BYTES` (413 beyond it) before anything is parsed.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.types import Message

from feedgate.asgi_body import read_limited

__all__ = [
    "FIELD",
    "HEADER",
    "LOGIN_COOKIE",
    "MAX_FORM_BYTES",
    "FormTooLarge",
    "Submitted",
    "given_token",
    "new_login_token",
    "read_form",
    "valid",
]

#: The form field a console form carries the session's CSRF token in.
FIELD: Final = "csrf_token"
#: The header a script's request carries it in instead.
HEADER: Final = "X-CSRF-Token"
#: The login form's double-submit cookie (and form field of the same value).
LOGIN_COOKIE: Final = "feedgate_login_csrf"
#: The largest form body taken: the console's forms are a few kB at most.
MAX_FORM_BYTES: Final = 1024**2
#: Fields a form may have: no console form has a hundred.
_MAX_FIELDS: Final = 1000
#: Files a form may carry (a client certificate and its key are the most any form needs).
_MAX_FILES: Final = 4


class FormTooLarge(Exception):
    """A form body over :data:`MAX_FORM_BYTES`: 413, nothing parsed."""


def valid(given: str | None, expected: str) -> bool:
    """Whether ``given`` is the token ``expected``, compared in constant time."""
    return bool(given) and hmac.compare_digest(
        (given or "").encode("utf-8", "surrogateescape"), expected.encode()
    )


def given_token(request: Request, form: FormData | None) -> str | None:
    """The CSRF token a request carries: the header's, else the form field's."""
    header = request.headers.get(HEADER)
    if header:
        return header
    if form is not None:
        value = form.get(FIELD)
        if isinstance(value, str):
            return value
    return None


def new_login_token() -> str:
    """A fresh value for the login form's double-submit cookie."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Submitted:
    """What an unsafe request sent: its ``body`` as read (a script's JSON, say) and its
    ``form`` (empty unless the body is a form)."""

    body: bytes
    form: FormData


async def read_form(request: Request) -> Submitted:
    """The request's body, read against :data:`MAX_FORM_BYTES` (:class:`FormTooLarge` beyond
    it), and its form (URL-encoded or multipart) parsed from it. A body of another type is an
    empty form (its CSRF token, if any, comes from the header); a malformed multipart body is
    Starlette's 400."""
    body = await read_limited(request, MAX_FORM_BYTES)
    if body is None:
        raise FormTooLarge
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=_MAX_FILES, max_fields=_MAX_FIELDS)
    return Submitted(body, form)
