"""Add Source and Edit (``/sources/add``, ``/sources/{name}/edit``), and Test connection.

Every field of a source, labelled as the gateway labels them. What the form sends is turned
into the changes :func:`feedgate.feeds.sources.make_source` takes (the one way the CLI, the
REST API and ``feedgate up`` write a source) and written through the API's own functions
(:func:`~feedgate.web.api.source_from_json` and the store's ``add_source``;
:func:`~feedgate.web.api.change_source` on edit), so the page refuses exactly what they refuse,
with :class:`~feedgate.feeds.sources.SourceError`'s message shown beside its field and the
form keeping what was typed.

Secrets (:data:`~feedgate.feeds.sources.SECRET_FIELDS`, and a user name that is an API key) are
never sent back to the browser: their inputs are always empty, say whether one is set, and an
empty one keeps what is stored (a "remove" box deletes it).

Test connection (:data:`TEST_PATH`, posted by ``source_form.js``) builds the source from the
form the same way, unsaved, and asks its server for its collections
(:func:`feedgate.feeds.probe.probe_collections`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from feedgate.feeds.probe import probe_collections
from feedgate.feeds.sources import (
    ALL_ENFORCE,
    MODES,
    SECRET_SET,
    TAXII_VERSIONS,
    Source,
    SourceError,
    format_duration,
    shown_username,
)
from feedgate.feeds.store import FeedStoreError
from feedgate.web.api import change_source, source_from_json

from .auth import form, page_route
from .context import ConsoleContext, Page
from .render import NO_STORE, flash, render
from .sources import ADD_PATH, EDIT_PATH
from .sources import PATH as SOURCES_PATH

__all__ = ["FIELDS", "PAGE", "TEST_PATH", "Field", "form_changes", "routes"]

#: Where Test connection posts the form (JSON answer).
TEST_PATH: Final = "/sources/test-connection"


@dataclass(frozen=True)
class Field:
    """One input of the form: the source field it sets, its label and how it is entered
    (``text``, ``number``, ``duration``, ``check``, ``select``, ``secret``, ``kinds``)."""

    name: str
    label: str
    kind: str = "text"
    hint: str = ""
    choices: tuple[str, ...] = ()
    #: Empty text means None (no value), not "".
    optional: bool = False


#: The form's fields in the gateway's order, then feedgate's own.
FIELDS: Final[tuple[Field, ...]] = (
    Field("name", "Source Name", hint="letters, digits, '-', '_' or '.', e.g. otx-main"),
    Field("description", "Description"),
    Field("hostname", "Hostname", hint="the host name only, e.g. otx.alienvault.com"),
    Field("poll_path", "Polling Path", hint="e.g. /taxii/poll"),
    Field("collection", "Collection Name", hint="e.g. user_AlienVault"),
    Field("port", "Port", "number"),
    Field("use_https", "Use HTTPS", "check"),
    Field("username", "Username", "username", hint="for OTX: your API key"),
    Field("password", "Password", "secret"),
    Field("polling_interval", "Polling Interval", "duration", hint="e.g. 60m (at least 5m)"),
    Field("age", "Age of Threat Feed", "duration", hint="a first poll goes back this far: 30d"),
    Field("poll_segment", "Time Span of Poll Segment", "duration", hint="e.g. 1d"),
    Field("max_retries", "Max Retries", "number", hint="0 to 10"),
    Field("taxii_version", "TAXII Version", "select", choices=TAXII_VERSIONS),
    Field("discovery_path", "Discovery Path", optional=True, hint="e.g. /taxii/discovery"),
    Field("timeout", "Request Timeout", "duration", hint="per request, e.g. 60s"),
    Field("cert_file", "Client Certificate", optional=True, hint="a PEM file on this server"),
    Field("key_file", "Client Key", optional=True, hint="its key's PEM file, if separate"),
    Field("key_password", "Client Key Password", "secret"),
    Field("ca_cert", "CA Certificate", optional=True, hint="a PEM bundle to verify the server"),
    Field("verify_ssl", "Verify the server's certificate", "check"),
    Field("proxy_url", "Proxy", optional=True, hint="http://host:port, or noproxy"),
    Field("enforce", "Enforced Kinds", "kinds"),
    Field("mode", "Mode", "select", choices=MODES),
    Field("fp_gate", "False-positive gate", "check", hint="never enforce google.com and the like"),
)
_BY_NAME: Final = {f.name: f for f in FIELDS}
#: The observable kinds a source can enforce, for the form's boxes.
_KINDS: Final = tuple(sorted(ALL_ENFORCE))


def _whole_number(name: str, text: str) -> int:
    cleaned = text.strip()
    if not (cleaned.isascii() and cleaned.isdigit()) or len(cleaned) > 6:
        shown = repr(cleaned[:20]) if cleaned else "empty"
        raise SourceError(name, f"{shown} is not a whole number: give one such as 443 or 3")
    return int(cleaned)


def form_changes(data: FormData, base: Source | None) -> dict[str, Any]:
    """The changes the form ``data`` asks for, as :func:`make_source` takes them (the name not
    among them on edit: a source is not renamed). A secret input left empty keeps what
    ``base`` holds; SourceError for a number that is not one."""
    changes: dict[str, Any] = {}
    for item in FIELDS:
        if item.name == "name" and base is not None:
            continue
        raw = data.get(item.name)
        text = raw if isinstance(raw, str) else ""
        if item.kind == "check":
            changes[item.name] = text == "on"
        elif item.kind == "kinds":
            changes[item.name] = [v for v in data.getlist(item.name) if isinstance(v, str)]
        elif item.kind == "number":
            changes[item.name] = _whole_number(item.name, text)
        elif item.kind in ("secret", "username"):
            removed = data.get(f"{item.name}_remove") == "on"
            stored_secret = _secrets_set(base)[item.name]
            if text:
                changes[item.name] = text
            elif removed or base is None or not stored_secret:
                changes[item.name] = None
            # else: left empty, the stored secret stays
        elif item.optional:
            changes[item.name] = text.strip() or None
        else:
            changes[item.name] = text
    return changes


def _values(source: Source | None) -> dict[str, Any]:
    """What the inputs show for ``source`` (None: a new source's defaults); secrets never."""
    shown = source or Source(name="", hostname="", collection="")
    values: dict[str, Any] = {}
    for item in FIELDS:
        value = getattr(shown, item.name)
        if item.kind == "secret":
            value = ""
        elif item.kind == "username":
            value = "" if shown_username(shown) in (None, SECRET_SET) else shown.username
        elif item.kind == "duration":
            value = format_duration(value)
        elif item.kind == "kinds":
            value = sorted(value)
        elif value is None:
            value = ""
        values[item.name] = value
    return values


#: Beside a secret typed into a form that was refused: it is not sent back, so it must be typed
#: again (the walkthrough lost a password by saving the corrected form without it).
RETYPE: Final = "not kept after an error (a secret is never sent back): type it again"


def _retype(data: FormData) -> dict[str, str]:
    """The secrets (and the user name, which may be an API key) typed into a refused form."""
    found = {}
    for item in FIELDS:
        raw = data.get(item.name)
        if item.kind in ("secret", "username") and isinstance(raw, str) and raw:
            found[item.name] = RETYPE
    return found


def _typed(data: FormData) -> dict[str, Any]:
    """What was typed, to show again after an error: secrets never, nor the user name (it is
    the credential itself where it is an API key, as OTX's)."""
    values: dict[str, Any] = {}
    for item in FIELDS:
        raw = data.get(item.name)
        text = raw if isinstance(raw, str) else ""
        if item.kind in ("secret", "username"):
            values[item.name] = ""
        elif item.kind == "check":
            values[item.name] = text == "on"
        elif item.kind == "kinds":
            values[item.name] = [v for v in data.getlist(item.name) if isinstance(v, str)]
        else:
            values[item.name] = text
    return values


def _secrets_set(source: Source | None) -> dict[str, bool]:
    if source is None:
        return {"password": False, "key_password": False, "username": False}
    return {
        "password": source.password is not None or "password" in source.unreadable_secrets,
        "key_password": source.key_password is not None
        or "key_password" in source.unreadable_secrets,
        "username": shown_username(source) == SECRET_SET,
    }


def _field_of(exc: SourceError) -> str:
    """The input an error is shown beside (the whole form's top for one it has no input for)."""
    if exc.field in _BY_NAME:
        return exc.field
    return "username" if exc.field == "username_secret" else ""


def routes(ctx: ConsoleContext) -> list[BaseRoute]:
    def show(
        request: Request,
        base: Source | None,
        values: dict[str, Any],
        errors: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        editing = base is not None
        title = f"Edit source {base.name}" if base is not None else "Add Source"
        action = EDIT_PATH.format(name=quote(base.name, safe="")) if base is not None else ADD_PATH
        return render(
            request,
            "source_form.html",
            status_code,
            title=title,
            fields=FIELDS,
            kinds=_KINDS,
            values=values,
            errors=errors or {},
            secrets_set=_secrets_set(base),
            editing=editing,
            name=base.name if base is not None else "",
            action=action,
            test_path=TEST_PATH,
            back=SOURCES_PATH,
        )

    def missing(request: Request, name: str) -> Response:
        return render(
            request,
            "error.html",
            404,
            title="No such source",
            message=f"There is no source named {name!r} (it may have been deleted meanwhile).",
            back=SOURCES_PATH,
        )

    def add_page(request: Request) -> Response:
        return show(request, None, _values(None))

    def add(request: Request) -> Response:
        data = form(request)
        try:
            source = source_from_json(form_changes(data, None))
            ctx.store.add_source(source)
        except SourceError as exc:
            errors = _retype(data) | {_field_of(exc): exc.message}
            return show(request, None, _typed(data), errors, 400)
        except FeedStoreError as exc:
            message = f"{exc}: choose another name, or edit that source"
            return show(request, None, _typed(data), _retype(data) | {"name": message}, 409)
        text = f"Added source {source.name}: it is polled every " + (
            format_duration(source.polling_interval) if source.enabled else "(disabled)"
        )
        text += ". Poll Now polls it at once."
        return flash(request, RedirectResponse(SOURCES_PATH, 303, headers=NO_STORE), text)

    def edit_page(request: Request) -> Response:
        name = request.path_params["name"]
        found = ctx.store.get_source(name)
        if found is None:
            return missing(request, name)
        return show(request, found, _values(found))

    def edit(request: Request) -> Response:
        name = request.path_params["name"]
        found = ctx.store.get_source(name)
        if found is None:
            return missing(request, name)
        data = form(request)
        try:
            change_source(ctx.store, found, form_changes(data, found))
        except SourceError as exc:
            typed = _typed(data) | {"name": found.name}
            errors = _retype(data) | {_field_of(exc): exc.message}
            return show(request, found, typed, errors, 400)
        except FeedStoreError as exc:
            return render(request, "error.html", 409, title="Not saved", message=str(exc))
        text = f"Saved source {name}."
        return flash(request, RedirectResponse(SOURCES_PATH, 303, headers=NO_STORE), text)

    def test_connection(request: Request) -> Response:
        data = form(request)
        editing = data.get("editing")
        base = ctx.store.get_source(editing) if isinstance(editing, str) and editing else None
        try:
            changes = form_changes(data, base)
            if base is None and not changes.get("name"):
                changes["name"] = "connection-test"  # the name does not matter to the server
            source = source_from_json(changes, base)
        except SourceError as exc:
            return JSONResponse({"ok": False, "field": _field_of(exc), "error": exc.message})
        probe = probe_collections(source)
        return JSONResponse(
            {
                "ok": probe.ok,
                "asked": probe.asked,
                "error": probe.error,
                "collection": source.collection,
                "found": probe.has(source.collection),
                "collections": [
                    {"name": c.name, "description": c.description, "available": c.available}
                    for c in probe.collections
                ],
            }
        )

    return [
        page_route(ADD_PATH, add_page),
        page_route(ADD_PATH, add, methods=("POST",)),
        page_route(TEST_PATH, test_connection, methods=("POST",)),
        page_route(EDIT_PATH, edit_page),
        page_route(EDIT_PATH, edit, methods=("POST",)),
    ]


PAGE: Final = Page(None, routes)
