"""What to say when a poll path answers HTTP 404: which poll services discovery lists.

A mistyped poll path (a vendor's own documentation has ``/taxi/poll``) gets only "HTTP 404 Not
Found". A discovery request at the same host usually knows the right address, so one is sent
(to the client's discovery path, a sibling ``discovery`` of the poll path, then the two usual
places) and the poll services it lists are named. It is a courtesy on the error path: short
timeouts, no retries, no RETRY waits, at most a few requests, only to the poll URL's host and
port, and any failure of its own ends in the plain advice, never in an error of its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final
from urllib.parse import SplitResult, urljoin, urlsplit

from feedgate.redaction import hide_url_credentials

from . import messages as tm
from ._transport import Transport, TransportError

if TYPE_CHECKING:
    from .client import TaxiiClient

#: Where discovery services usually are (OTX and the hub; OpenTAXII's default layout).
USUAL_DISCOVERY_PATHS: Final = ("/taxii/discovery", "/services/discovery")
#: At most this many discovery requests, for at most this long in all.
MAX_TRIES: Final = 3
_MAX_ANSWER: Final = 1024**2


def poll_not_found_hint(
    client: TaxiiClient, error: BaseException, url: str, *, check: str, timeout: float
) -> str | None:
    """One line for an HTTP 404 from the poll service at ``url``; None for any other error."""
    if not (isinstance(error, TransportError) and error.http_status == 404):
        return None
    poll = urlsplit(url)
    head = f"HTTP 404 at {poll.path or '/'}: check {check}"
    tried: list[str] = []
    deadline = time.monotonic() + MAX_TRIES * timeout
    for candidate in _candidates(client, url):
        if len(tried) == MAX_TRIES or time.monotonic() > deadline:
            break
        tried.append(urlsplit(candidate).path)
        services = _discover(client, candidate, timeout)
        if services is None:
            continue
        shown = hide_url_credentials(candidate)
        addresses = [_address(s.address, poll) for s in _poll_services(client, services)]
        if not addresses:
            return f"{head}; discovery at {shown} lists no poll service for TAXII {client.version}"
        return f"{head}; discovery at {shown} lists poll services at {', '.join(addresses)}"
    where = ", ".join(tried) or "the host"
    return f"{head} (no discovery service answered at {where} to list the poll services)"


def _candidates(client: TaxiiClient, url: str) -> Iterator[str]:
    """Discovery URLs on the poll URL's own scheme, host and port, each once."""
    poll = urlsplit(url)
    base = f"{poll.scheme}://{poll.netloc}/"
    paths = [client.discovery_path or "", urljoin(poll.path or "/", "discovery")]
    seen: set[str] = set()
    for path in [*paths, *USUAL_DISCOVERY_PATHS]:
        if not path:
            continue
        candidate = urljoin(base, path)
        if not _same_server(urlsplit(candidate), poll) or candidate in seen:
            continue  # only the host that was asked for the poll
        seen.add(candidate)
        yield candidate


def _discover(client: TaxiiClient, url: str, timeout: float) -> list[tm.ServiceInstance] | None:
    """The services discovery at ``url`` lists, or None when it does not answer with them."""
    options = dataclasses.replace(
        client.transport_options, connect_timeout=timeout, read_timeout=timeout, retries=0
    )
    request = tm.DiscoveryRequest(
        message_id=tm.new_message_id(client.message_binding), version=client.message_binding
    )
    try:
        transport = Transport(options)
        try:
            with transport.post(url, request.to_xml(), client.message_binding) as stream:
                data = stream.read(_MAX_ANSWER + 1)
                while len(data) <= _MAX_ANSWER and (chunk := stream.read(64 * 1024)):
                    data += chunk
        finally:
            transport.close()
        if len(data) > _MAX_ANSWER:
            return None
        answer = tm.parse(data)
    except Exception:  # a courtesy: whatever goes wrong here, the poll's own error stands
        return None
    if not isinstance(answer, tm.DiscoveryResponse):
        return None
    return list(answer.service_instances)


def _poll_services(
    client: TaxiiClient, services: list[tm.ServiceInstance]
) -> list[tm.ServiceInstance]:
    return [
        s
        for s in services
        if s.service_type == tm.SVC_POLL
        and (not s.message_bindings or client.message_binding in s.message_bindings)
    ]


def _address(address: str, poll: SplitResult) -> str:
    """A listed address as a path when it is on the host that was polled, else in full."""
    parts = urlsplit(address)
    if not parts.netloc or _same_server(parts, poll):
        return parts.path or "/"
    return hide_url_credentials(address)


def _same_server(a: SplitResult, b: SplitResult) -> bool:
    """Same scheme, host and port (a default port spelled out or not)."""
    ports = {"http": 80, "https": 443}
    try:
        return (a.scheme, a.hostname, a.port or ports.get(a.scheme)) == (
            b.scheme,
            b.hostname,
            b.port or ports.get(b.scheme),
        )
    except ValueError:  # a port that is not a number
        return False
