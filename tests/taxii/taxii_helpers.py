"""Shared test helpers for feedgate.taxii.messages: sample paths, XSD validation, full examples
of every message type in both versions, and a comparison that treats XML payloads as trees.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import libtaxii
from lxml import etree

from feedgate.taxii import messages as tm
from feedgate.xml import XMLParseError, parse_bytes

DATA = Path(__file__).resolve().parent.parent / "data" / "taxii1"
XSD_DIR = Path(libtaxii.__file__).resolve().parent / "xsd"

V10 = tm.VID_TAXII_XML_10
V11 = tm.VID_TAXII_XML_11


@functools.cache
def schema(version: str) -> etree.XMLSchema:
    """The XML binding schema libtaxii ships for ``version`` (tests may build parsers freely)."""
    name = (
        "TAXII_XMLMessageBinding_Schema_11.xsd"
        if version == V11
        else ("TAXII_XMLMessageBinding_Schema.xsd")
    )
    parser = etree.XMLParser(no_network=True)
    return etree.XMLSchema(etree.parse(str(XSD_DIR / name), parser))


def assert_schema_valid(data: bytes, version: str) -> None:
    xsd = schema(version)
    doc = etree.fromstring(data, etree.XMLParser(no_network=True, resolve_entities=False))
    if not xsd.validate(doc):
        raise AssertionError(f"not valid against the {version} schema: {xsd.error_log}\n{data!r}")


def xml_tree(data: bytes) -> Any:
    """A comparable form of an XML payload that ignores where namespaces are declared."""

    def walk(elem: etree._Element) -> Any:
        return (
            elem.tag,
            tuple(sorted(elem.attrib.items())),
            elem.text,
            tuple((walk(c), c.tail) for c in elem),
        )

    return walk(parse_bytes(data))


def canonical(value: Any) -> Any:
    """``value`` with every XML payload replaced by :func:`xml_tree`, for equality checks.

    A round trip keeps XML payloads equivalent but may move namespace declarations (the
    ones inherited from the TAXII envelope become explicit), so byte equality is too strict.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            tuple(canonical(getattr(value, f.name)) for f in dataclasses.fields(value)),
        )
    if isinstance(value, tuple):
        return tuple(canonical(v) for v in value)
    if isinstance(value, bytes | str) and value.lstrip()[:1] in (b"<", "<"):
        raw = value.encode() if isinstance(value, str) else value
        try:
            return ("xml", xml_tree(raw))
        except XMLParseError:
            return value
    return value


def roundtrip(msg: tm.Message) -> tm.Message:
    return tm.parse(msg.to_xml())


# --- example values ------------------------------------------------------------------------

T0 = datetime(2014, 12, 19, 0, 0, tzinfo=UTC)
T1 = datetime(2014, 12, 19, 12, 0, 30, 123456, tzinfo=timezone(timedelta(hours=-4)))
T2 = datetime(2015, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30)))

STIX = (
    b'<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" '
    b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="example:Package-1" '
    b'version="1.1.1"><stix:STIX_Header><stix:Title>Watchlist \xc3\xa9</stix:Title>'
    b"</stix:STIX_Header></stix:STIX_Package>"
)
QUERY = (
    b'<tdq:Default_Query xmlns:tdq="http://taxii.mitre.org/query/taxii_default_query-1" '
    b'targeting_expression_id="urn:stix.mitre.org:xml:1.1.1"><tdq:Criteria operator="AND">'
    b'<tdq:Criterion negate="false"><tdq:Target>**/Simple_Hash_Value</tdq:Target>'
    b'<tdq:Test capability_id="urn:taxii.mitre.org:query:capability:core-1" '
    b'relationship="equals"><tdq:Parameter name="value">AAAA</tdq:Parameter></tdq:Test>'
    b"</tdq:Criterion></tdq:Criteria></tdq:Default_Query>"
)
QUERY_INFO = (
    b'<tdq:Default_Query_Info xmlns:tdq="http://taxii.mitre.org/query/taxii_default_query-1">'
    b'<tdq:Targeting_Expression_Info targeting_expression_id="urn:stix.mitre.org:xml:1.1.1">'
    b"<tdq:Preferred_Scope>**/Simple_Hash_Value</tdq:Preferred_Scope>"
    b"</tdq:Targeting_Expression_Info>"
    b"<tdq:Capability_Module>urn:taxii.mitre.org:query:capability:core-1</tdq:Capability_Module>"
    b"</tdq:Default_Query_Info>"
)
HEADERS = (
    tm.ExtendedHeader(name="urn:feedgate:test:header", value="hello"),
    tm.ExtendedHeader(name="urn:feedgate:test:other", value="a < b & c"),
)


def _contact(address: str, version: str) -> tm.ServiceContact:
    return tm.ServiceContact(
        protocol_binding=tm.VID_TAXII_HTTPS_10,
        address=address,
        message_bindings=(version,),
    )


def _blocks(version: str) -> tuple[tm.ContentBlock, ...]:
    v11 = version == V11
    return (
        tm.ContentBlock(
            content_binding=tm.ContentBinding(
                binding_id=tm.CB_STIX_XML_111, subtypes=("sub-1",) if v11 else ()
            ),
            content=STIX,
            timestamp_label=T1,
            message="first block" if v11 else None,
            padding="     ",
        ),
        tm.ContentBlock(
            content_binding=tm.ContentBinding(binding_id="urn:example:text"),
            content="plain text with <markup> & ampersands, not XML",
        ),
        tm.ContentBlock(
            content_binding=tm.ContentBinding(binding_id="urn:example:empty"), content=b""
        ),
    )


def examples_11() -> list[tm.Message]:
    """Every TAXII 1.1 message type, with every field set (valid against the 1.1 schema)."""
    contact = _contact("https://example.com/poll/", V11)
    push = tm.PushParameters(
        protocol_binding=tm.VID_TAXII_HTTPS_10,
        address="https://client.example.com/inbox/",
        message_binding=V11,
    )
    bindings = (
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_111, subtypes=("a", "b")),
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_12),
    )
    query = tm.Query(format_id=tm.FID_TAXII_DEFAULT_QUERY_10, content=QUERY)
    return [
        tm.DiscoveryRequest(message_id="urn:uuid:1", extended_headers=HEADERS),
        tm.DiscoveryResponse(
            message_id="2",
            in_response_to="urn:uuid:1",
            service_instances=(
                tm.ServiceInstance(
                    service_type=tm.SVC_INBOX,
                    services_version=tm.VID_TAXII_SERVICES_11,
                    protocol_binding=tm.VID_TAXII_HTTPS_10,
                    address="https://example.com/inbox/",
                    message_bindings=(V11, V10),
                    available=True,
                    content_bindings=bindings,
                    message="The inbox",
                ),
                tm.ServiceInstance(
                    service_type=tm.SVC_POLL,
                    services_version=tm.VID_TAXII_SERVICES_11,
                    protocol_binding=tm.VID_TAXII_HTTP_10,
                    address="http://example.com/poll/",
                    message_bindings=(V11,),
                    available=False,
                    supported_queries=(
                        tm.Query(format_id=tm.FID_TAXII_DEFAULT_QUERY_10, content=QUERY_INFO),
                    ),
                ),
                tm.ServiceInstance(
                    service_type=tm.SVC_COLLECTION_MANAGEMENT,
                    services_version=tm.VID_TAXII_SERVICES_11,
                    protocol_binding=tm.VID_TAXII_HTTPS_10,
                    address="https://example.com/collections/",
                    message_bindings=(V11,),
                ),
            ),
        ),
        tm.CollectionInformationRequest(message_id="3"),
        tm.CollectionInformationResponse(
            message_id="4",
            in_response_to="3",
            extended_headers=HEADERS[:1],
            collections=(
                tm.Collection(
                    collection_name="user_AlienVault",
                    description="Data feed for user: AlienVault",
                    collection_type=tm.CT_DATA_FEED,
                    available=True,
                    volume=42,
                    content_bindings=bindings,
                    push_methods=(
                        tm.PushMethod(
                            protocol_binding=tm.VID_TAXII_HTTPS_10, message_bindings=(V11,)
                        ),
                    ),
                    polling_services=(contact, _contact("https://example.com/poll2/", V11)),
                    subscription_services=(_contact("https://example.com/manage/", V11),),
                    receiving_inbox_services=(
                        tm.InboxService(
                            protocol_binding=tm.VID_TAXII_HTTPS_10,
                            address="https://example.com/inbox/",
                            message_bindings=(V11,),
                            content_bindings=bindings[:1],
                        ),
                    ),
                ),
                tm.Collection(collection_name="a-set", collection_type=tm.CT_DATA_SET),
            ),
        ),
        tm.ManageCollectionSubscriptionRequest(
            message_id="5",
            collection_name="user_AlienVault",
            action=tm.ACT_SUBSCRIBE,
            subscription_parameters=tm.SubscriptionParameters(
                response_type=tm.RT_COUNT_ONLY, content_bindings=bindings, query=query
            ),
            push_parameters=push,
        ),
        tm.ManageCollectionSubscriptionRequest(
            message_id="6", collection_name="c", action=tm.ACT_PAUSE, subscription_id="s-1"
        ),
        tm.ManageCollectionSubscriptionResponse(
            message_id="7",
            in_response_to="5",
            collection_name="user_AlienVault",
            message="Subscribed",
            subscriptions=(
                tm.SubscriptionInstance(
                    subscription_id="s-1",
                    status=tm.SS_PAUSED,
                    subscription_parameters=tm.SubscriptionParameters(content_bindings=bindings),
                    push_parameters=push,
                    poll_instances=(contact, contact),
                ),
                tm.SubscriptionInstance(subscription_id="s-2", status=tm.SS_UNSUBSCRIBED),
            ),
        ),
        tm.PollRequest(
            message_id="8",
            collection_name="user_AlienVault",
            exclusive_begin_timestamp=T0,
            inclusive_end_timestamp=T1,
            poll_parameters=tm.PollParameters(
                allow_asynch=True,
                response_type=tm.RT_FULL,
                content_bindings=bindings,
                query=query,
                delivery_parameters=push,
            ),
        ),
        tm.PollRequest(message_id="9", collection_name="c", subscription_id="s-1"),
        tm.PollResponse(
            message_id="10",
            in_response_to="8",
            collection_name="user_AlienVault",
            more=True,
            result_id="result-1",
            result_part_number=2,
            subscription_id="s-1",
            exclusive_begin_timestamp=T0,
            inclusive_end_timestamp=T2,
            record_count=tm.RecordCount(count=10, partial=True),
            message="part two",
            content_blocks=_blocks(V11),
        ),
        tm.PollResponse(message_id="11", in_response_to="9", collection_name="c"),
        tm.PollFulfillment(
            message_id="12", collection_name="c", result_id="result-1", result_part_number=3
        ),
        tm.InboxMessage(
            message_id="13",
            message="Here you are",
            result_id="result-1",
            destination_collection_names=("one", "two"),
            source_subscription=tm.SourceSubscription(
                collection_name="c",
                subscription_id="s-1",
                exclusive_begin_timestamp=T0,
                inclusive_end_timestamp=T1,
            ),
            record_count=tm.RecordCount(count=3),
            content_blocks=_blocks(V11),
        ),
        tm.StatusMessage(
            message_id="14",
            in_response_to="8",
            status_type=tm.ST_PENDING,
            details=(
                tm.StatusDetail(name=tm.SD_ESTIMATED_WAIT, value="5"),
                tm.StatusDetail(name=tm.SD_RESULT_ID, value="result-1"),
                tm.StatusDetail(name=tm.SD_WILL_PUSH, value="false"),
            ),
            message="Come back later",
        ),
        tm.StatusMessage(
            message_id="15",
            in_response_to="8",
            status_type=tm.ST_UNSUPPORTED_CONTENT,
            details=(
                tm.StatusDetail(name=tm.SD_SUPPORTED_CONTENT, value=tm.CB_STIX_XML_111),
                tm.StatusDetail(name=tm.SD_SUPPORTED_CONTENT, value=tm.CB_STIX_XML_12),
            ),
        ),
        tm.StatusMessage(message_id="16", in_response_to="8", status_type=tm.ST_UNAUTHORIZED),
    ]


def examples_10() -> list[tm.Message]:
    """Every TAXII 1.0 message type, with every field 1.0 has (valid against the 1.0 schema)."""
    contact = _contact("https://example.com/poll/", V10)
    push = tm.PushParameters(
        protocol_binding=tm.VID_TAXII_HTTPS_10,
        address="https://client.example.com/inbox/",
        message_binding=V10,
        content_bindings=(tm.ContentBinding(binding_id=tm.CB_STIX_XML_101),),
    )
    bindings = (
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_10),
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_101),
    )
    return [
        tm.DiscoveryRequest(message_id="1", version=V10, extended_headers=HEADERS),
        tm.DiscoveryResponse(
            message_id="2",
            in_response_to="1",
            version=V10,
            service_instances=(
                tm.ServiceInstance(
                    service_type=tm.SVC_INBOX,
                    services_version=tm.VID_TAXII_SERVICES_10,
                    protocol_binding=tm.VID_TAXII_HTTPS_10,
                    address="https://example.com/inbox/",
                    message_bindings=(V10,),
                    available=True,
                    content_bindings=bindings,
                    message="The inbox",
                ),
                tm.ServiceInstance(
                    service_type=tm.SVC_FEED_MANAGEMENT,
                    services_version=tm.VID_TAXII_SERVICES_10,
                    protocol_binding=tm.VID_TAXII_HTTP_10,
                    address="http://example.com/feeds/",
                    message_bindings=(V10,),
                ),
            ),
        ),
        tm.CollectionInformationRequest(message_id="3", version=V10),
        tm.CollectionInformationResponse(
            message_id="4",
            in_response_to="3",
            version=V10,
            collections=(
                tm.Collection(
                    collection_name="feed-1",
                    description="A feed",
                    available=False,
                    content_bindings=bindings,
                    push_methods=(
                        tm.PushMethod(
                            protocol_binding=tm.VID_TAXII_HTTPS_10, message_bindings=(V10,)
                        ),
                    ),
                    polling_services=(contact,),
                    subscription_services=(_contact("https://example.com/manage/", V10),),
                ),
                tm.Collection(
                    collection_name="feed-2",
                    content_bindings=bindings[:1],
                    polling_services=(contact,),
                ),
            ),
        ),
        tm.ManageCollectionSubscriptionRequest(
            message_id="5",
            version=V10,
            collection_name="feed-1",
            action=tm.ACT_SUBSCRIBE,
            push_parameters=push,
        ),
        tm.ManageCollectionSubscriptionRequest(
            message_id="6",
            version=V10,
            collection_name="feed-1",
            action=tm.ACT_UNSUBSCRIBE,
            subscription_id="s-1",
        ),
        tm.ManageCollectionSubscriptionResponse(
            message_id="7",
            in_response_to="5",
            version=V10,
            collection_name="feed-1",
            message="Subscribed",
            subscriptions=(
                tm.SubscriptionInstance(
                    subscription_id="s-1", push_parameters=push, poll_instances=(contact,)
                ),
                tm.SubscriptionInstance(subscription_id="s-2"),
            ),
        ),
        tm.PollRequest(
            message_id="8",
            version=V10,
            collection_name="feed-1",
            subscription_id="s-1",
            exclusive_begin_timestamp=T0,
            inclusive_end_timestamp=T1,
            content_bindings=bindings,
        ),
        tm.PollResponse(
            message_id="9",
            in_response_to="8",
            version=V10,
            collection_name="feed-1",
            subscription_id="s-1",
            message="Here",
            inclusive_begin_timestamp=T0,
            inclusive_end_timestamp=T2,
            content_blocks=_blocks(V10),
        ),
        tm.InboxMessage(
            message_id="10",
            version=V10,
            message="Pushed",
            source_subscription=tm.SourceSubscription(
                collection_name="feed-1",
                subscription_id="s-1",
                inclusive_begin_timestamp=T0,
                inclusive_end_timestamp=T1,
            ),
            content_blocks=_blocks(V10),
        ),
        tm.StatusMessage(
            message_id="11",
            in_response_to="10",
            version=V10,
            status_type=tm.ST_RETRY,
            detail_text="2014-09-05T17:01:32.808-04:00",
            message="Try again later",
        ),
        tm.StatusMessage(
            message_id="12", in_response_to="10", version=V10, status_type=tm.ST_SUCCESS
        ),
    ]


def run_taxii(command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``taxii-<command> args...`` in a subprocess (this worktree's code, no colours)."""
    script = (
        "import sys; from feedgate.taxii.cli import command_main;"
        f" sys.exit(command_main({command!r})(None, 'taxii-{command}'))"
    )
    env = {**os.environ, "NO_COLOR": "1", "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
