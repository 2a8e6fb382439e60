"""Every request the client writes is valid against its version's XML binding schema.

A TAXII 1.0 server checks requests against the 1.0 schema (OpenTAXII does, and answers
BAD_MESSAGE otherwise; see test_client_opentaxii.py), so each message the client can send is
sent here, in both versions, to a real HTTP server that records it, and validated with the XSDs
libtaxii ships (taxii_helpers.schema).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from scripted_server import Answer, Request, ScriptedServer
from taxii_helpers import V10, V11, assert_schema_valid

from feedgate.taxii import messages as tm
from feedgate.taxii.client import TaxiiClient

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def answer(request: Request) -> Answer:
    """A valid answer of the request's version, so that every client call completes."""
    asked = tm.parse(request.body)
    head = {"message_id": "7", "in_response_to": asked.message_id, "version": asked.version}
    reply: tm.Message
    match asked:
        case tm.DiscoveryRequest():
            reply = tm.DiscoveryResponse(**head)
        case tm.CollectionInformationRequest():
            reply = tm.CollectionInformationResponse(**head)
        case tm.PollRequest():
            end = {"inclusive_end_timestamp": T0} if asked.version == V10 else {}
            reply = tm.PollResponse(**head, collection_name=asked.collection_name, **end)
        case tm.ManageCollectionSubscriptionRequest():
            reply = tm.ManageCollectionSubscriptionResponse(
                **head,
                collection_name=asked.collection_name,
                subscriptions=(tm.SubscriptionInstance(subscription_id="1"),),
            )
        case _:
            reply = tm.StatusMessage(**head, status_type=tm.ST_SUCCESS)
    return Answer(body=reply.to_xml())


CALLS: dict[str, Callable[[TaxiiClient], object]] = {
    "discovery": lambda c: c.discover_services(uri="/discovery"),
    "collections": lambda c: c.get_collections(uri="/collections"),
    "poll": lambda c: list(
        c.poll("feed", T0, T0 + timedelta(days=1), content_bindings=[tm.CB_STIX_XML_111], uri="/p")
    ),
    "poll subscription": lambda c: list(c.poll("feed", subscription_id="1", uri="/p")),
    "poll raw": lambda c: list(c.poll_raw("feed", T0, uri="/p")),
    "push": lambda c: c.push("<x/>", tm.CB_STIX_XML_111, uri="/inbox", timestamp=T0),
    "push subscription": lambda c: c.push(
        "text", tm.CB_STIX_XML_111, subscription_id="1", uri="/inbox", collection_names=["feed"]
    ),
    "subscribe": lambda c: c.subscribe("feed", uri="/manage"),
    "status": lambda c: c.get_subscription_status("feed", "1", uri="/manage"),
    "unsubscribe": lambda c: c.unsubscribe("feed", "1", uri="/manage"),
}


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_every_request_is_schema_valid(version: str, call: str) -> None:
    with ScriptedServer(answer) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with TaxiiClient(host=host, port=int(port), version=version, retries=0) as client:
            CALLS[call](client)
    assert server.requests
    for request in server.requests:
        assert_schema_valid(request.body, V10 if version == "1.0" else V11)


def test_taxii_10_message_ids_are_digits_and_differ() -> None:
    with ScriptedServer(answer) as server:
        host, port = server.url.removeprefix("http://").split(":")
        with TaxiiClient(host=host, port=int(port), version="1.0", retries=0) as client:
            for _ in range(3):
                client.discover_services(uri="/discovery")
    ids = [tm.parse(r.body).message_id for r in server.requests]
    assert all(i.isdigit() for i in ids) and len(set(ids)) == len(ids)
