"""TaxiiClient.poll_not_found_hint: a poll path that answers 404 gets the poll services that
discovery at the same host lists, within a bounded time, and never an error of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from scripted_server import Answer, Request, ScriptedServer
from taxii_helpers import run_taxii

from feedgate.taxii import messages as tm
from feedgate.taxii.client import TaxiiClient, TaxiiError

NOT_FOUND = Answer(404, b"<html><title>404 Not Found</title></html>", {"Content-Type": "text/html"})


def discovery(request: Request, *addresses: str) -> Answer:
    asked = tm.parse(request.body)
    services = tuple(
        tm.ServiceInstance(
            service_type=tm.SVC_POLL,
            services_version=tm.VID_TAXII_SERVICES_11,
            protocol_binding=tm.VID_TAXII_HTTP_10,
            address=address,
            message_bindings=(tm.VID_TAXII_XML_11,),
        )
        for address in addresses
    )
    reply = tm.DiscoveryResponse(
        message_id="1", in_response_to=asked.message_id, service_instances=services
    )
    return Answer(body=reply.to_xml())


def client(server: ScriptedServer, **kwargs: object) -> TaxiiClient:
    host, port = server.url.removeprefix("http://").split(":")
    return TaxiiClient(host=host, port=int(port), retries=0, **kwargs)  # type: ignore[arg-type]


def polled_error(taxii: TaxiiClient, path: str) -> TaxiiError:
    with pytest.raises(TaxiiError) as info:
        list(taxii.poll("feed", uri=path))
    return info.value


def test_a_mistyped_poll_path_gets_the_poll_services_discovery_lists() -> None:
    def script(request: Request) -> Answer:
        if request.path == "/taxii/discovery":
            return discovery(request, f"{server.url}/taxii/poll", "https://elsewhere.test/poll")
        return NOT_FOUND

    server = ScriptedServer(script)
    with server, client(server) as taxii:
        error = polled_error(taxii, "/taxi/poll")
        hint = taxii.poll_not_found_hint(error, "/taxi/poll", check="--poll-path")
    assert hint == (
        f"HTTP 404 at /taxi/poll: check --poll-path; discovery at {server.url}/taxii/discovery"
        " lists poll services at /taxii/poll, https://elsewhere.test/poll"
    )
    # the poll, then discovery next to the poll path, then at the usual place: one host only
    assert [r.path for r in server.requests] == [
        "/taxi/poll",
        "/taxi/discovery",
        "/taxii/discovery",
    ]


def test_the_sources_discovery_path_is_asked_first() -> None:
    def script(request: Request) -> Answer:
        if request.path == "/feeds/disco":
            return discovery(request, "/feeds/poll")
        return NOT_FOUND

    server = ScriptedServer(script)
    with server, client(server, discovery_path="/feeds/disco") as taxii:
        error = polled_error(taxii, "/taxi/poll")
        hint = taxii.poll_not_found_hint(error, "/taxi/poll")
    assert hint is not None and hint.endswith("lists poll services at /feeds/poll")
    assert [r.path for r in server.requests] == ["/taxi/poll", "/feeds/disco"]


def test_no_discovery_anywhere_still_says_what_to_check() -> None:
    server = ScriptedServer(lambda _request: NOT_FOUND)
    with server, client(server) as taxii:
        error = polled_error(taxii, "/taxi/poll")
        hint = taxii.poll_not_found_hint(error, "/taxi/poll", check="--path")
    assert hint == (
        "HTTP 404 at /taxi/poll: check --path (no discovery service answered at"
        " /taxi/discovery, /taxii/discovery, /services/discovery to list the poll services)"
    )


@pytest.fixture
def released() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def test_a_silent_discovery_service_is_waited_for_a_bounded_time(
    released: threading.Event,
) -> None:
    def silent() -> Iterator[bytes]:
        released.wait(60)
        yield b""

    def script(request: Request) -> Answer:
        return NOT_FOUND if request.path == "/taxi/poll" else Answer(200, silent())

    server = ScriptedServer(script)
    with server, client(server) as taxii:
        error = polled_error(taxii, "/taxi/poll")
        began = time.monotonic()
        hint = taxii.poll_not_found_hint(error, "/taxi/poll", timeout=0.3)
        took = time.monotonic() - began
    assert hint is not None and "no discovery service answered" in hint
    assert took < 3 * 0.3 + 2  # three tries of one timeout each, and some slack


def test_other_errors_get_no_hint() -> None:
    server = ScriptedServer(lambda _r: Answer(500, b"oops", {"Content-Type": "text/plain"}))
    with server, client(server) as taxii:
        error = polled_error(taxii, "/taxii/poll")
        assert taxii.poll_not_found_hint(error, "/taxii/poll") is None
        assert taxii.poll_not_found_hint(ValueError("x"), "/taxii/poll") is None
    assert len(server.requests) == 1


def test_taxii_poll_says_it_for_a_mistyped_path() -> None:
    def script(request: Request) -> Answer:
        if request.path == "/taxii/discovery":
            return discovery(request, f"{server.url}/taxii/poll")
        return NOT_FOUND

    server = ScriptedServer(script)
    with server:
        done = run_taxii("poll", "--path", f"{server.url}/taxi/poll", "-c", "feed")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].endswith(
        f"ERROR: HTTP 404 at /taxi/poll: check --path; discovery at {server.url}/taxii/discovery"
        " lists poll services at /taxii/poll"
    )
