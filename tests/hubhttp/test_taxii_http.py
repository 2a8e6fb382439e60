"""The TAXII HTTP binding layer of the hub, driven by our own client over a real socket."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette

from feedgate.asgi_server import serving
from feedgate.hub.taxii_http import Answer, Context, chunks, endpoint, status
from feedgate.taxii import messages as tm
from feedgate.taxii.client import StatusError, TaxiiClient


def echo_service(message: tm.Message, context: Context) -> Answer:
    """Discovery answers with the caller's name; polls stream N blocks; the rest fails."""
    if isinstance(message, tm.DiscoveryRequest):
        who = context.credentials
        name = who.username if who else "anonymous"
        return tm.DiscoveryResponse(
            message_id="d",
            in_response_to=message.message_id,
            service_instances=(
                tm.ServiceInstance(
                    service_type=tm.SVC_POLL,
                    services_version=tm.VID_TAXII_SERVICES_11,
                    protocol_binding=tm.VID_TAXII_HTTP_10,
                    address=f"{context.base_url}/poll/{name}",
                    message_bindings=(tm.VID_TAXII_XML_11,),
                ),
            ),
        )
    if isinstance(message, tm.PollRequest):
        header = tm.PollResponse(
            message_id="p", in_response_to=message.message_id, collection_name="c"
        )
        return chunks(header, _blocks(int(message.collection_name)))
    if isinstance(message, tm.InboxMessage):
        raise RuntimeError("a bug in a service")
    return status(message, tm.ST_NOT_FOUND, "no such thing", **{tm.SD_ITEM: "x"})


def _blocks(n: int) -> Iterator[tm.ContentBlock]:
    for i in range(n):
        yield tm.ContentBlock(
            content_binding=tm.ContentBinding(binding_id=tm.CB_STIX_XML_111),
            content=b'<x:y xmlns:x="urn:x">%d</x:y>' % i,
        )


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = Starlette(
        routes=[endpoint("/taxii/discovery", echo_service), endpoint("/taxii/poll", echo_service)]
    )
    with serving(app) as base:
        yield base


def _client(url: str, **kwargs: object) -> TaxiiClient:
    host, port = url.removeprefix("http://").split(":")
    return TaxiiClient(host=host, port=int(port), discovery_path="/taxii/discovery", **kwargs)  # type: ignore[arg-type]


def test_basic_credentials_reach_the_service(url: str) -> None:
    with _client(url, username="KEY", password="x") as taxii:
        assert taxii.discover_services()[0].address == f"{url}/poll/KEY"


def test_streamed_poll(url: str) -> None:
    with _client(url) as taxii:
        assert len(list(taxii.poll("2500", uri="/taxii/poll"))) == 2500


def test_status_and_failures_are_taxii_answers(url: str) -> None:
    with _client(url) as taxii:
        with pytest.raises(StatusError) as info:
            taxii.get_collections(uri="/taxii/poll")
        assert info.value.status_type == tm.ST_NOT_FOUND
        with pytest.raises(StatusError) as info:
            taxii.push("<x/>", tm.CB_STIX_XML_111, uri="/taxii/poll")
        assert info.value.status_type == tm.ST_FAILURE


def test_garbage_is_bad_message(url: str) -> None:
    import httpx

    answer = httpx.post(f"{url}/taxii/poll", content=b"<not-taxii/>")
    parsed = tm.parse(answer.content)
    assert isinstance(parsed, tm.StatusMessage) and parsed.status_type == tm.ST_BAD_MESSAGE
    assert answer.headers["X-TAXII-Content-Type"] == tm.VID_TAXII_XML_11
    hostile = httpx.post(f"{url}/taxii/poll", content=b'<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
    assert tm.parse(hostile.content).status_type == tm.ST_BAD_MESSAGE  # type: ignore[attr-defined]
    assert httpx.get(f"{url}/taxii/poll").status_code == 405
