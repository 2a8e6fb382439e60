"""Interoperability with libtaxii, the reference implementation, in both directions.

Messages built with libtaxii's classes and serialised by libtaxii parse with ours into the same
fields; ours parse with libtaxii into the same fields. The comparison goes through ``convert``,
which maps libtaxii's objects onto ours field by field (it is the explicit statement of how the
two models correspond). Query payloads are compared separately: libtaxii turns a Default_Query
into objects, we keep it opaque.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import libtaxii.messages_10 as lt10
import libtaxii.messages_11 as lt11
import libtaxii.taxii_default_query as tdq
import pytest
from lxml import etree
from taxii_helpers import T0, T1, T2, V10, V11, canonical, examples_10, examples_11

from feedgate.taxii import messages as tm

# --- libtaxii objects -> ours -----------------------------------------------------------------


def _content(value: Any) -> bytes | str:
    if isinstance(value, etree._Element):
        return etree.tostring(value, encoding="utf-8")
    return "" if value is None else value


def _binding(value: Any) -> tm.ContentBinding:
    if isinstance(value, str):
        return tm.ContentBinding(binding_id=value)
    return tm.ContentBinding(binding_id=value.binding_id, subtypes=tuple(value.subtype_ids))


def _bindings(values: Any) -> tuple[tm.ContentBinding, ...]:
    return tuple(_binding(v) for v in values or ())


def _query(value: Any) -> tm.Query | None:
    return None if value is None else tm.Query(format_id=value.format_id)


def _contact(protocol: str, address: str, bindings: Any) -> tm.ServiceContact:
    return tm.ServiceContact(
        protocol_binding=protocol, address=address, message_bindings=tuple(bindings)
    )


def _block(block: Any, version: str) -> tm.ContentBlock:
    return tm.ContentBlock(
        content_binding=_binding(block.content_binding),
        content=_content(block.content),
        timestamp_label=block.timestamp_label,
        message=block.message if version == V11 else None,
        padding=block.padding,
    )


def _push(params: Any) -> tm.PushParameters | None:
    if params is None:
        return None
    return tm.PushParameters(
        protocol_binding=params.inbox_protocol,
        address=params.inbox_address,
        message_binding=params.delivery_message_binding,
        content_bindings=_bindings(getattr(params, "content_bindings", ())),
    )


def _detail_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def convert(msg: Any) -> tm.Message:
    """libtaxii message -> the equivalent feedgate message."""
    version = V11 if isinstance(msg, lt11.TAXIIMessage) else V10
    lt = lt11 if version == V11 else lt10
    base: dict[str, Any] = {
        "message_id": msg.message_id,
        "version": version,
        "extended_headers": tuple(
            tm.ExtendedHeader(name=k, value=v) for k, v in msg.extended_headers.items()
        ),
    }
    if not isinstance(msg, lt.DiscoveryRequest | lt.PollRequest | lt.InboxMessage) and not (
        isinstance(msg, lt10.FeedInformationRequest | lt10.ManageFeedSubscriptionRequest)
        or (
            version == V11
            and isinstance(
                msg,
                lt11.CollectionInformationRequest
                | lt11.ManageCollectionSubscriptionRequest
                | lt11.PollFulfillmentRequest,
            )
        )
    ):
        base["in_response_to"] = msg.in_response_to

    if isinstance(msg, lt.DiscoveryRequest):
        return tm.DiscoveryRequest(**base)
    if isinstance(msg, lt.DiscoveryResponse):
        return tm.DiscoveryResponse(
            **base,
            service_instances=tuple(
                tm.ServiceInstance(
                    service_type=s.service_type,
                    services_version=s.services_version,
                    protocol_binding=s.protocol_binding,
                    address=s.service_address,
                    message_bindings=tuple(s.message_bindings),
                    available=s.available,
                    supported_queries=tuple(
                        tm.Query(format_id=q.format_id)
                        for q in (getattr(s, "supported_query", None) or ())
                    ),
                    content_bindings=_bindings(s.inbox_service_accepted_content),
                    message=s.message,
                )
                for s in msg.service_instances
            ),
        )
    if isinstance(msg, lt11.CollectionInformationRequest | lt10.FeedInformationRequest):
        return tm.CollectionInformationRequest(**base)
    if isinstance(msg, lt11.CollectionInformationResponse | lt10.FeedInformationResponse):
        records = msg.collection_informations if version == V11 else msg.feed_informations
        return tm.CollectionInformationResponse(
            **base,
            collections=tuple(
                tm.Collection(
                    collection_name=c.collection_name if version == V11 else c.feed_name,
                    # libtaxii reads an empty <Description/> as None
                    description=(c.collection_description if version == V11 else c.feed_description)
                    or "",
                    collection_type=c.collection_type if version == V11 else tm.CT_DATA_FEED,
                    available=c.available,
                    volume=c.collection_volume if version == V11 else None,
                    content_bindings=_bindings(c.supported_contents),
                    push_methods=tuple(
                        tm.PushMethod(
                            protocol_binding=p.push_protocol,
                            message_bindings=tuple(p.push_message_bindings),
                        )
                        for p in c.push_methods
                    ),
                    polling_services=tuple(
                        _contact(p.poll_protocol, p.poll_address, p.poll_message_bindings)
                        for p in c.polling_service_instances
                    ),
                    subscription_services=tuple(
                        _contact(
                            s.subscription_protocol,
                            s.subscription_address,
                            s.subscription_message_bindings,
                        )
                        for s in c.subscription_methods
                    ),
                    receiving_inbox_services=tuple(
                        tm.InboxService(
                            protocol_binding=r.inbox_protocol,
                            address=r.inbox_address,
                            message_bindings=tuple(r.inbox_message_bindings),
                            content_bindings=_bindings(r.supported_contents),
                        )
                        for r in (c.receiving_inbox_services if version == V11 else ())
                    ),
                )
                for c in records
            ),
        )
    if isinstance(msg, lt11.ManageCollectionSubscriptionRequest):
        params = msg.subscription_parameters
        if msg.action != tm.ACT_SUBSCRIBE and params.to_xml() == _DEFAULT_SUB_PARAMS:
            params = None  # libtaxii fills in default parameters when there are none
        return tm.ManageCollectionSubscriptionRequest(
            **base,
            collection_name=msg.collection_name,
            action=msg.action,
            subscription_id=msg.subscription_id,
            subscription_parameters=None if params is None else _sub_params(params),
            push_parameters=_push(msg.push_parameters),
        )
    if isinstance(msg, lt10.ManageFeedSubscriptionRequest):
        return tm.ManageCollectionSubscriptionRequest(
            **base,
            collection_name=msg.feed_name,
            action=msg.action,
            subscription_id=msg.subscription_id,
            push_parameters=_push(msg.delivery_parameters),
        )
    if isinstance(
        msg, lt11.ManageCollectionSubscriptionResponse | lt10.ManageFeedSubscriptionResponse
    ):
        return tm.ManageCollectionSubscriptionResponse(
            **base,
            collection_name=msg.collection_name if version == V11 else msg.feed_name,
            message=msg.message,
            subscriptions=tuple(_subscription(s, version) for s in msg.subscription_instances),
        )
    if isinstance(msg, lt11.PollRequest):
        params = msg.poll_parameters
        return tm.PollRequest(
            **base,
            collection_name=msg.collection_name,
            subscription_id=msg.subscription_id,
            exclusive_begin_timestamp=msg.exclusive_begin_timestamp_label,
            inclusive_end_timestamp=msg.inclusive_end_timestamp_label,
            poll_parameters=None
            if params is None
            else tm.PollParameters(
                allow_asynch=params.allow_asynch,
                response_type=params.response_type,
                content_bindings=_bindings(params.content_bindings),
                query=_query(params.query),
                delivery_parameters=_push(params.delivery_parameters),
            ),
        )
    if isinstance(msg, lt10.PollRequest):
        return tm.PollRequest(
            **base,
            collection_name=msg.feed_name,
            subscription_id=msg.subscription_id,
            exclusive_begin_timestamp=msg.exclusive_begin_timestamp_label,
            inclusive_end_timestamp=msg.inclusive_end_timestamp_label,
            content_bindings=_bindings(msg.content_bindings),
        )
    if isinstance(msg, lt11.PollResponse):
        count = msg.record_count
        return tm.PollResponse(
            **base,
            collection_name=msg.collection_name,
            more=msg.more,
            result_id=msg.result_id,
            result_part_number=int(msg.result_part_number),
            subscription_id=msg.subscription_id,
            exclusive_begin_timestamp=msg.exclusive_begin_timestamp_label,
            inclusive_end_timestamp=msg.inclusive_end_timestamp_label,
            record_count=None
            if count is None
            else tm.RecordCount(count=count.record_count, partial=count.partial_count),
            message=msg.message,
            content_blocks=tuple(_block(b, version) for b in msg.content_blocks),
        )
    if isinstance(msg, lt10.PollResponse):
        return tm.PollResponse(
            **base,
            collection_name=msg.feed_name,
            subscription_id=msg.subscription_id,
            inclusive_begin_timestamp=msg.inclusive_begin_timestamp_label,
            inclusive_end_timestamp=msg.inclusive_end_timestamp_label,
            message=msg.message,
            content_blocks=tuple(_block(b, version) for b in msg.content_blocks),
        )
    if isinstance(msg, lt11.PollFulfillmentRequest):
        return tm.PollFulfillment(
            **base,
            collection_name=msg.collection_name,
            result_id=msg.result_id,
            result_part_number=int(msg.result_part_number),
        )
    if isinstance(msg, lt.InboxMessage):
        info = msg.subscription_information
        source = None
        if info is not None and version == V11:
            source = tm.SourceSubscription(
                collection_name=info.collection_name,
                subscription_id=info.subscription_id,
                exclusive_begin_timestamp=info.exclusive_begin_timestamp_label,
                inclusive_end_timestamp=info.inclusive_end_timestamp_label,
            )
        elif info is not None:
            source = tm.SourceSubscription(
                collection_name=info.feed_name,
                subscription_id=info.subscription_id,
                inclusive_begin_timestamp=info.inclusive_begin_timestamp_label,
                inclusive_end_timestamp=info.inclusive_end_timestamp_label,
            )
        count = getattr(msg, "record_count", None)
        return tm.InboxMessage(
            **base,
            message=msg.message,
            result_id=getattr(msg, "result_id", None),
            destination_collection_names=tuple(getattr(msg, "destination_collection_names", ())),
            source_subscription=source,
            record_count=None
            if count is None
            else tm.RecordCount(count=count.record_count, partial=count.partial_count),
            content_blocks=tuple(_block(b, version) for b in msg.content_blocks),
        )
    if isinstance(msg, lt.StatusMessage):
        details: list[tm.StatusDetail] = []
        detail_text = None
        if version == V11:
            for name, value in (msg.status_detail or {}).items():
                for item in value if isinstance(value, list) else [value]:
                    details.append(tm.StatusDetail(name=name, value=_detail_value(item)))
        else:
            detail_text = msg.status_detail
        return tm.StatusMessage(
            **base,
            status_type=msg.status_type,
            details=tuple(details),
            detail_text=detail_text,
            message=msg.message,
        )
    raise TypeError(type(msg).__name__)


_DEFAULT_SUB_PARAMS = lt11.SubscriptionParameters().to_xml()


def _sub_params(params: Any) -> tm.SubscriptionParameters:
    return tm.SubscriptionParameters(
        response_type=params.response_type,
        content_bindings=_bindings(params.content_bindings),
        query=_query(params.query),
    )


def _subscription(sub: Any, version: str) -> tm.SubscriptionInstance:
    polls = tuple(
        _contact(p.poll_protocol, p.poll_address, p.poll_message_bindings)
        for p in sub.poll_instances
    )
    if version == V10:
        return tm.SubscriptionInstance(
            subscription_id=sub.subscription_id,
            push_parameters=_push(sub.delivery_parameters),
            poll_instances=polls,
        )
    params = sub.subscription_parameters
    return tm.SubscriptionInstance(
        subscription_id=sub.subscription_id,
        status=sub.status,
        subscription_parameters=None if params is None else _sub_params(params),
        push_parameters=_push(sub.push_parameters),
        poll_instances=polls,
    )


def without_query_payloads(value: Any) -> Any:
    """``value`` with Query.content blanked (libtaxii keeps queries as objects, we as XML)."""
    if isinstance(value, tm.Query):
        return dataclasses.replace(value, content=b"")
    if isinstance(value, tuple):
        return tuple(without_query_payloads(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: without_query_payloads(getattr(value, f.name))
            for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **changes)
    return value


def without_empty_content(msg: tm.Message) -> tm.Message:
    """``msg`` without blocks of empty content, which libtaxii cannot read (it wants content)."""
    if not isinstance(msg, tm.PollResponse | tm.InboxMessage):
        return msg
    blocks = tuple(b for b in msg.content_blocks if b.content)
    return dataclasses.replace(msg, content_blocks=blocks)


def same(ours: tm.Message, theirs: tm.Message) -> bool:
    return bool(
        canonical(without_query_payloads(ours)) == canonical(without_query_payloads(theirs))
    )


# --- messages built with libtaxii -------------------------------------------------------------

STIX = (
    '<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" id="example:Package-1" '
    'version="1.1.1"><stix:STIX_Header><stix:Title>From libtaxii</stix:Title></stix:STIX_Header>'
    "</stix:STIX_Package>"
)
HTTPS = tm.VID_TAXII_HTTPS_10


def _default_query() -> tdq.DefaultQuery:
    test = tdq.Test(
        capability_id=tm.FID_TAXII_DEFAULT_QUERY_10.replace("default:1.0", "capability:core-1"),
        relationship="equals",
        parameters={"value": "AAAA", "match_type": "case_insensitive_string"},
    )
    criterion = tdq.Criterion(target="**/Simple_Hash_Value", test=test)
    return tdq.DefaultQuery(tm.CB_STIX_XML_111, tdq.Criteria(operator="AND", criterion=[criterion]))


def libtaxii_11() -> list[Any]:
    binding = lt11.ContentBinding(tm.CB_STIX_XML_111, subtype_ids=["a", "b"])
    blocks = [
        lt11.ContentBlock(
            lt11.ContentBinding(tm.CB_STIX_XML_111, subtype_ids=["s"]),
            STIX,
            timestamp_label=T1,
            padding="pad",
            message="block message",
        ),
        lt11.ContentBlock(tm.CB_STIX_XML_12, "just text & <stuff>"),
    ]
    push = lt11.PushParameters(HTTPS, "https://client.example.com/inbox/", V11)
    poll_contact = lt11.PollInstance(HTTPS, "https://example.com/poll/", [V11])
    return [
        lt11.DiscoveryRequest("1", extended_headers={"urn:feedgate:h": "header value"}),
        lt11.DiscoveryResponse(
            "2",
            "1",
            service_instances=[
                lt11.ServiceInstance(
                    tm.SVC_INBOX,
                    tm.VID_TAXII_SERVICES_11,
                    HTTPS,
                    "https://example.com/inbox/",
                    [V11, V10],
                    inbox_service_accepted_content=[binding],
                    available=True,
                    message="Inbox",
                ),
                lt11.ServiceInstance(
                    tm.SVC_POLL,
                    tm.VID_TAXII_SERVICES_11,
                    HTTPS,
                    "https://example.com/poll/",
                    [V11],
                    available=False,
                    supported_query=[
                        tdq.DefaultQueryInfo(
                            [tdq.TargetingExpressionInfo(tm.CB_STIX_XML_111, ["**"])],
                            ["urn:taxii.mitre.org:query:capability:core-1"],
                        )
                    ],
                ),
            ],
        ),
        lt11.CollectionInformationRequest("3"),
        lt11.CollectionInformationResponse(
            "4",
            "3",
            collection_informations=[
                lt11.CollectionInformation(
                    "user_AlienVault",
                    "Data feed for user: AlienVault",
                    supported_contents=[binding],
                    available=True,
                    push_methods=[lt11.PushMethod(HTTPS, [V11])],
                    polling_service_instances=[
                        lt11.PollingServiceInstance(HTTPS, "https://example.com/poll/", [V11])
                    ],
                    subscription_methods=[
                        lt11.SubscriptionMethod(HTTPS, "https://example.com/manage/", [V11])
                    ],
                    collection_volume=12,
                    collection_type=tm.CT_DATA_SET,
                    receiving_inbox_services=[
                        lt11.ReceivingInboxService(
                            HTTPS, "https://example.com/inbox/", [V11], supported_contents=[binding]
                        )
                    ],
                )
            ],
        ),
        lt11.ManageCollectionSubscriptionRequest(
            "5",
            collection_name="c",
            action=tm.ACT_SUBSCRIBE,
            subscription_parameters=lt11.SubscriptionParameters(
                response_type=tm.RT_COUNT_ONLY, content_bindings=[binding], query=_default_query()
            ),
            push_parameters=push,
        ),
        lt11.ManageCollectionSubscriptionResponse(
            "6",
            "5",
            collection_name="c",
            message="done",
            subscription_instances=[
                lt11.SubscriptionInstance(
                    "s-1",
                    status=tm.SS_PAUSED,
                    subscription_parameters=lt11.SubscriptionParameters(),
                    push_parameters=push,
                    poll_instances=[poll_contact, poll_contact],
                )
            ],
        ),
        lt11.PollRequest(
            "7",
            collection_name="c",
            exclusive_begin_timestamp_label=T0,
            inclusive_end_timestamp_label=T1,
            poll_parameters=lt11.PollParameters(
                response_type=tm.RT_FULL,
                content_bindings=[binding],
                query=_default_query(),
                allow_asynch=True,
                delivery_parameters=lt11.DeliveryParameters(
                    HTTPS, "https://client.example.com/inbox/", V11
                ),
            ),
        ),
        lt11.PollRequest("8", collection_name="c", subscription_id="s-1"),
        lt11.PollResponse(
            "9",
            "7",
            collection_name="c",
            exclusive_begin_timestamp_label=T0,
            inclusive_end_timestamp_label=T2,
            subscription_id="s-1",
            message="two blocks",
            content_blocks=blocks,
            more=True,
            result_id="r-1",
            result_part_number=2,
            record_count=lt11.RecordCount(20, partial_count=True),
        ),
        lt11.PollFulfillmentRequest(
            "10", collection_name="c", result_id="r-1", result_part_number=3
        ),
        lt11.InboxMessage(
            "11",
            message="pushed",
            result_id="r-1",
            destination_collection_names=["one", "two"],
            subscription_information=lt11.SubscriptionInformation("c", "s-1", T0, T1),
            record_count=lt11.RecordCount(2),
            content_blocks=blocks,
        ),
        lt11.StatusMessage(
            "12",
            "7",
            status_type=tm.ST_PENDING,
            status_detail={
                tm.SD_ESTIMATED_WAIT: 30,
                tm.SD_RESULT_ID: "r-1",
                tm.SD_WILL_PUSH: False,
            },
            message="later",
        ),
        lt11.StatusMessage(
            "13",
            "7",
            status_type=tm.ST_UNSUPPORTED_CONTENT,
            status_detail={
                tm.SD_SUPPORTED_CONTENT: [
                    lt11.ContentBinding(tm.CB_STIX_XML_111),
                    lt11.ContentBinding(tm.CB_STIX_XML_12),
                ]
            },
        ),
        lt11.StatusMessage("14", "7", status_type=tm.ST_UNAUTHORIZED, message="bad key"),
    ]


def libtaxii_10() -> list[Any]:
    blocks = [
        lt10.ContentBlock(tm.CB_STIX_XML_101, STIX, timestamp_label=T1, padding="pad"),
        lt10.ContentBlock(tm.CB_STIX_XML_10, "just text & <stuff>"),
    ]
    delivery = lt10.DeliveryParameters(
        HTTPS, "https://client.example.com/inbox/", V10, [tm.CB_STIX_XML_101]
    )
    poll_contact = lt10.PollInstance(HTTPS, "https://example.com/poll/", [V10])
    return [
        lt10.DiscoveryRequest("1", extended_headers={"urn:feedgate:h": "header value"}),
        lt10.DiscoveryResponse(
            "2",
            "1",
            service_instances=[
                lt10.ServiceInstance(
                    tm.SVC_INBOX,
                    tm.VID_TAXII_SERVICES_10,
                    HTTPS,
                    "https://example.com/inbox/",
                    [V10],
                    inbox_service_accepted_content=[tm.CB_STIX_XML_101],
                    available=True,
                    message="Inbox",
                )
            ],
        ),
        lt10.FeedInformationRequest("3"),
        lt10.FeedInformationResponse(
            "4",
            "3",
            feed_informations=[
                lt10.FeedInformation(
                    "feed-1",
                    "A feed",
                    [tm.CB_STIX_XML_101],
                    available=True,
                    push_methods=[lt10.PushMethod(HTTPS, [V10])],
                    polling_service_instances=[
                        lt10.PollingServiceInstance(HTTPS, "https://example.com/poll/", [V10])
                    ],
                    subscription_methods=[
                        lt10.SubscriptionMethod(HTTPS, "https://example.com/manage/", [V10])
                    ],
                )
            ],
        ),
        lt10.ManageFeedSubscriptionRequest(
            "5", feed_name="feed-1", action=tm.ACT_SUBSCRIBE, delivery_parameters=delivery
        ),
        lt10.ManageFeedSubscriptionResponse(
            "6",
            "5",
            feed_name="feed-1",
            message="ok",
            subscription_instances=[
                lt10.SubscriptionInstance(
                    "s-1", delivery_parameters=delivery, poll_instances=[poll_contact]
                )
            ],
        ),
        lt10.PollRequest(
            "7",
            feed_name="feed-1",
            exclusive_begin_timestamp_label=T0,
            inclusive_end_timestamp_label=T1,
            subscription_id="s-1",
            content_bindings=[tm.CB_STIX_XML_101],
        ),
        lt10.PollResponse(
            "8",
            "7",
            feed_name="feed-1",
            inclusive_begin_timestamp_label=T0,
            inclusive_end_timestamp_label=T2,
            subscription_id="s-1",
            message="two blocks",
            content_blocks=blocks,
        ),
        lt10.InboxMessage(
            "9",
            message="pushed",
            subscription_information=lt10.SubscriptionInformation("feed-1", "s-1", T0, T1),
            content_blocks=blocks,
        ),
        lt10.StatusMessage(
            "10", "9", status_type=tm.ST_RETRY, status_detail="in a while", message="m"
        ),
    ]


LIBTAXII = [*libtaxii_11(), *libtaxii_10()]


def _name(msg: Any) -> str:
    return f"{type(msg).__module__.rsplit('_', 1)[-1]}-{type(msg).__name__}-{msg.message_id}"


@pytest.mark.parametrize("theirs", LIBTAXII, ids=[_name(m) for m in LIBTAXII])
def test_libtaxii_messages_parse_with_ours_into_the_same_fields(theirs: Any) -> None:
    ours = tm.parse(theirs.to_xml())
    assert same(ours, convert(theirs))


OURS = [*examples_11(), *examples_10()]


@pytest.mark.parametrize(
    "ours", OURS, ids=[f"{m.version[-3:]}-{type(m).__name__}-{m.message_id}" for m in OURS]
)
def test_our_messages_parse_with_libtaxii_into_the_same_fields(ours: tm.Message) -> None:
    ours = without_empty_content(ours)
    reader = lt11 if ours.version == V11 else lt10
    theirs = reader.get_message_from_xml(ours.to_xml())
    assert same(convert(theirs), ours)


def test_our_default_query_is_understood_by_libtaxii() -> None:
    ours = next(
        m for m in examples_11() if isinstance(m, tm.PollRequest) and m.poll_parameters is not None
    )
    theirs = lt11.get_message_from_xml(ours.to_xml())
    query = theirs.poll_parameters.query
    assert isinstance(query, tdq.DefaultQuery)
    assert query.targeting_expression_id == tm.CB_STIX_XML_111
    (criterion,) = query.criteria.criterion
    assert criterion.target == "**/Simple_Hash_Value"
    assert criterion.test.parameters["value"] == "AAAA"


def test_libtaxii_default_query_is_kept_by_ours() -> None:
    theirs = next(m for m in libtaxii_11() if isinstance(m, lt11.PollRequest) and m.poll_parameters)
    ours = tm.parse(theirs.to_xml())
    assert isinstance(ours, tm.PollRequest) and ours.poll_parameters is not None
    query = ours.poll_parameters.query
    assert query is not None and query.format_id == tm.FID_TAXII_DEFAULT_QUERY_10
    again = lt11.get_message_from_xml(ours.to_xml())  # and it survives our round trip
    assert again.poll_parameters.query.to_xml() == theirs.poll_parameters.query.to_xml()


def test_timestamps_agree_with_libtaxii() -> None:
    theirs = lt11.get_message_from_xml(
        tm.PollRequest(
            message_id="1",
            collection_name="c",
            subscription_id="s",
            exclusive_begin_timestamp=datetime(2020, 1, 2, 3, 4, 5, 600000),  # naive: UTC
            inclusive_end_timestamp=T1,
        ).to_xml()
    )
    assert theirs.exclusive_begin_timestamp_label.isoformat() == "2020-01-02T03:04:05.600000+00:00"
    assert theirs.inclusive_end_timestamp_label == T1
