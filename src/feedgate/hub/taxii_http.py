"""The TAXII 1.x HTTP binding, server side: requests in, messages out, nothing about data.

A TAXII service is a function from a request message (and who sent it) to an answer: a whole
message, or the chunks of a streamed Poll_Response. This module does the rest of what the
binding asks, once for every service: POST only, the X-TAXII-* headers, a size limit per service
(HTTP 413 before anything is parsed), parsing
with the hardened parser, a Status_Message for anything wrong with the request (BAD_MESSAGE,
UNSUPPORTED_MESSAGE), Basic credentials handed to the service, and the response headers.

Built on Starlette: endpoints are plain functions that Starlette runs in a thread pool, so a
service may block on its database; streamed answers are iterated in the pool too.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from feedgate.asgi_body import read_limited_from_thread
from feedgate.taxii import messages as tm
from feedgate.xml import XMLParseError

log = logging.getLogger("feedgate.hub.taxii")

#: The largest Inbox_Message body accepted (one of many packages fits easily).
MAX_INBOX_BYTES: Final = 64 * 1024**2
#: The largest body of any other request (discovery, collection information, poll,
#: subscription): those are a few hundred bytes, and nothing in them needs more than a few kB;
#: a 50 MB Poll_Request of extended headers was read, parsed and answered.
MAX_QUERY_BYTES: Final = 1024**2

_SERVICES: Final = {
    tm.VID_TAXII_XML_11: tm.VID_TAXII_SERVICES_11,
    tm.VID_TAXII_XML_10: tm.VID_TAXII_SERVICES_10,
}


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the client presented: Basic username and password (OTX: the API key as username)."""

    username: str
    password: str


@dataclass(frozen=True, slots=True)
class Context:
    """Who asked, and where the server is as they reached it (services advertise addresses)."""

    credentials: Credentials | None
    base_url: str  # scheme://host[:port] of this request, no trailing slash
    https: bool


#: A service's answer: a whole message, or the XML chunks of a streamed message.
Answer = tm.Message | Iterable[bytes]
Service = Callable[[tm.Message, Context], Answer]


def status(
    request: tm.Message | None,
    status_type: str,
    message: str = "",
    *,
    version: str = tm.VID_TAXII_XML_11,
    **details: str,
) -> tm.StatusMessage:
    """A Status_Message answering ``request`` (or an unreadable one: in_response_to "0").

    Its ids are ones the answer's version allows (TAXII 1.0: digits only); a 1.0 request's
    own id that is not is answered as if unreadable.
    """
    version = request.version if request is not None else version
    asked = request.message_id if request is not None else "0"
    if version == tm.VID_TAXII_XML_10 and not (asked.isascii() and asked.isdigit()):
        asked = "0"
    return tm.StatusMessage(
        message_id=tm.new_message_id(version),
        version=version,
        in_response_to=asked,
        status_type=status_type,
        message=message or None,
        details=tuple(tm.StatusDetail(name=k, value=v) for k, v in details.items())
        if (request is None or request.version == tm.VID_TAXII_XML_11)
        else (),
        detail_text=None,
    )


def new_id() -> str:
    return str(uuid.uuid4())


def credentials(request: Request) -> Credentials | None:
    """Basic credentials from the Authorization header, or None."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, _, password = decoded.partition(":")
    return Credentials(username, password)


def _headers(version: str, request: Request) -> dict[str, str]:
    scheme = request.url.scheme
    return {
        "X-TAXII-Content-Type": version,
        "X-TAXII-Protocol": tm.VID_TAXII_HTTPS_10 if scheme == "https" else tm.VID_TAXII_HTTP_10,
        "X-TAXII-Services": _SERVICES.get(version, tm.VID_TAXII_SERVICES_11),
    }


def _respond(answer: Answer, version: str, request: Request) -> Response:
    headers = _headers(version, request)
    if isinstance(answer, tm.Message):
        return Response(
            answer.to_xml(), media_type="application/xml", headers=_headers(answer.version, request)
        )
    return StreamingResponse(iter(answer), media_type="application/xml", headers=headers)


def endpoint(path: str, service: Service, *, max_bytes: int = MAX_QUERY_BYTES) -> Route:
    """A Starlette route that speaks the TAXII HTTP binding and calls ``service``; a request
    body over ``max_bytes`` is answered 413 before it is parsed."""

    def handle(request: Request) -> Response:
        # A sync endpoint: Starlette runs it in its thread pool, so services may block.
        return _handle(request, service, max_bytes)

    return Route(path, handle, methods=["POST"])


def _handle(request: Request, service: Service, max_bytes: int) -> Response:
    declared = request.headers.get("x-taxii-content-type", "")
    version = declared if declared in _SERVICES else tm.VID_TAXII_XML_11
    body = read_limited_from_thread(request, max_bytes)
    if body is None:  # HTTP says it (413), and a TAXII client reads why in the Status_Message
        refusal = status(
            None,
            tm.ST_BAD_MESSAGE,
            f"request body too large: this service takes at most {max_bytes} bytes",
            version=version,
        )
        response = _respond(refusal, version, request)
        response.status_code = 413
        return response
    try:
        message = tm.parse(body)
    except (XMLParseError, tm.TAXIIMessageError) as exc:
        return _respond(
            status(None, tm.ST_BAD_MESSAGE, f"cannot read the request: {exc}", version=version),
            version,
            request,
        )
    if declared and declared not in _SERVICES:
        return _respond(
            status(
                message,
                tm.ST_UNSUPPORTED_MESSAGE,
                f"message binding {declared!r} is not supported",
                **{tm.SD_SUPPORTED_BINDING: tm.VID_TAXII_XML_11},
            ),
            version,
            request,
        )
    context = Context(
        credentials(request),
        f"{request.url.scheme}://{request.url.netloc}",
        request.url.scheme == "https",
    )
    try:
        answer = service(message, context)
    except Exception:  # a bug must not take the connection down without an answer
        log.exception("TAXII service failed on %s", type(message).__name__)
        answer = status(message, tm.ST_FAILURE, "internal error; see the server log")
    return _respond(answer, message.version, request)


def chunks(header: tm.PollResponse, blocks: Iterable[tm.ContentBlock]) -> Iterator[bytes]:
    """A Poll_Response streamed one content block at a time."""
    return tm.iter_poll_response_xml(header, blocks)
