"""Reading TAXII 1.0 / 1.1 messages from parsed XML elements.

What the binding schemas require, we require: a missing required element or attribute, or a
value of the wrong type or outside an enumeration, raises :class:`TAXIIMessageError` naming the
place (``Poll_Response/Record_Count: expected a non-negative integer, got 'x'``). What the
schemas leave open we accept: unknown status types and detail names, elements we do not know
(an XML signature, say) are skipped, and co-occurrence rules the schemas cannot express are left
to the caller. Identifiers (xs:anyURI) are whitespace-collapsed; free text is kept as sent.

The Poll_Response reader is split into head / child / finish steps so that the streaming reader
(``_stream``) can apply it one element at a time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Final, TypedDict

from lxml import etree

from ._constants import (
    ACTIONS,
    COLLECTION_TYPES,
    CT_DATA_FEED,
    NS_TAXII_XML_10,
    NS_TAXII_XML_11,
    RESPONSE_TYPES,
    RT_FULL,
    SERVICE_TYPES,
    SS_ACTIVE,
    SUBSCRIPTION_STATUSES,
    VID_TAXII_XML_10,
    VID_TAXII_XML_11,
)
from ._content import get_mixed
from ._errors import TAXIIMessageError
from ._model import (
    CollectionInformationRequest,
    CollectionInformationResponse,
    DiscoveryRequest,
    DiscoveryResponse,
    InboxMessage,
    ManageCollectionSubscriptionRequest,
    ManageCollectionSubscriptionResponse,
    Message,
    PollFulfillment,
    PollRequest,
    PollResponse,
    StatusMessage,
)
from ._parts import (
    Collection,
    ContentBinding,
    ContentBlock,
    ExtendedHeader,
    InboxService,
    PollParameters,
    PushMethod,
    PushParameters,
    Query,
    RecordCount,
    ServiceContact,
    ServiceInstance,
    SourceSubscription,
    StatusDetail,
    SubscriptionInstance,
    SubscriptionParameters,
)
from ._values import parse_bool, parse_int, parse_timestamp

_Element = etree._Element

_VERSIONS: Final = {NS_TAXII_XML_10: VID_TAXII_XML_10, NS_TAXII_XML_11: VID_TAXII_XML_11}
_COMMON_MESSAGES: Final = (
    "Status_Message",
    "Discovery_Request",
    "Discovery_Response",
    "Subscription_Management_Request",
    "Subscription_Management_Response",
    "Poll_Request",
    "Poll_Response",
    "Inbox_Message",
)
#: The root elements each version defines.
MESSAGE_NAMES: Final = {
    VID_TAXII_XML_10: (*_COMMON_MESSAGES, "Feed_Information_Request", "Feed_Information_Response"),
    VID_TAXII_XML_11: (
        *_COMMON_MESSAGES,
        "Collection_Information_Request",
        "Collection_Information_Response",
        "Poll_Fulfillment",
    ),
}


def identify(tag: str) -> tuple[str, str]:
    """Return (message binding id, local name) for a root tag, or raise TAXIIMessageError."""
    namespace, local = _split_tag(tag)
    version = _VERSIONS.get(namespace)
    if version is None:
        where = f"in namespace {namespace}" if namespace else "in no namespace"
        raise TAXIIMessageError(f"not a TAXII 1.0/1.1 message: root element {local} is {where}")
    if local not in MESSAGE_NAMES[version]:
        label = "TAXII 1.1" if version == VID_TAXII_XML_11 else "TAXII 1.0"
        raise TAXIIMessageError(f"unknown {label} message: root element {local}")
    return version, local


def _split_tag(tag: str) -> tuple[str, str]:
    """(namespace, local name) of a Clark-notation tag.

    Done by hand rather than with ``etree.QName``, which refuses the odd names libxml2 can report
    for a damaged document (``taxii_11:`` with an unbound prefix), with a plain ValueError.
    """
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def read_message(root: _Element) -> Message:
    """Read a whole message from its root element."""
    version, name = identify(root.tag)
    return Reader(version).message(name, root)


def path(elem: _Element) -> str:
    """``Root/Child/Grandchild`` by local names, for error messages."""
    names = []
    node: _Element | None = elem
    while node is not None:
        names.append(_split_tag(node.tag)[1])
        node = node.getparent()
    return "/".join(reversed(names))


class _Base(TypedDict):
    message_id: str
    version: str
    extended_headers: tuple[ExtendedHeader, ...]


class Reader:
    """Reads the elements of one message version."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.v11 = version == VID_TAXII_XML_11
        ns = NS_TAXII_XML_11 if self.v11 else NS_TAXII_XML_10
        self.prefix = f"{{{ns}}}"

    # --- small helpers ------------------------------------------------------------------------

    def q(self, name: str) -> str:
        return self.prefix + name

    def is_(self, elem: _Element, name: str) -> bool:
        return elem.tag == self.prefix + name

    def children(self, elem: _Element, name: str) -> list[_Element]:
        return elem.findall(self.q(name))

    def child(self, elem: _Element, name: str) -> _Element | None:
        return elem.find(self.q(name))

    def req_child(self, elem: _Element, name: str) -> _Element:
        found = elem.find(self.q(name))
        if found is None:
            raise TAXIIMessageError(f"{path(elem)}: missing required element {name}")
        return found

    def text(self, elem: _Element, name: str) -> str | None:
        """Free text of an optional child (xs:string: kept as sent)."""
        found = elem.find(self.q(name))
        return None if found is None else (found.text or "")

    def req_text(self, elem: _Element, name: str) -> str:
        return self.req_child(elem, name).text or ""

    def uri(self, elem: _Element, name: str) -> str | None:
        """An identifier in an optional child (xs:anyURI: surrounding whitespace dropped)."""
        found = elem.find(self.q(name))
        return None if found is None else (found.text or "").strip()

    def req_uri(self, elem: _Element, name: str) -> str:
        return (self.req_child(elem, name).text or "").strip()

    def uris(self, elem: _Element, name: str) -> tuple[str, ...]:
        return tuple((e.text or "").strip() for e in self.children(elem, name))

    def attr(self, elem: _Element, name: str) -> str | None:
        value = elem.get(name)
        return None if value is None else value.strip()

    def req_attr(self, elem: _Element, name: str) -> str:
        value = elem.get(name)
        if value is None:
            raise TAXIIMessageError(f"{path(elem)}: missing required attribute {name}")
        return value.strip()

    def bool_attr(self, elem: _Element, name: str, default: bool) -> bool:
        value = elem.get(name)
        return default if value is None else parse_bool(value, f"{path(elem)}/@{name}")

    def optional_bool_attr(self, elem: _Element, name: str) -> bool | None:
        value = elem.get(name)
        return None if value is None else parse_bool(value, f"{path(elem)}/@{name}")

    def enum(self, value: str, allowed: tuple[str, ...], where: str) -> str:
        if value not in allowed:
            raise TAXIIMessageError(f"{where}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def stamp(self, elem: _Element, name: str) -> datetime | None:
        found = elem.find(self.q(name))
        return None if found is None else self.stamp_of(found)

    def stamp_of(self, elem: _Element) -> datetime:
        return parse_timestamp(elem.text, path(elem))

    def mixed_text(self, elem: _Element) -> str:
        return get_mixed(elem).decode("utf-8")

    # --- messages ---------------------------------------------------------------------------

    def base(self, root: _Element) -> _Base:
        headers = self.child(root, "Extended_Headers")
        return {
            "message_id": self.req_attr(root, "message_id"),
            "version": self.version,
            "extended_headers": () if headers is None else self.extended_headers(headers),
        }

    def extended_headers(self, elem: _Element) -> tuple[ExtendedHeader, ...]:
        return tuple(
            ExtendedHeader(name=self.req_attr(e, "name"), value=self.mixed_text(e))
            for e in self.children(elem, "Extended_Header")
        )

    def message(self, name: str, root: _Element) -> Message:
        match name:
            case "Discovery_Request":
                return DiscoveryRequest(**self.base(root))
            case "Discovery_Response":
                return DiscoveryResponse(
                    **self.base(root),
                    in_response_to=self.req_attr(root, "in_response_to"),
                    service_instances=tuple(
                        self.service_instance(e) for e in self.children(root, "Service_Instance")
                    ),
                )
            case "Collection_Information_Request" | "Feed_Information_Request":
                return CollectionInformationRequest(**self.base(root))
            case "Collection_Information_Response" | "Feed_Information_Response":
                tag = "Collection" if self.v11 else "Feed"
                return CollectionInformationResponse(
                    **self.base(root),
                    in_response_to=self.req_attr(root, "in_response_to"),
                    collections=tuple(self.collection(e) for e in self.children(root, tag)),
                )
            case "Subscription_Management_Request":
                return self.subscription_request(root)
            case "Subscription_Management_Response":
                return self.subscription_response(root)
            case "Poll_Request":
                return self.poll_request(root)
            case "Poll_Response":
                return self.poll_response(root)
            case "Poll_Fulfillment":
                return PollFulfillment(
                    **self.base(root),
                    collection_name=self.req_attr(root, "collection_name"),
                    result_id=self.req_attr(root, "result_id"),
                    result_part_number=self.part_number(root),
                )
            case "Inbox_Message":
                return self.inbox_message(root)
            case "Status_Message":
                return self.status_message(root)
        raise TAXIIMessageError(f"unknown TAXII message: root element {name}")  # pragma: no cover

    def name_attr(self, elem: _Element) -> str:
        """``collection_name`` in 1.1, ``feed_name`` in 1.0."""
        return self.req_attr(elem, "collection_name" if self.v11 else "feed_name")

    def part_number(self, elem: _Element) -> int:
        value = elem.get("result_part_number")
        where = f"{path(elem)}/@result_part_number"
        return 1 if value is None else parse_int(value, where, minimum=1)

    def subscription_request(self, root: _Element) -> ManageCollectionSubscriptionRequest:
        action = self.req_attr(root, "action")
        params = self.child(root, "Subscription_Parameters") if self.v11 else None
        push = self.child(root, "Push_Parameters")
        return ManageCollectionSubscriptionRequest(
            **self.base(root),
            collection_name=self.name_attr(root),
            action=self.enum(action, ACTIONS[self.version], f"{path(root)}/@action"),
            subscription_id=(
                self.uri(root, "Subscription_ID")
                if self.v11
                else self.attr(root, "subscription_id")
            ),
            subscription_parameters=None if params is None else self.subscription_params(params),
            push_parameters=None if push is None else self.push_parameters(push),
        )

    def subscription_response(self, root: _Element) -> ManageCollectionSubscriptionResponse:
        return ManageCollectionSubscriptionResponse(
            **self.base(root),
            in_response_to=self.req_attr(root, "in_response_to"),
            collection_name=self.name_attr(root),
            message=self.text(root, "Message"),
            subscriptions=tuple(
                self.subscription_instance(e) for e in self.children(root, "Subscription")
            ),
        )

    def poll_request(self, root: _Element) -> PollRequest:
        params = self.child(root, "Poll_Parameters") if self.v11 else None
        return PollRequest(
            **self.base(root),
            collection_name=self.name_attr(root),
            subscription_id=(
                self.uri(root, "Subscription_ID")
                if self.v11
                else self.attr(root, "subscription_id")
            ),
            exclusive_begin_timestamp=self.stamp(root, "Exclusive_Begin_Timestamp"),
            inclusive_end_timestamp=self.stamp(root, "Inclusive_End_Timestamp"),
            poll_parameters=None if params is None else self.poll_params(params),
            content_bindings=() if self.v11 else self.content_bindings(root),
        )

    def poll_response(self, root: _Element) -> PollResponse:
        head = self.poll_response_head(root)
        blocks = []
        for child in root:
            if self.is_(child, "Content_Block"):
                blocks.append(self.content_block(child))
            else:
                head = self.poll_response_child(head, child)
        return replace(self.poll_response_finish(head, root), content_blocks=tuple(blocks))

    def poll_response_head(self, root: _Element) -> PollResponse:
        """A Poll_Response from the root's attributes alone (what a stream has first)."""
        if self.v11:
            return PollResponse(
                message_id=self.req_attr(root, "message_id"),
                version=self.version,
                in_response_to=self.req_attr(root, "in_response_to"),
                collection_name=self.req_attr(root, "collection_name"),
                more=self.bool_attr(root, "more", False),
                result_id=self.attr(root, "result_id"),
                result_part_number=self.part_number(root),
            )
        return PollResponse(
            message_id=self.req_attr(root, "message_id"),
            version=self.version,
            in_response_to=self.req_attr(root, "in_response_to"),
            collection_name=self.req_attr(root, "feed_name"),
            subscription_id=self.attr(root, "subscription_id"),
        )

    def poll_response_child(self, head: PollResponse, child: _Element) -> PollResponse:
        """Fold one non-Content_Block child of a Poll_Response into ``head``."""
        if self.is_(child, "Extended_Headers"):
            return replace(head, extended_headers=self.extended_headers(child))
        if self.is_(child, "Message"):
            return replace(head, message=child.text or "")
        if self.is_(child, "Inclusive_End_Timestamp"):
            return replace(head, inclusive_end_timestamp=self.stamp_of(child))
        if self.v11:
            if self.is_(child, "Subscription_ID"):
                return replace(head, subscription_id=(child.text or "").strip())
            if self.is_(child, "Exclusive_Begin_Timestamp"):
                return replace(head, exclusive_begin_timestamp=self.stamp_of(child))
            if self.is_(child, "Record_Count"):
                return replace(head, record_count=self.record_count(child))
        elif self.is_(child, "Inclusive_Begin_Timestamp"):
            return replace(head, inclusive_begin_timestamp=self.stamp_of(child))
        return head

    def poll_response_finish(self, head: PollResponse, root: _Element) -> PollResponse:
        """Check what only the whole Poll_Response can show."""
        if not self.v11 and head.inclusive_end_timestamp is None:
            raise TAXIIMessageError(
                f"{path(root)}: missing required element Inclusive_End_Timestamp"
            )
        return head

    def inbox_message(self, root: _Element) -> InboxMessage:
        source = self.child(root, "Source_Subscription")
        count = self.child(root, "Record_Count") if self.v11 else None
        return InboxMessage(
            **self.base(root),
            message=self.text(root, "Message"),
            result_id=self.attr(root, "result_id") if self.v11 else None,
            destination_collection_names=(
                self.uris(root, "Destination_Collection_Name") if self.v11 else ()
            ),
            source_subscription=None if source is None else self.source_subscription(source),
            record_count=None if count is None else self.record_count(count),
            content_blocks=tuple(
                self.content_block(e) for e in self.children(root, "Content_Block")
            ),
        )

    def status_message(self, root: _Element) -> StatusMessage:
        details: tuple[StatusDetail, ...] = ()
        detail_text = None
        found = self.child(root, "Status_Detail")
        if found is not None and self.v11:
            details = tuple(
                StatusDetail(name=self.req_attr(e, "name"), value=self.mixed_text(e))
                for e in self.children(found, "Detail")
            )
        elif found is not None:
            detail_text = found.text or ""
        return StatusMessage(
            **self.base(root),
            in_response_to=self.req_attr(root, "in_response_to"),
            status_type=self.req_attr(root, "status_type"),
            details=details,
            detail_text=detail_text,
            message=self.text(root, "Message"),
        )

    # --- parts ------------------------------------------------------------------------------

    def content_bindings(self, elem: _Element) -> tuple[ContentBinding, ...]:
        """Content_Binding children: an attribute with subtypes in 1.1, plain text in 1.0."""
        return tuple(self.content_binding(e) for e in self.children(elem, "Content_Binding"))

    def content_binding(self, elem: _Element) -> ContentBinding:
        if not self.v11:
            binding_id = (elem.text or "").strip()
            if not binding_id:
                raise TAXIIMessageError(f"{path(elem)}: empty content binding")
            return ContentBinding(binding_id=binding_id)
        return ContentBinding(
            binding_id=self.req_attr(elem, "binding_id"),
            subtypes=tuple(self.req_attr(e, "subtype_id") for e in self.children(elem, "Subtype")),
        )

    def contact(self, elem: _Element) -> ServiceContact:
        return ServiceContact(
            protocol_binding=self.req_uri(elem, "Protocol_Binding"),
            address=self.req_uri(elem, "Address"),
            message_bindings=self.uris(elem, "Message_Binding"),
        )

    def query(self, elem: _Element) -> Query:
        return Query(format_id=self.req_attr(elem, "format_id"), content=get_mixed(elem))

    def service_instance(self, elem: _Element) -> ServiceInstance:
        where = f"{path(elem)}/@service_type"
        service_type = self.enum(
            self.req_attr(elem, "service_type"), SERVICE_TYPES[self.version], where
        )
        return ServiceInstance(
            service_type=service_type,
            services_version=self.req_attr(elem, "service_version"),
            available=self.optional_bool_attr(elem, "available"),
            protocol_binding=self.req_uri(elem, "Protocol_Binding"),
            address=self.req_uri(elem, "Address"),
            message_bindings=self.uris(elem, "Message_Binding"),
            supported_queries=(
                tuple(self.query(e) for e in self.children(elem, "Supported_Query"))
                if self.v11
                else ()
            ),
            content_bindings=self.content_bindings(elem),
            message=self.text(elem, "Message"),
        )

    def collection(self, elem: _Element) -> Collection:
        kind = CT_DATA_FEED
        volume = None
        inboxes: tuple[InboxService, ...] = ()
        if self.v11:
            kind = self.enum(
                elem.get("collection_type", CT_DATA_FEED).strip(),
                COLLECTION_TYPES,
                f"{path(elem)}/@collection_type",
            )
            found = self.child(elem, "Collection_Volume")
            volume = None if found is None else parse_int(found.text, path(found))
            inboxes = tuple(
                InboxService(
                    protocol_binding=self.req_uri(e, "Protocol_Binding"),
                    address=self.req_uri(e, "Address"),
                    message_bindings=self.uris(e, "Message_Binding"),
                    content_bindings=self.content_bindings(e),
                )
                for e in self.children(elem, "Receiving_Inbox_Service")
            )
        return Collection(
            collection_name=self.name_attr(elem),
            description=self.req_text(elem, "Description"),
            collection_type=kind,
            available=self.optional_bool_attr(elem, "available"),
            volume=volume,
            content_bindings=self.content_bindings(elem),
            push_methods=tuple(
                PushMethod(
                    protocol_binding=self.req_uri(e, "Protocol_Binding"),
                    message_bindings=self.uris(e, "Message_Binding"),
                )
                for e in self.children(elem, "Push_Method")
            ),
            polling_services=tuple(self.contact(e) for e in self.children(elem, "Polling_Service")),
            subscription_services=tuple(
                self.contact(e) for e in self.children(elem, "Subscription_Service")
            ),
            receiving_inbox_services=inboxes,
        )

    def push_parameters(self, elem: _Element) -> PushParameters:
        return PushParameters(
            protocol_binding=self.req_uri(elem, "Protocol_Binding"),
            address=self.req_uri(elem, "Address"),
            message_binding=self.req_uri(elem, "Message_Binding"),
            content_bindings=() if self.v11 else self.content_bindings(elem),
        )

    def response_type(self, elem: _Element) -> str:
        found = self.child(elem, "Response_Type")
        if found is None:
            return RT_FULL
        return self.enum((found.text or "").strip(), RESPONSE_TYPES, path(found))

    def subscription_params(self, elem: _Element) -> SubscriptionParameters:
        query = self.child(elem, "Query")
        return SubscriptionParameters(
            response_type=self.response_type(elem),
            content_bindings=self.content_bindings(elem),
            query=None if query is None else self.query(query),
        )

    def poll_params(self, elem: _Element) -> PollParameters:
        query = self.child(elem, "Query")
        delivery = self.child(elem, "Delivery_Parameters")
        return PollParameters(
            allow_asynch=self.bool_attr(elem, "allow_asynch", False),
            response_type=self.response_type(elem),
            content_bindings=self.content_bindings(elem),
            query=None if query is None else self.query(query),
            delivery_parameters=None if delivery is None else self.push_parameters(delivery),
        )

    def subscription_instance(self, elem: _Element) -> SubscriptionInstance:
        push = self.child(elem, "Push_Parameters")
        poll_instances = tuple(self.contact(e) for e in self.children(elem, "Poll_Instance"))
        if not self.v11:
            return SubscriptionInstance(
                subscription_id=self.req_attr(elem, "subscription_id"),
                push_parameters=None if push is None else self.push_parameters(push),
                poll_instances=poll_instances,
            )
        params = self.child(elem, "Subscription_Parameters")
        status = elem.get("status", SS_ACTIVE).strip()
        return SubscriptionInstance(
            subscription_id=self.req_uri(elem, "Subscription_ID"),
            status=self.enum(status, SUBSCRIPTION_STATUSES, f"{path(elem)}/@status"),
            subscription_parameters=None if params is None else self.subscription_params(params),
            push_parameters=None if push is None else self.push_parameters(push),
            poll_instances=poll_instances,
        )

    def source_subscription(self, elem: _Element) -> SourceSubscription:
        if self.v11:
            return SourceSubscription(
                collection_name=self.req_attr(elem, "collection_name"),
                subscription_id=self.req_uri(elem, "Subscription_ID"),
                exclusive_begin_timestamp=self.stamp(elem, "Exclusive_Begin_Timestamp"),
                inclusive_end_timestamp=self.stamp(elem, "Inclusive_End_Timestamp"),
            )
        return SourceSubscription(
            collection_name=self.req_attr(elem, "feed_name"),
            subscription_id=self.attr(elem, "subscription_id"),
            inclusive_begin_timestamp=self.stamp(elem, "Inclusive_Begin_Timestamp"),
            inclusive_end_timestamp=self.stamp_of(self.req_child(elem, "Inclusive_End_Timestamp")),
        )

    def record_count(self, elem: _Element) -> RecordCount:
        return RecordCount(
            count=parse_int(elem.text, path(elem)),
            partial=self.bool_attr(elem, "partial_count", False),
        )

    def content_block(self, elem: _Element) -> ContentBlock:
        label = self.child(elem, "Timestamp_Label")
        return ContentBlock(
            content_binding=self.content_binding(self.req_child(elem, "Content_Binding")),
            content=get_mixed(self.req_child(elem, "Content")),
            timestamp_label=None if label is None else self.stamp_of(label),
            message=self.text(elem, "Message") if self.v11 else None,
            padding=self.text(elem, "Padding"),
        )
