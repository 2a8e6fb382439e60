"""feedgate.taxii.messages: round trips, the schemas, the Content rule, timestamps, errors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest
from lxml import etree
from taxii_helpers import (
    STIX,
    V10,
    V11,
    assert_schema_valid,
    canonical,
    examples_10,
    examples_11,
    roundtrip,
)

from feedgate.taxii import messages as tm
from feedgate.xml import HostileXMLError, XMLParseError, parse_bytes

NS11 = tm.NS_TAXII_XML_11
NS10 = tm.NS_TAXII_XML_10


def _ids(messages: list[tm.Message]) -> list[str]:
    return [f"{type(m).__name__}-{m.message_id}" for m in messages]


EXAMPLES = [*examples_11(), *examples_10()]


@pytest.mark.parametrize("msg", EXAMPLES, ids=_ids(EXAMPLES))
def test_every_message_round_trips(msg: tm.Message) -> None:
    again = roundtrip(msg)
    assert type(again) is type(msg)
    assert again.version == msg.version
    # XML payloads come back as equivalent trees (inherited namespace declarations become
    # explicit); everything else is equal as is, and a second round trip changes nothing.
    assert canonical(again) == canonical(msg)
    assert roundtrip(again) == again


@pytest.mark.parametrize("msg", EXAMPLES, ids=_ids(EXAMPLES))
def test_every_message_is_valid_against_the_taxii_schema(msg: tm.Message) -> None:
    assert_schema_valid(msg.to_xml(), msg.version)


def test_taxii_10_ids_are_digits_only() -> None:
    # the 1.0 schema's UnsignedIntegerType: a UUID id is refused here, not by the server
    with pytest.raises(tm.TAXIIMessageError, match=r"message_id.*digits only"):
        tm.DiscoveryRequest(message_id="urn:uuid:1", version=V10).to_xml()
    with pytest.raises(tm.TAXIIMessageError, match=r"in_response_to.*digits only"):
        tm.StatusMessage(
            message_id="2", in_response_to="x-1", version=V10, status_type=tm.ST_SUCCESS
        ).to_xml()
    for version in (V10, V11):
        ids = {tm.new_message_id(version) for _ in range(50)}
        assert len(ids) == 50
        for ident in ids:
            assert_schema_valid(
                tm.DiscoveryRequest(message_id=ident, version=version).to_xml(), version
            )
    assert all(tm.new_message_id(V10).isdigit() for _ in range(50))


def test_messages_without_xml_payloads_round_trip_exactly() -> None:
    plain = [m for m in EXAMPLES if not any(p in m.to_xml() for p in (b"<stix:", b"<tdq:"))]
    assert len(plain) > len(EXAMPLES) // 2
    for msg in plain:
        assert roundtrip(msg) == msg, type(msg).__name__


@pytest.mark.parametrize(
    ("msg", "root"),
    [
        (
            tm.CollectionInformationRequest(message_id="1"),
            f"{{{NS11}}}Collection_Information_Request",
        ),
        (
            tm.CollectionInformationRequest(message_id="1", version=V10),
            f"{{{NS10}}}Feed_Information_Request",
        ),
        (
            tm.CollectionInformationResponse(message_id="1", in_response_to="2", version=V10),
            f"{{{NS10}}}Feed_Information_Response",
        ),
        (
            tm.ManageCollectionSubscriptionRequest(
                message_id="1", collection_name="c", action=tm.ACT_STATUS
            ),
            f"{{{NS11}}}Subscription_Management_Request",
        ),
        (
            tm.PollFulfillment(message_id="1", collection_name="c", result_id="r"),
            f"{{{NS11}}}Poll_Fulfillment",
        ),
    ],
)
def test_root_element_names_follow_the_version(msg: tm.Message, root: str) -> None:
    assert parse_bytes(msg.to_xml()).tag == root


def test_version_1_0_uses_feed_names_on_the_wire() -> None:
    request = tm.PollRequest(
        message_id="1", version=V10, collection_name="feed-1", subscription_id="s"
    )
    root = parse_bytes(request.to_xml())
    assert root.get("feed_name") == "feed-1"
    assert root.get("subscription_id") == "s"
    assert root.get("collection_name") is None


def test_to_xml_has_no_declaration_and_is_utf8() -> None:
    msg = tm.StatusMessage(
        message_id="1", in_response_to="2", status_type=tm.ST_FAILURE, message="déjà vu"
    )
    data = msg.to_xml()
    assert data.startswith(b"<taxii_11:Status_Message ")
    assert "déjà vu".encode() in data


# --- the Content rule ------------------------------------------------------------------------


def _content_element(msg: tm.Message) -> etree._Element:
    root = parse_bytes(msg.to_xml())
    found = root.find(f".//{{{NS11}}}Content")
    assert found is not None
    return found


def _inbox(content: tm.ContentBlock) -> tm.InboxMessage:
    return tm.InboxMessage(message_id="1", content_blocks=(content,))


def _block(content: bytes | bytearray | str | etree._Element) -> tm.ContentBlock:
    return tm.ContentBlock(
        content_binding=tm.ContentBinding(binding_id=tm.CB_STIX_XML_12), content=content
    )


def test_xml_content_is_embedded_as_a_child_element() -> None:
    content = _content_element(_inbox(_block(STIX)))
    assert content.text is None
    assert [child.tag for child in content] == ["{http://stix.mitre.org/stix-1}STIX_Package"]


def test_xml_content_read_back_stands_alone_with_inherited_namespaces_explicit() -> None:
    data = (
        b'<t:Inbox_Message xmlns:t="'
        + NS11.encode()
        + b'" xmlns:stix="http://stix.mitre.org/stix-1"'
        b' message_id="1"><t:Content_Block><t:Content_Binding binding_id="x"/><t:Content>\n  '
        b'<stix:STIX_Package id="p"/>\n</t:Content></t:Content_Block></t:Inbox_Message>'
    )
    msg = tm.parse(data)
    assert isinstance(msg, tm.InboxMessage)
    content = msg.content_blocks[0].content
    assert content.startswith(b"<stix:STIX_Package")
    assert b'xmlns:stix="http://stix.mitre.org/stix-1"' in content
    assert not content.endswith(b"\n")  # the tail is not part of the content
    assert parse_bytes(content).get("id") == "p"


def test_text_content_is_escaped_and_read_back_as_bytes() -> None:
    text = "1.2.3.4, <not xml> & more"
    content = _content_element(_inbox(_block(text)))
    assert len(content) == 0
    assert content.text == text
    again = roundtrip(_inbox(_block(text)))
    assert isinstance(again, tm.InboxMessage)
    assert again.content_blocks[0].content == text.encode()


def test_content_may_be_given_as_str_bytes_or_element_and_is_kept_as_bytes() -> None:
    element = parse_bytes(STIX)
    as_str = _block(STIX.decode())
    as_element = _block(element)
    as_bytes = _block(bytearray(STIX))
    for block in (as_str, as_element, as_bytes):
        assert isinstance(block.content, bytes)
        assert canonical(block.content) == canonical(STIX)


def test_str_content_loses_its_xml_declaration() -> None:
    block = _block("<?xml version='1.0' encoding='ISO-8859-1'?>\n<a>é</a>")
    assert block.content == "\n<a>é</a>".encode()
    again = roundtrip(_inbox(block))
    assert isinstance(again, tm.InboxMessage)
    assert parse_bytes(again.content_blocks[0].content).text == "é"


def test_content_with_a_doctype_is_carried_as_text_never_parsed() -> None:
    hostile = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    content = _content_element(_inbox(_block(hostile)))
    assert len(content) == 0
    assert content.text == hostile.decode()


def test_content_that_is_not_utf8_text_is_refused() -> None:
    with pytest.raises(tm.TAXIIMessageError, match="neither XML nor UTF-8"):
        _inbox(_block(b"\xff\xfe binary")).to_xml()


def test_content_with_control_characters_is_refused_clearly() -> None:
    with pytest.raises(tm.TAXIIMessageError, match="characters XML cannot carry"):
        _inbox(_block("bell \x07")).to_xml()


def test_text_fields_with_control_characters_raise_taxii_errors() -> None:
    msg = tm.StatusMessage(message_id="1", in_response_to="2", status_type="X", message="\x00")
    with pytest.raises(tm.TAXIIMessageError, match="Status_Message"):
        msg.to_xml()


def test_content_type_is_checked() -> None:
    with pytest.raises(TypeError):
        _block(42)  # type: ignore[arg-type]


def test_extended_header_values_follow_the_content_rule() -> None:
    msg = tm.DiscoveryRequest(
        message_id="1",
        extended_headers=(tm.ExtendedHeader(name="urn:h", value="<x:y xmlns:x='urn:x'/>"),),
    )
    root = parse_bytes(msg.to_xml())
    header = root.find(f"{{{NS11}}}Extended_Headers/{{{NS11}}}Extended_Header")
    assert header is not None and header[0].tag == "{urn:x}y"
    again = roundtrip(msg)
    assert canonical(again) == canonical(msg)


# --- timestamps --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-12-19T12:00:00Z", datetime(2014, 12, 19, 12, tzinfo=UTC)),
        ("2014-12-19T12:00:00z", datetime(2014, 12, 19, 12, tzinfo=UTC)),
        (
            "2014-10-21T15:21:50.895-04:00",
            datetime(2014, 10, 21, 15, 21, 50, 895000, tzinfo=timezone(timedelta(hours=-4))),
        ),
        ("2014-12-19T12:00:00", datetime(2014, 12, 19, 12, tzinfo=UTC)),  # naive: UTC
        (" 2014-12-19T12:00:00+00:00\n", datetime(2014, 12, 19, 12, tzinfo=UTC)),
    ],
)
def test_timestamps_are_parsed_timezone_aware(text: str, expected: datetime) -> None:
    data = (
        f'<Poll_Request xmlns="{NS11}" message_id="1" collection_name="c">'
        f"<Inclusive_End_Timestamp>{text}</Inclusive_End_Timestamp>"
        "<Subscription_ID>s</Subscription_ID></Poll_Request>"
    ).encode()
    msg = tm.parse(data)
    assert isinstance(msg, tm.PollRequest)
    end = msg.inclusive_end_timestamp
    assert end is not None and end.tzinfo is not None
    assert end == expected
    assert end.utcoffset() == expected.utcoffset()


def test_naive_timestamps_are_written_as_utc() -> None:
    msg = tm.PollRequest(
        message_id="1",
        collection_name="c",
        subscription_id="s",
        inclusive_end_timestamp=datetime(2020, 1, 2, 3, 4, 5),
    )
    assert b"<taxii_11:Inclusive_End_Timestamp>2020-01-02T03:04:05Z<" in msg.to_xml()
    again = roundtrip(msg)
    assert isinstance(again, tm.PollRequest)
    assert again.inclusive_end_timestamp == datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_offsets_the_schema_cannot_express_are_written_in_utc() -> None:
    odd = datetime(2020, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=1, seconds=30)))
    msg = tm.PollRequest(
        message_id="1", collection_name="c", subscription_id="s", inclusive_end_timestamp=odd
    )
    assert_schema_valid(msg.to_xml(), V11)
    again = roundtrip(msg)
    assert isinstance(again, tm.PollRequest)
    assert again.inclusive_end_timestamp == odd


# --- status messages ---------------------------------------------------------------------------


def test_status_details_have_typed_accessors() -> None:
    pending = tm.StatusMessage(
        message_id="1",
        in_response_to="2",
        status_type=tm.ST_PENDING,
        details=(
            tm.StatusDetail(name=tm.SD_ESTIMATED_WAIT, value=" 30 "),
            tm.StatusDetail(name=tm.SD_RESULT_ID, value="r-1"),
            tm.StatusDetail(name=tm.SD_WILL_PUSH, value="true"),
            tm.StatusDetail(name=tm.SD_SUPPORTED_CONTENT, value="a"),
            tm.StatusDetail(name=tm.SD_SUPPORTED_CONTENT, value="b"),
        ),
    )
    assert pending.estimated_wait == 30
    assert pending.result_id == "r-1"
    assert pending.will_push is True
    assert pending.max_part_number is None
    assert pending.detail(tm.SD_ITEM) is None
    assert pending.detail_values(tm.SD_SUPPORTED_CONTENT) == ("a", "b")


def test_malformed_status_details_do_not_hide_the_status() -> None:
    retry = tm.StatusMessage(
        message_id="1",
        in_response_to="2",
        status_type=tm.ST_RETRY,
        details=(
            tm.StatusDetail(name=tm.SD_ESTIMATED_WAIT, value="no way"),
            tm.StatusDetail(name=tm.SD_WILL_PUSH, value="maybe"),
        ),
    )
    again = roundtrip(retry)
    assert isinstance(again, tm.StatusMessage)
    assert again.status_type == tm.ST_RETRY
    assert again.estimated_wait is None
    assert again.will_push is None


@pytest.mark.parametrize(
    "status_type",
    [
        tm.ST_UNAUTHORIZED,
        tm.ST_NOT_FOUND,
        tm.ST_BAD_MESSAGE,
        tm.ST_RETRY,
        tm.ST_INVALID_RESPONSE_PART,
        tm.ST_PENDING,
        tm.ST_SUCCESS,
        tm.ST_FAILURE,
        tm.ST_DENIED,
        tm.ST_UNSUPPORTED_MESSAGE,
        tm.ST_UNSUPPORTED_CONTENT,
        tm.ST_UNSUPPORTED_QUERY,
        tm.ST_DESTINATION_COLLECTION_ERROR,
        tm.ST_ASYNCHRONOUS_POLL_ERROR,
        tm.ST_NETWORK_ERROR,
        "urn:example:custom-status",
    ],
)
def test_status_types_round_trip(status_type: str) -> None:
    msg = tm.StatusMessage(
        message_id="1",
        in_response_to="2",
        status_type=status_type,
        details=(tm.StatusDetail(name=tm.SD_ITEM, value="x"),),
        message="why",
    )
    assert roundtrip(msg) == msg
    assert_schema_valid(msg.to_xml(), V11)


# --- parse errors -----------------------------------------------------------------------------


def _error(data: str) -> str:
    with pytest.raises(tm.TAXIIMessageError) as info:
        tm.parse(data.encode())
    return str(info.value)


def test_unknown_namespace_is_named() -> None:
    message = _error('<Poll_Request xmlns="urn:other" message_id="1"/>')
    assert "not a TAXII 1.0/1.1 message" in message and "urn:other" in message


def test_no_namespace_is_named() -> None:
    assert "in no namespace" in _error('<Poll_Request message_id="1"/>')


def test_unknown_root_is_named() -> None:
    assert "unknown TAXII 1.1 message: root element Poll_Everything" in _error(
        f'<Poll_Everything xmlns="{NS11}" message_id="1"/>'
    )


def test_a_1_1_only_message_in_the_1_0_namespace_is_refused() -> None:
    assert "unknown TAXII 1.0 message: root element Poll_Fulfillment" in _error(
        f'<Poll_Fulfillment xmlns="{NS10}" message_id="1" collection_name="c" result_id="r"/>'
    )


def test_missing_required_attribute_is_named() -> None:
    assert "Status_Message: missing required attribute in_response_to" in _error(
        f'<Status_Message xmlns="{NS11}" message_id="1" status_type="SUCCESS"/>'
    )


def test_missing_required_element_is_named() -> None:
    message = _error(
        f'<Inbox_Message xmlns="{NS11}" message_id="1"><Content_Block>'
        "<Content>x</Content></Content_Block></Inbox_Message>"
    )
    assert "Inbox_Message/Content_Block: missing required element Content_Binding" in message


def test_missing_required_1_0_end_timestamp_is_named() -> None:
    message = _error(
        f'<Poll_Response xmlns="{NS10}" message_id="1" in_response_to="2" feed_name="f"/>'
    )
    assert "Poll_Response: missing required element Inclusive_End_Timestamp" in message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('more="perhaps"', "Poll_Response/@more: expected true or false, got 'perhaps'"),
        (
            'result_part_number="0"',
            "Poll_Response/@result_part_number: expected a positive integer",
        ),
        (
            'result_part_number="x"',
            "Poll_Response/@result_part_number: expected a positive integer",
        ),
        ('result_part_number="' + "9" * 5000 + '"', "expected a positive integer"),
    ],
)
def test_bad_attribute_values_are_named(body: str, expected: str) -> None:
    attributes = f'message_id="1" in_response_to="2" collection_name="c" {body}'
    data = f'<Poll_Response xmlns="{NS11}" {attributes}/>'
    assert expected in _error(data)


def test_bad_element_values_are_named() -> None:
    head = f'<Poll_Response xmlns="{NS11}" message_id="1" in_response_to="2" collection_name="c">'
    assert "Poll_Response/Record_Count: expected a non-negative integer, got '-1'" in _error(
        head + "<Record_Count>-1</Record_Count></Poll_Response>"
    )
    assert "Poll_Response/Inclusive_End_Timestamp: not an ISO 8601 timestamp: 'soon'" in _error(
        head + "<Inclusive_End_Timestamp>soon</Inclusive_End_Timestamp></Poll_Response>"
    )


def test_bad_enumerations_are_named() -> None:
    assert "Subscription_Management_Request/@action: 'PAUSE' is not one of" in _error(
        f'<Subscription_Management_Request xmlns="{NS10}" message_id="1" feed_name="f" '
        'action="PAUSE"/>'
    )
    assert "Poll_Parameters/Response_Type: 'ALL' is not one of FULL, COUNT_ONLY" in _error(
        f'<Poll_Request xmlns="{NS11}" message_id="1" collection_name="c"><Poll_Parameters>'
        "<Response_Type>ALL</Response_Type></Poll_Parameters></Poll_Request>"
    )


def test_hostile_xml_errors_propagate_unchanged() -> None:
    data = (
        b'<!DOCTYPE d [<!ENTITY x "y">]><Discovery_Request xmlns="' + NS11.encode() + b'" '
        b'message_id="&x;"/>'
    )
    with pytest.raises(HostileXMLError):
        tm.parse(data)


def test_not_xml_raises_xml_parse_error() -> None:
    with pytest.raises(XMLParseError):
        tm.parse(b"HTTP/1.1 500 Internal Server Error")
    with pytest.raises(XMLParseError):
        tm.parse(b"")


def test_unknown_children_such_as_signatures_are_skipped() -> None:
    data = (
        f'<Discovery_Request xmlns="{NS11}" message_id="1">'
        f'<ds:Signature xmlns:ds="{tm.NS_XMLDSIG}"/></Discovery_Request>'
    ).encode()
    assert tm.parse(data) == tm.DiscoveryRequest(message_id="1")


def test_the_taxii_message_error_is_a_value_error() -> None:
    assert issubclass(tm.TAXIIMessageError, ValueError)


# --- what a version cannot carry ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        (
            tm.PollResponse(
                message_id="1",
                in_response_to="2",
                version=V10,
                collection_name="f",
                more=True,
                inclusive_end_timestamp=datetime(2020, 1, 1, tzinfo=UTC),
            ),
            "TAXII 1.0 has no Poll_Response/@more",
        ),
        (
            tm.PollResponse(message_id="1", in_response_to="2", version=V10, collection_name="f"),
            "TAXII 1.0 Poll_Response needs inclusive_end_timestamp",
        ),
        (
            tm.PollResponse(
                message_id="1",
                in_response_to="2",
                collection_name="c",
                inclusive_begin_timestamp=datetime(2020, 1, 1, tzinfo=UTC),
            ),
            "TAXII 1.1 has no Inclusive_Begin_Timestamp",
        ),
        (
            tm.PollFulfillment(message_id="1", version=V10, collection_name="c", result_id="r"),
            "TAXII 1.0 has no Poll_Fulfillment",
        ),
        (
            tm.StatusMessage(
                message_id="1",
                in_response_to="2",
                version=V10,
                status_type="X",
                details=(tm.StatusDetail(name="a", value="b"),),
            ),
            "TAXII 1.0 has no named Status_Detail",
        ),
        (
            tm.StatusMessage(message_id="1", in_response_to="2", status_type="X", detail_text="t"),
            "TAXII 1.1 has no free-text Status_Detail",
        ),
        (
            tm.InboxMessage(message_id="1", version=V10, destination_collection_names=("a",)),
            "TAXII 1.0 has no Destination_Collection_Name",
        ),
        (
            tm.PollRequest(message_id="1", collection_name="c"),
            "needs one of subscription_id and poll_parameters",
        ),
        (
            tm.PollRequest(
                message_id="1",
                version=V10,
                collection_name="c",
                poll_parameters=tm.PollParameters(),
            ),
            "TAXII 1.0 has no Poll_Parameters",
        ),
        (
            tm.ManageCollectionSubscriptionRequest(
                message_id="1", version=V10, collection_name="c", action=tm.ACT_PAUSE
            ),
            "action: 'PAUSE' is not valid in TAXII 1.0",
        ),
        (
            tm.DiscoveryResponse(
                message_id="1",
                in_response_to="2",
                version=V10,
                service_instances=(
                    tm.ServiceInstance(
                        service_type=tm.SVC_COLLECTION_MANAGEMENT,
                        services_version=tm.VID_TAXII_SERVICES_10,
                        protocol_binding=tm.VID_TAXII_HTTP_10,
                        address="http://x/",
                        message_bindings=(V10,),
                    ),
                ),
            ),
            "service_type: 'COLLECTION_MANAGEMENT' is not valid in TAXII 1.0",
        ),
        (
            tm.InboxMessage(
                message_id="1",
                content_blocks=(
                    tm.ContentBlock(
                        content_binding=tm.ContentBinding(binding_id="b", subtypes=("1", "2")),
                        content=b"x",
                    ),
                ),
            ),
            "at most one subtype",
        ),
    ],
)
def test_fields_a_version_cannot_carry_are_refused_not_dropped(
    msg: tm.Message, expected: str
) -> None:
    with pytest.raises(tm.TAXIIMessageError, match=expected):
        msg.to_xml()


def test_an_unknown_version_is_refused_at_construction() -> None:
    with pytest.raises(tm.TAXIIMessageError, match="unknown TAXII message binding"):
        tm.DiscoveryRequest(message_id="1", version="urn:taxii.mitre.org:message:xml:2.0")


def test_messages_are_immutable_values() -> None:
    msg = tm.DiscoveryRequest(message_id="1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.message_id = "2"  # type: ignore[misc]
    assert hash(msg) == hash(tm.DiscoveryRequest(message_id="1"))
