"""Real TAXII messages from libtaxii, java-taxii and the TAXII project site (tests/data/taxii1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from taxii_helpers import DATA, V10, V11, assert_schema_valid, canonical, roundtrip

from feedgate.taxii import messages as tm
from feedgate.xml import HostileXMLError, XMLParseError, parse_bytes

ALL = sorted(DATA.rglob("*.xml"))
DOCTYPE = [p for p in ALL if p.name.startswith("Doctype_")]
MALFORMED = [DATA / "taxiiproject/sample-use/08_Collection_Information_Request.xml"]
INVALID = [p for p in ALL if p.stem.endswith("-invalid") and p not in DOCTYPE]
VALID = [p for p in ALL if p not in DOCTYPE + MALFORMED + INVALID]


def _id(path: Path) -> str:
    return str(path.relative_to(DATA))


def _load(relative: str) -> tm.Message:
    return tm.parse((DATA / relative).read_bytes())


def test_the_sample_sets_are_all_there() -> None:
    assert len(ALL) == 80
    assert len(DOCTYPE) == 2
    assert len(VALID) >= 40
    assert len(INVALID) >= 30


@pytest.mark.parametrize("path", VALID, ids=_id)
def test_valid_samples_parse_and_reserialise_validly(path: Path) -> None:
    data = path.read_bytes()
    msg = tm.parse(data)
    namespace = parse_bytes(data).nsmap.get(parse_bytes(data).prefix)
    assert msg.version == (V11 if namespace == tm.NS_TAXII_XML_11 else V10)
    again = roundtrip(msg)
    assert canonical(again) == canonical(msg)
    assert_schema_valid(data, msg.version)  # the sample itself is schema-valid ...
    assert_schema_valid(msg.to_xml(), msg.version)  # ... and so is what we make of it


@pytest.mark.parametrize("path", INVALID, ids=_id)
def test_invalid_samples_parse_or_raise_a_taxii_message_error(path: Path) -> None:
    try:
        msg = tm.parse(path.read_bytes())
        data = msg.to_xml()  # may refuse what the schema forbids, but only this way
    except tm.TAXIIMessageError:
        return
    assert canonical(tm.parse(data)) == canonical(msg)


@pytest.mark.parametrize("path", DOCTYPE, ids=_id)
def test_doctype_samples_are_refused_as_hostile(path: Path) -> None:
    with pytest.raises(HostileXMLError, match="DOCTYPE"):
        tm.parse(path.read_bytes())


def test_the_malformed_sample_use_body_is_refused_clearly() -> None:
    # As published, `xmlns:taxii_11="..."message_id="26300"` lacks a space between attributes.
    with pytest.raises(XMLParseError, match="not well-formed XML"):
        tm.parse(MALFORMED[0].read_bytes())


def test_invalid_samples_the_schema_rejects_are_reported_by_name() -> None:
    with pytest.raises(tm.TAXIIMessageError, match="missing required attribute in_response_to"):
        _load("java-taxii/xsd/1.1/StatusMessage-Success-invalid.xml")
    with pytest.raises(tm.TAXIIMessageError, match="missing required attribute feed_name"):
        _load("java-taxii/schematron/1.0/subscription-requests/unsubscribe-invalid.xml")


# --- field by field ---------------------------------------------------------------------------


def test_sample_poll_response() -> None:
    msg = _load("taxiiproject/sample-use/07_Poll_Response.xml")
    assert isinstance(msg, tm.PollResponse)
    assert (msg.message_id, msg.in_response_to, msg.collection_name) == (
        "42158",
        "20079",
        "default",
    )
    assert msg.more is False and msg.result_part_number == 1 and msg.result_id is None
    assert msg.inclusive_end_timestamp == datetime(2014, 12, 19, 12, tzinfo=UTC)
    assert msg.record_count == tm.RecordCount(count=1, partial=False)
    (block,) = msg.content_blocks
    assert block.content_binding == tm.ContentBinding(binding_id=tm.CB_STIX_XML_111)
    package = parse_bytes(block.content)
    assert package.tag == "{http://stix.mitre.org/stix-1}STIX_Package"
    assert b"malicious1.example.com##comma##malicious2.example.com" in block.content


def test_sample_poll_request_and_fulfillment() -> None:
    poll = _load("taxiiproject/sample-use/05_Poll_Request.xml")
    assert poll == tm.PollRequest(
        message_id="42158",
        collection_name="default",
        exclusive_begin_timestamp=datetime(2014, 12, 19, tzinfo=UTC),
        inclusive_end_timestamp=datetime(2014, 12, 19, 12, tzinfo=UTC),
        poll_parameters=tm.PollParameters(allow_asynch=False, response_type=tm.RT_FULL),
    )
    assert _load("taxiiproject/sample-use/06_Poll_Fulfillment_Request.xml") == tm.PollFulfillment(
        message_id="83013", collection_name="default", result_id="29321", result_part_number=1
    )


def test_sample_file_hash_reputation_poll_request_keeps_its_query() -> None:
    poll = _load("taxiiproject/file-hash-rep-poll-request.xml")
    assert isinstance(poll, tm.PollRequest) and poll.poll_parameters is not None
    query = poll.poll_parameters.query
    assert query is not None and query.format_id == tm.FID_TAXII_DEFAULT_QUERY_10
    assert parse_bytes(query.content).tag.endswith("}Default_Query")
    assert b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" in query.content
    assert poll.poll_parameters.content_bindings == (
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_111),
    )


def test_sample_discovery_response() -> None:
    msg = _load("libtaxii/Discovery_Response.xml")
    assert isinstance(msg, tm.DiscoveryResponse)
    assert msg.in_response_to == "urn:uuid:ac4d80f4-3dd4-47fb-81ed-67cd49911de2"
    types = [s.service_type for s in msg.service_instances]
    assert types == [tm.SVC_INBOX, tm.SVC_POLL, tm.SVC_DISCOVERY]
    inbox = msg.service_instances[0]
    assert inbox.available is True
    assert inbox.address == "http://taxiitest.mitre.org/services/inbox/default"
    assert inbox.protocol_binding == tm.VID_TAXII_HTTP_10
    assert inbox.message_bindings == (tm.VID_TAXII_XML_11,)
    assert inbox.content_bindings == (tm.ContentBinding(binding_id=tm.CB_STIX_XML_10),)
    hash_rep = _load("taxiiproject/file-hash-rep-discovery-response.xml")
    assert isinstance(hash_rep, tm.DiscoveryResponse)
    (poll,) = hash_rep.service_instances
    assert poll.message == "This is a File Hash Reputation Poll Service"
    assert [q.format_id for q in poll.supported_queries] == [tm.FID_TAXII_DEFAULT_QUERY_10]


def test_sample_collection_information_responses() -> None:
    msg = _load("libtaxii/Collection_Information_Response.xml")
    assert isinstance(msg, tm.CollectionInformationResponse)
    first, second = msg.collections
    assert (first.collection_name, first.collection_type) == ("collection2", tm.CT_DATA_SET)
    assert first.description == "Warrgghghglble."
    assert second.collection_type == tm.CT_DATA_FEED  # the default
    assert second.content_bindings == (
        tm.ContentBinding(binding_id=tm.CB_STIX_XML_101, subtypes=("ex1", "ex2", "ex3")),
    )
    assert second.receiving_inbox_services[1].content_bindings[0].subtypes == (
        "example1",
        "example2",
    )
    site = _load("taxiiproject/sample-use/10_Collection_Information_Response.xml")
    assert isinstance(site, tm.CollectionInformationResponse)
    (default,) = site.collections
    assert default.available is True and default.description == ""
    assert [s.protocol_binding for s in default.polling_services] == [
        tm.VID_TAXII_HTTP_10,
        tm.VID_TAXII_HTTPS_10,
    ]
    assert default.subscription_services[0].address == "/services/collection-management/"
    assert len(default.receiving_inbox_services) == 2


def test_sample_inbox_message() -> None:
    msg = _load("libtaxii/Inbox_Message.xml")
    assert isinstance(msg, tm.InboxMessage)
    assert msg.result_id == "123"
    assert msg.destination_collection_names == ("collection1", "collection2")
    assert msg.message == "Hello!"
    edt = timezone(timedelta(hours=-4))
    assert msg.source_subscription == tm.SourceSubscription(
        collection_name="SomeCollectionName",
        subscription_id="SubsId021",
        exclusive_begin_timestamp=datetime(2014, 10, 21, 15, 21, 50, 895000, tzinfo=edt),
        inclusive_end_timestamp=datetime(2014, 10, 21, 15, 21, 50, 895000, tzinfo=edt),
    )
    assert msg.record_count == tm.RecordCount(count=22, partial=True)
    first, second = msg.content_blocks
    assert first.content_binding.subtypes == ("test1",)
    assert first.timestamp_label == datetime(2014, 10, 21, 19, 21, 50, 805000, tzinfo=UTC)
    assert (first.message, first.padding) == (
        "Hullo!",
        "The quick brown fox jumped over the lazy dogs.",
    )
    assert parse_bytes(first.content).tag == "STIX_Package"  # xmlns="" in the sample
    assert second.timestamp_label is None


def test_sample_subscription_management() -> None:
    request = _load("libtaxii/Subscription_Management_Request.xml")
    assert isinstance(request, tm.ManageCollectionSubscriptionRequest)
    assert request.message_id == "'SubsReq02'"
    assert request.action == tm.ACT_SUBSCRIBE
    assert request.subscription_parameters is not None
    assert request.subscription_parameters.query is not None
    response = _load("libtaxii/Subscription_Management_Response.xml")
    assert isinstance(response, tm.ManageCollectionSubscriptionResponse)
    assert [s.status for s in response.subscriptions] == [tm.SS_ACTIVE, tm.SS_PAUSED, tm.SS_PAUSED]
    active = response.subscriptions[0]
    assert active.subscription_parameters is not None
    assert active.subscription_parameters.response_type == tm.RT_COUNT_ONLY
    assert active.push_parameters == tm.PushParameters(
        protocol_binding=tm.VID_TAXII_HTTPS_10,
        address="https://example.com/inboxAddress/",
        message_binding=tm.VID_TAXII_XML_11,
    )
    assert [p.address for p in active.poll_instances] == [
        f"https://example.com/poll{i}/" for i in (1, 2, 3)
    ]
    site = _load("taxiiproject/sample-use/11_Collection_Subscription_Management_Response.xml")
    assert isinstance(site, tm.ManageCollectionSubscriptionResponse)
    assert site.subscriptions == (tm.SubscriptionInstance(subscription_id="Subscription001"),)


def test_sample_status_messages() -> None:
    pending = _load("java-taxii/schematron/1.1/status-messages/Pending-valid.xml")
    assert isinstance(pending, tm.StatusMessage)
    assert pending.status_type == tm.ST_PENDING
    assert (pending.estimated_wait, pending.result_id, pending.will_push) == (
        5,
        "urn:1234abcd",
        True,
    )
    part = _load("java-taxii/schematron/1.1/status-messages/InvalidResponsePart-valid.xml")
    assert isinstance(part, tm.StatusMessage) and part.max_part_number == 2345
    retry_10 = _load("java-taxii/schematron/1.0/status-messages/retry-valid.xml")
    assert isinstance(retry_10, tm.StatusMessage) and retry_10.version == V10
    assert retry_10.detail_text == "2014-09-05T17:01:32.808-04:00"
    assert retry_10.message is not None and "valid RETRY" in retry_10.message
    success = _load("taxiiproject/sample-use/04_Status_Message.xml")
    assert success == tm.StatusMessage(
        message_id="42902", in_response_to="34502", status_type=tm.ST_SUCCESS
    )


def test_sample_1_0_subscription_request() -> None:
    msg = _load("java-taxii/schematron/1.0/subscription-requests/unsubscribe-valid.xml")
    assert msg == tm.ManageCollectionSubscriptionRequest(
        message_id="1",
        version=V10,
        collection_name="test",
        action=tm.ACT_UNSUBSCRIBE,
        subscription_id="theSubscription",
    )
