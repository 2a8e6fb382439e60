"""The pure formatting functions of the taxii-* CLIs: entity -> cabby's text, XML, JSON.

cabby prints libtaxii's ``to_text()`` / ``to_xml()``; libtaxii is a test dependency, so it is the
oracle here: every message in the libtaxii and feedgate example sets is read by both libraries
and each entity must print the same. A few hand-written expectations pin the format itself.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import libtaxii.messages_10 as lt10
import libtaxii.messages_11 as lt11
import pytest
from lxml import etree
from taxii_helpers import examples_10, examples_11
from test_messages_libtaxii import libtaxii_10, libtaxii_11, without_empty_content

from feedgate.taxii import messages as tm
from feedgate.taxii.cli import _format as fmt

V10, V11 = tm.VID_TAXII_XML_10, tm.VID_TAXII_XML_11


def _both(xml: bytes, version: str) -> tuple[tm.Message, Any]:
    reader = lt11 if version == V11 else lt10
    return tm.parse(xml), reader.get_message_from_xml(xml)


def _messages() -> list[tuple[str, bytes, str]]:
    out = [(f"libtaxii-{i}", m.to_xml(), V11) for i, m in enumerate(libtaxii_11())]
    out += [(f"libtaxii10-{i}", m.to_xml(), V10) for i, m in enumerate(libtaxii_10())]
    # libtaxii cannot read an empty Content: those blocks are left out, as in its own tests
    out += [
        (f"ours-{i}", without_empty_content(m).to_xml(), V11) for i, m in enumerate(examples_11())
    ]
    out += [
        (f"ours10-{i}", without_empty_content(m).to_xml(), V10) for i, m in enumerate(examples_10())
    ]
    return out


MESSAGES = _messages()


@pytest.mark.parametrize(
    ("xml", "version"), [m[1:] for m in MESSAGES], ids=[m[0] for m in MESSAGES]
)
def test_every_entity_prints_as_libtaxii_prints_it(xml: bytes, version: str) -> None:
    ours, theirs = _both(xml, version)
    v11 = version == V11
    if isinstance(ours, tm.DiscoveryResponse):
        assert len(ours.service_instances) == len(theirs.service_instances)
        for mine, their in zip(ours.service_instances, theirs.service_instances, strict=True):
            assert fmt.service_text(mine, v11) == their.to_text()
            if v11:  # cabby's -x: the element on its own, pretty-printed
                assert fmt.service_xml(mine, version) == their.to_xml(pretty_print=True).decode()
    elif isinstance(ours, tm.CollectionInformationResponse):
        items = theirs.collection_informations if v11 else theirs.feed_informations
        for mine, their in zip(ours.collections, items, strict=True):
            assert fmt.collection_text(mine, v11) == their.to_text()
            if v11:
                assert fmt.collection_xml(mine, version) == their.to_xml(pretty_print=True).decode()
    elif isinstance(ours, tm.ManageCollectionSubscriptionResponse):
        assert fmt.subscription_response_text(ours) == theirs.to_text()
    elif isinstance(ours, tm.PollResponse | tm.InboxMessage):
        for mine, their in zip(ours.content_blocks, theirs.content_blocks, strict=True):
            assert fmt.block_text(mine, v11) == their.to_text()
            assert fmt.block_xml(mine, version) == their.to_xml()
            assert fmt.block_xml(mine, version, pretty=True) == their.to_xml(pretty_print=True)
            # --dest-dir: cabby hashes the block's to_xml(), then writes its content
            expected = hashlib.md5(their.to_xml()).hexdigest()
            assert fmt.dest_file_name("my coll/1", mine, version) == f"my-coll-1_{expected}"
            content = their.content
            assert fmt.saved_content(mine, version) == (
                content if isinstance(content, bytes) else content.encode()
            )


def test_every_entity_type_was_compared() -> None:
    kinds = {type(tm.parse(xml)).__name__ for _, xml, _ in MESSAGES}
    assert {
        "DiscoveryResponse",
        "CollectionInformationResponse",
        "ManageCollectionSubscriptionResponse",
        "PollResponse",
        "InboxMessage",
    } <= kinds


# --- hand-written expectations ------------------------------------------------------------

INBOX = tm.ServiceInstance(
    service_type=tm.SVC_INBOX,
    services_version=tm.VID_TAXII_SERVICES_11,
    protocol_binding=tm.VID_TAXII_HTTP_10,
    address="http://example.test/inbox",
    message_bindings=(V11,),
    available=True,
    content_bindings=(
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_111),
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_12, subtypes=("x", "y")),
    ),
)


def test_service_text_11() -> None:
    assert fmt.service_text(INBOX, True) == (
        "=== Service Instance ===\n"
        "  Service Type: INBOX\n"
        "  Service Version: urn:taxii.mitre.org:services:1.1\n"
        "  Protocol Binding: urn:taxii.mitre.org:protocol:http:1.0\n"
        "  Service Address: http://example.test/inbox\n"
        "  Message Binding: urn:taxii.mitre.org:message:xml:1.1\n"
        "  Inbox Service AC: ['urn:stix.mitre.org:xml:1.1.1', 'urn:stix.mitre.org:xml:1.2>x,y']\n"
        "  Available: True\n"
        "  Message: None\n"
    )


def test_service_text_10_keeps_libtaxii_quirks() -> None:
    poll = tm.ServiceInstance(
        service_type=tm.SVC_POLL,
        services_version=tm.VID_TAXII_SERVICES_10,
        protocol_binding=tm.VID_TAXII_HTTP_10,
        address="http://example.test/poll",
        message_bindings=(V10,),
    )
    text = fmt.service_text(poll, False)
    assert text.startswith("=== Service Instance===\n")  # sic
    assert "  Inbox Service Accepts: None\n" in text  # printed for every service type
    assert "  Available: None\n" in text


def test_collection_text_11() -> None:
    collection = tm.Collection(
        collection_name="collection-a",
        description="",
        available=True,
        volume=0,
        content_bindings=(tm.ContentBinding(binding_id=tm.CB_STIX_XML_111),),
        polling_services=(
            tm.ServiceContact(
                protocol_binding=tm.VID_TAXII_HTTP_10,
                address="http://example.test/poll",
                message_bindings=(V11,),
            ),
        ),
    )
    assert fmt.collection_text(collection, True) == (
        "=== Data Collection Information ===\n"
        "  Collection Name: collection-a\n"
        "  Collection Type: DATA_FEED\n"
        "  Available: True\n"
        "  Collection Description: None\n"  # an empty description reads as None
        "  Supported Content:   urn:stix.mitre.org:xml:1.1.1\n"  # sic: three spaces
        "  === Polling Service Instance ===\n"
        "    Poll Protocol: urn:taxii.mitre.org:protocol:http:1.0\n"
        "    Poll Address: http://example.test/poll\n"
        "    Message Binding: urn:taxii.mitre.org:message:xml:1.1\n"
        "==================================\n\n"
    )


BLOCK = tm.ContentBlock(
    content_binding=tm.ContentBinding(binding_id=tm.CB_STIX_XML_111),
    content=b'<a xmlns="urn:a">\xc3\xa9</a>',
    timestamp_label=datetime(2024, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
)


def test_block_text_11_and_10() -> None:
    assert fmt.block_text(BLOCK, True) == (
        "=== Content Block ===\n"
        "  Content Binding: urn:stix.mitre.org:xml:1.1.1\n"
        "  Content length: 23\n"  # bytes, for XML content
        "  (Content not printed for brevity)\n"
        "  Timestamp Label: 2024-01-02 03:04:05.600000+00:00\n"
        "  Message: None\n"
        "  Padding: None\n"
    )
    text = tm.ContentBlock(content_binding=BLOCK.content_binding, content="é é")
    assert "  Content length: 3\n" in fmt.block_text(text, True)  # characters, for text
    assert fmt.block_text(BLOCK, False) == (
        "=== Content Block ===\n"
        "  Content Binding: urn:stix.mitre.org:xml:1.1.1\n"
        "  Content Length: 23\n"
        "  (Only content length is shown for brevity)\n"
        "  Timestamp Label: 2024-01-02T03:04:05.600000+00:00\n"
        "  Padding: None\n"
    )


def test_dest_file_name_follows_cabby() -> None:
    name = fmt.dest_file_name("user AlienVault/feed.1", BLOCK, V11)
    assert re.fullmatch(r"user-AlienVault-feed-1_[0-9a-f]{32}", name)
    theirs = lt11.ContentBlock(
        lt11.ContentBinding(tm.CB_STIX_XML_111),
        etree.fromstring(BLOCK.content),
        timestamp_label=BLOCK.timestamp_label,
    )
    assert name.endswith(hashlib.md5(theirs.to_xml()).hexdigest())
    assert fmt.dest_file_name(None, BLOCK, V11).startswith("_")


def test_subscription_response_text_11() -> None:
    response = tm.ManageCollectionSubscriptionResponse(
        message_id="2",
        in_response_to="1",
        collection_name="collection-a",
        extended_headers=(tm.ExtendedHeader(name="urn:h", value="v"),),
        subscriptions=(
            tm.SubscriptionInstance(
                subscription_id="s-1",
                subscription_parameters=tm.SubscriptionParameters(
                    content_bindings=(tm.ContentBinding(binding_id=tm.CB_STIX_XML_111),)
                ),
                poll_instances=(
                    tm.ServiceContact(
                        protocol_binding=tm.VID_TAXII_HTTP_10,
                        address="http://example.test/poll",
                        message_bindings=(V11,),
                    ),
                ),
            ),
        ),
    )
    assert fmt.subscription_response_text(response) == (
        "Message Type: Subscription_Management_Response\n"
        "Message ID: 2; In Response To: 1\n"
        "Extended Header: urn:h = v\n"
        "  Collection Name: collection-a\n"
        "  Message: None\n"
        "  === Subscription Instance ===\n"
        "    Status: ACTIVE\n"
        "    Subscription ID: s-1\n"
        "    === Subscription_Parameters ===\n"
        "  Content Binding: urn:stix.mitre.org:xml:1.1.1\n"  # sic: libtaxii's indentation
        "      Response type: FULL\n"
        "    === Poll Instance ===\n"
        "      Protocol Binding: urn:taxii.mitre.org:protocol:http:1.0\n"
        "      Address: http://example.test/poll\n"
        "      Message Binding: urn:taxii.mitre.org:message:xml:1.1\n"
    )


def test_status_text_is_cabbys_server_error() -> None:
    status = tm.StatusMessage(
        message_id="2",
        in_response_to="1",
        status_type=tm.ST_NOT_FOUND,
        details=(tm.StatusDetail(name=tm.SD_ITEM, value="nope"),),
        message="Requested collection was not found",
    )
    assert fmt.status_text(status) == (
        "Server Error: NOT_FOUND: ITEM=nope; Requested collection was not found"
    )
    bare = tm.StatusMessage(message_id="2", in_response_to="1", status_type=tm.ST_UNAUTHORIZED)
    assert fmt.status_text(bare) == "Server Error: UNAUTHORIZED: "
    retry = tm.StatusMessage(
        message_id="2",
        in_response_to="1",
        status_type=tm.ST_RETRY,
        details=(tm.StatusDetail(name=tm.SD_ESTIMATED_WAIT, value="30"),),
    )
    assert fmt.status_text(retry) == "Server Error: RETRY: ESTIMATED_WAIT=30"
    many = tm.StatusMessage(
        message_id="2",
        in_response_to="1",
        status_type=tm.ST_UNSUPPORTED_MESSAGE,
        details=tuple(tm.StatusDetail(name=tm.SD_SUPPORTED_BINDING, value=v) for v in "ab"),
    )
    assert (
        fmt.status_text(many) == "Server Error: UNSUPPORTED_MESSAGE: SUPPORTED_BINDING=['a', 'b']"
    )
    # TAXII 1.0: cabby crashes on the free-text detail; we show it
    v10 = tm.StatusMessage(
        message_id="2",
        in_response_to="1",
        version=V10,
        status_type=tm.ST_RETRY,
        detail_text="in a while",
        message="m",
    )
    assert fmt.status_text(v10) == "Server Error: RETRY: in a while; m"


def test_jsonable_blocks_and_services() -> None:
    data = fmt.jsonable(BLOCK)
    assert json.loads(json.dumps(data)) == {
        "content_binding": {"binding_id": tm.CB_STIX_XML_111, "subtypes": []},
        "content": '<a xmlns="urn:a">é</a>',
        "timestamp_label": "2024-01-02T03:04:05.600000+00:00",
        "message": None,
        "padding": None,
    }
    binary = tm.ContentBlock(content_binding=BLOCK.content_binding, content=b"\xff\x00")
    data = fmt.jsonable(binary)
    assert data["content"] == "/wA=" and data["content_encoding"] == "base64"
    assert fmt.jsonable(INBOX)["content_bindings"][1] == {
        "binding_id": tm.CB_STIX_XML_12,
        "subtypes": ["x", "y"],
    }
