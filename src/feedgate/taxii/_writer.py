"""Serialising messages to TAXII 1.0 / 1.1 XML.

Elements are written in the order the XML binding schemas require (libtaxii ships them; the
tests validate our output against them). A field the message's version cannot carry raises
:class:`TAXIIMessageError` unless it has its default, so a 1.1-only value is never dropped
silently from a 1.0 message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from lxml import etree

from ._constants import (
    ACTIONS,
    COLLECTION_TYPES,
    CT_DATA_FEED,
    NAMESPACES,
    PREFIXES,
    RESPONSE_TYPES,
    SERVICE_TYPES,
    SS_ACTIVE,
    SUBSCRIPTION_STATUSES,
    VID_TAXII_XML_11,
)
from ._content import put_mixed
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
    ResponseMessage,
    StatusMessage,
)
from ._parts import (
    Collection,
    ContentBinding,
    ContentBlock,
    PollParameters,
    PushParameters,
    Query,
    RecordCount,
    ServiceInstance,
    SourceSubscription,
    SubscriptionInstance,
    SubscriptionParameters,
)
from ._values import check_message_id, format_bool, format_timestamp

_Element = etree._Element


def message_xml(msg: Message) -> bytes:
    """Serialise ``msg`` as UTF-8 bytes without an XML declaration."""
    return etree.tostring(message_element(msg), encoding="utf-8")


def message_element(msg: Message) -> _Element:
    """Build ``msg`` as an lxml element."""
    with lxml_value_errors(tag_name(msg)):
        return Writer(msg.version).message(msg)


@contextmanager
def lxml_value_errors(where: str) -> Iterator[None]:
    """Report lxml's refusal of a string (control characters, NUL) as a TAXIIMessageError."""
    try:
        yield
    except TAXIIMessageError:
        raise
    except ValueError as exc:
        raise TAXIIMessageError(f"{where}: {exc}") from None


def tag_name(msg: Message) -> str:
    """The local name of ``msg``'s root element in its version."""
    v11 = msg.version == VID_TAXII_XML_11
    match msg:
        case DiscoveryRequest():
            return "Discovery_Request"
        case DiscoveryResponse():
            return "Discovery_Response"
        case CollectionInformationRequest():
            return "Collection_Information_Request" if v11 else "Feed_Information_Request"
        case CollectionInformationResponse():
            return "Collection_Information_Response" if v11 else "Feed_Information_Response"
        case ManageCollectionSubscriptionRequest():
            return "Subscription_Management_Request"
        case ManageCollectionSubscriptionResponse():
            return "Subscription_Management_Response"
        case PollRequest():
            return "Poll_Request"
        case PollResponse():
            return "Poll_Response"
        case PollFulfillment():
            return "Poll_Fulfillment"
        case InboxMessage():
            return "Inbox_Message"
        case StatusMessage():
            return "Status_Message"
    raise TypeError(f"not a TAXII message class: {type(msg).__name__}")


class Writer:
    """Builds the elements of one message version."""

    def __init__(self, version: str) -> None:
        self.v11 = version == VID_TAXII_XML_11
        self.label = "TAXII 1.1" if self.v11 else "TAXII 1.0"
        self.ns = NAMESPACES[version]
        self.nsmap = {PREFIXES[version]: self.ns}
        self.version = version

    # --- small helpers ------------------------------------------------------------------------

    def q(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"

    def sub(self, parent: _Element, name: str, text: str | None = None) -> _Element:
        elem = etree.SubElement(parent, self.q(name))
        if text is not None:
            elem.text = text
        return elem

    def opt(self, parent: _Element, name: str, text: str | None) -> None:
        if text is not None:
            self.sub(parent, name, text)

    def stamp(self, parent: _Element, name: str, value: datetime | None) -> None:
        if value is not None:
            self.sub(parent, name, format_timestamp(value))

    def lacks(self, present: bool, what: str) -> None:
        """Refuse a field this version cannot carry (``present``: it is not at its default)."""
        if present:
            raise TAXIIMessageError(f"{self.label} has no {what}; leave it unset")

    def one_of(self, value: str, allowed: Iterable[str], what: str) -> str:
        allowed = tuple(allowed)
        if value not in allowed:
            raise TAXIIMessageError(
                f"{what}: {value!r} is not valid in {self.label} (one of {', '.join(allowed)})"
            )
        return value

    # --- messages ---------------------------------------------------------------------------

    def root(self, msg: Message) -> _Element:
        name = tag_name(msg)
        elem = etree.Element(self.q(name), nsmap=self.nsmap)
        check_message_id(msg.message_id, self.version, f"{name}/@message_id")
        elem.set("message_id", msg.message_id)
        if isinstance(msg, ResponseMessage):
            check_message_id(msg.in_response_to, self.version, f"{name}/@in_response_to")
            elem.set("in_response_to", msg.in_response_to)
        if msg.extended_headers:
            headers = self.sub(elem, "Extended_Headers")
            for header in msg.extended_headers:
                item = self.sub(headers, "Extended_Header")
                item.set("name", header.name)
                put_mixed(item, header.value.encode("utf-8"), "Extended_Header")
        return elem

    def message(self, msg: Message) -> _Element:
        match msg:
            case DiscoveryRequest() | CollectionInformationRequest():
                return self.root(msg)
            case DiscoveryResponse():
                return self.discovery_response(msg)
            case CollectionInformationResponse():
                return self.collection_information_response(msg)
            case ManageCollectionSubscriptionRequest():
                return self.subscription_request(msg)
            case ManageCollectionSubscriptionResponse():
                return self.subscription_response(msg)
            case PollRequest():
                return self.poll_request(msg)
            case PollResponse():
                elem = self.poll_response_head(msg)
                for block in msg.content_blocks:
                    self.content_block(elem, block)
                return elem
            case PollFulfillment():
                return self.poll_fulfillment(msg)
            case InboxMessage():
                return self.inbox_message(msg)
            case StatusMessage():
                return self.status_message(msg)
        raise TypeError(f"not a TAXII message class: {type(msg).__name__}")

    def discovery_response(self, msg: DiscoveryResponse) -> _Element:
        elem = self.root(msg)
        for service in msg.service_instances:
            self.service_instance(elem, service)
        return elem

    def collection_information_response(self, msg: CollectionInformationResponse) -> _Element:
        elem = self.root(msg)
        for collection in msg.collections:
            self.collection(elem, collection)
        return elem

    def subscription_request(self, msg: ManageCollectionSubscriptionRequest) -> _Element:
        elem = self.root(msg)
        elem.set("action", self.one_of(msg.action, ACTIONS[self.version], "action"))
        if self.v11:
            elem.set("collection_name", msg.collection_name)
            self.opt(elem, "Subscription_ID", msg.subscription_id)
            if msg.subscription_parameters is not None:
                self.subscription_parameters(elem, msg.subscription_parameters)
        else:
            self.lacks(msg.subscription_parameters is not None, "Subscription_Parameters")
            elem.set("feed_name", msg.collection_name)
            if msg.subscription_id is not None:
                elem.set("subscription_id", msg.subscription_id)
        if msg.push_parameters is not None:
            self.push_parameters(elem, "Push_Parameters", msg.push_parameters)
        return elem

    def subscription_response(self, msg: ManageCollectionSubscriptionResponse) -> _Element:
        elem = self.root(msg)
        elem.set("collection_name" if self.v11 else "feed_name", msg.collection_name)
        self.opt(elem, "Message", msg.message)
        for subscription in msg.subscriptions:
            self.subscription_instance(elem, subscription)
        return elem

    def poll_request(self, msg: PollRequest) -> _Element:
        elem = self.root(msg)
        if self.v11:
            self.lacks(
                bool(msg.content_bindings), "Poll_Request/Content_Binding (see poll_parameters)"
            )
            if (msg.subscription_id is None) == (msg.poll_parameters is None):
                raise TAXIIMessageError(
                    "TAXII 1.1 Poll_Request needs one of subscription_id and poll_parameters"
                )
            elem.set("collection_name", msg.collection_name)
        else:
            self.lacks(msg.poll_parameters is not None, "Poll_Parameters (use content_bindings)")
            elem.set("feed_name", msg.collection_name)
            if msg.subscription_id is not None:
                elem.set("subscription_id", msg.subscription_id)
        self.stamp(elem, "Exclusive_Begin_Timestamp", msg.exclusive_begin_timestamp)
        self.stamp(elem, "Inclusive_End_Timestamp", msg.inclusive_end_timestamp)
        if self.v11:
            self.opt(elem, "Subscription_ID", msg.subscription_id)
            if msg.poll_parameters is not None:
                self.poll_parameters(elem, msg.poll_parameters)
        else:
            self.content_bindings(elem, msg.content_bindings)
        return elem

    def poll_response_head(self, msg: PollResponse) -> _Element:
        """The Poll_Response element with everything but its content blocks."""
        elem = self.root(msg)
        if self.v11:
            self.lacks(msg.inclusive_begin_timestamp is not None, "Inclusive_Begin_Timestamp")
            if msg.result_part_number < 1:
                raise TAXIIMessageError("Poll_Response/@result_part_number must be at least 1")
            elem.set("collection_name", msg.collection_name)
            elem.set("more", format_bool(msg.more))
            if msg.result_id is not None:
                elem.set("result_id", msg.result_id)
            elem.set("result_part_number", str(msg.result_part_number))
            self.opt(elem, "Subscription_ID", msg.subscription_id)
            self.stamp(elem, "Exclusive_Begin_Timestamp", msg.exclusive_begin_timestamp)
            self.stamp(elem, "Inclusive_End_Timestamp", msg.inclusive_end_timestamp)
            if msg.record_count is not None:
                self.record_count(elem, msg.record_count)
            self.opt(elem, "Message", msg.message)
        else:
            self.lacks(msg.more, "Poll_Response/@more")
            self.lacks(msg.result_id is not None, "Poll_Response/@result_id")
            self.lacks(msg.result_part_number != 1, "Poll_Response/@result_part_number")
            self.lacks(msg.record_count is not None, "Record_Count")
            self.lacks(msg.exclusive_begin_timestamp is not None, "Exclusive_Begin_Timestamp")
            if msg.inclusive_end_timestamp is None:
                raise TAXIIMessageError("TAXII 1.0 Poll_Response needs inclusive_end_timestamp")
            elem.set("feed_name", msg.collection_name)
            if msg.subscription_id is not None:
                elem.set("subscription_id", msg.subscription_id)
            self.opt(elem, "Message", msg.message)
            self.stamp(elem, "Inclusive_Begin_Timestamp", msg.inclusive_begin_timestamp)
            self.stamp(elem, "Inclusive_End_Timestamp", msg.inclusive_end_timestamp)
        return elem

    def poll_fulfillment(self, msg: PollFulfillment) -> _Element:
        self.lacks(not self.v11, "Poll_Fulfillment message")
        if msg.result_part_number < 1:
            raise TAXIIMessageError("Poll_Fulfillment/@result_part_number must be at least 1")
        elem = self.root(msg)
        elem.set("collection_name", msg.collection_name)
        elem.set("result_id", msg.result_id)
        elem.set("result_part_number", str(msg.result_part_number))
        return elem

    def inbox_message(self, msg: InboxMessage) -> _Element:
        elem = self.root(msg)
        if not self.v11:
            self.lacks(msg.result_id is not None, "Inbox_Message/@result_id")
            self.lacks(bool(msg.destination_collection_names), "Destination_Collection_Name")
            self.lacks(msg.record_count is not None, "Record_Count")
        if msg.result_id is not None:
            elem.set("result_id", msg.result_id)
        for name in msg.destination_collection_names:
            self.sub(elem, "Destination_Collection_Name", name)
        self.opt(elem, "Message", msg.message)
        if msg.source_subscription is not None:
            self.source_subscription(elem, msg.source_subscription)
        if msg.record_count is not None:
            self.record_count(elem, msg.record_count)
        for block in msg.content_blocks:
            self.content_block(elem, block)
        return elem

    def status_message(self, msg: StatusMessage) -> _Element:
        elem = self.root(msg)
        elem.set("status_type", msg.status_type)
        if self.v11:
            self.lacks(msg.detail_text is not None, "free-text Status_Detail (use details)")
            if msg.details:
                details = self.sub(elem, "Status_Detail")
                for detail in msg.details:
                    item = self.sub(details, "Detail")
                    item.set("name", detail.name)
                    put_mixed(item, detail.value.encode("utf-8"), "Status_Detail/Detail")
        else:
            self.lacks(bool(msg.details), "named Status_Detail items (use detail_text)")
            self.opt(elem, "Status_Detail", msg.detail_text)
        self.opt(elem, "Message", msg.message)
        return elem

    # --- parts ------------------------------------------------------------------------------

    def bindings(
        self, parent: _Element, protocol: str, address: str, message_bindings: tuple[str, ...]
    ) -> None:
        self.sub(parent, "Protocol_Binding", protocol)
        self.sub(parent, "Address", address)
        for binding in message_bindings:
            self.sub(parent, "Message_Binding", binding)

    def content_bindings(self, parent: _Element, bindings: tuple[ContentBinding, ...]) -> None:
        """Content_Binding elements: an attribute with subtypes in 1.1, plain text in 1.0."""
        for binding in bindings:
            if self.v11:
                elem = self.sub(parent, "Content_Binding")
                elem.set("binding_id", binding.binding_id)
                for subtype in binding.subtypes:
                    self.sub(elem, "Subtype").set("subtype_id", subtype)
            else:
                self.lacks(bool(binding.subtypes), "content binding subtypes")
                self.sub(parent, "Content_Binding", binding.binding_id)

    def query(self, parent: _Element, name: str, query: Query) -> None:
        elem = self.sub(parent, name)
        elem.set("format_id", query.format_id)
        put_mixed(elem, query.content, name)

    def service_instance(self, parent: _Element, service: ServiceInstance) -> None:
        elem = self.sub(parent, "Service_Instance")
        types = SERVICE_TYPES[self.version]
        elem.set("service_type", self.one_of(service.service_type, types, "service_type"))
        elem.set("service_version", service.services_version)
        if service.available is not None:
            elem.set("available", format_bool(service.available))
        self.bindings(elem, service.protocol_binding, service.address, service.message_bindings)
        self.lacks(bool(service.supported_queries) and not self.v11, "Supported_Query")
        for query in service.supported_queries:
            self.query(elem, "Supported_Query", query)
        self.content_bindings(elem, service.content_bindings)
        self.opt(elem, "Message", service.message)

    def collection(self, parent: _Element, collection: Collection) -> None:
        if self.v11:
            elem = self.sub(parent, "Collection")
            elem.set("collection_name", collection.collection_name)
            kind = self.one_of(collection.collection_type, COLLECTION_TYPES, "collection_type")
            elem.set("collection_type", kind)
        else:
            self.lacks(collection.collection_type != CT_DATA_FEED, "collection_type but DATA_FEED")
            self.lacks(collection.volume is not None, "Collection_Volume")
            self.lacks(bool(collection.receiving_inbox_services), "Receiving_Inbox_Service")
            elem = self.sub(parent, "Feed")
            elem.set("feed_name", collection.collection_name)
        if collection.available is not None:
            elem.set("available", format_bool(collection.available))
        self.sub(elem, "Description", collection.description)
        if collection.volume is not None:
            if collection.volume < 0:
                raise TAXIIMessageError("Collection_Volume must not be negative")
            self.sub(elem, "Collection_Volume", str(collection.volume))
        self.content_bindings(elem, collection.content_bindings)
        for method in collection.push_methods:
            item = self.sub(elem, "Push_Method")
            self.sub(item, "Protocol_Binding", method.protocol_binding)
            for binding in method.message_bindings:
                self.sub(item, "Message_Binding", binding)
        for contact in collection.polling_services:
            item = self.sub(elem, "Polling_Service")
            self.bindings(item, contact.protocol_binding, contact.address, contact.message_bindings)
        for contact in collection.subscription_services:
            item = self.sub(elem, "Subscription_Service")
            self.bindings(item, contact.protocol_binding, contact.address, contact.message_bindings)
        for inbox in collection.receiving_inbox_services:
            item = self.sub(elem, "Receiving_Inbox_Service")
            self.bindings(item, inbox.protocol_binding, inbox.address, inbox.message_bindings)
            self.content_bindings(item, inbox.content_bindings)

    def push_parameters(self, parent: _Element, name: str, params: PushParameters) -> None:
        elem = self.sub(parent, name)
        self.sub(elem, "Protocol_Binding", params.protocol_binding)
        self.sub(elem, "Address", params.address)
        self.sub(elem, "Message_Binding", params.message_binding)
        if self.v11:
            self.lacks(bool(params.content_bindings), f"{name}/Content_Binding")
        self.content_bindings(elem, params.content_bindings)

    def subscription_parameters(self, parent: _Element, params: SubscriptionParameters) -> None:
        elem = self.sub(parent, "Subscription_Parameters")
        rtype = self.one_of(params.response_type, RESPONSE_TYPES, "Response_Type")
        self.sub(elem, "Response_Type", rtype)
        self.content_bindings(elem, params.content_bindings)
        if params.query is not None:
            self.query(elem, "Query", params.query)

    def poll_parameters(self, parent: _Element, params: PollParameters) -> None:
        elem = self.sub(parent, "Poll_Parameters")
        elem.set("allow_asynch", format_bool(params.allow_asynch))
        rtype = self.one_of(params.response_type, RESPONSE_TYPES, "Response_Type")
        self.sub(elem, "Response_Type", rtype)
        self.content_bindings(elem, params.content_bindings)
        if params.query is not None:
            self.query(elem, "Query", params.query)
        if params.delivery_parameters is not None:
            self.push_parameters(elem, "Delivery_Parameters", params.delivery_parameters)

    def subscription_instance(self, parent: _Element, sub: SubscriptionInstance) -> None:
        elem = self.sub(parent, "Subscription")
        if self.v11:
            elem.set("status", self.one_of(sub.status, SUBSCRIPTION_STATUSES, "status"))
            self.sub(elem, "Subscription_ID", sub.subscription_id)
            if sub.subscription_parameters is not None:
                self.subscription_parameters(elem, sub.subscription_parameters)
        else:
            self.lacks(sub.status != SS_ACTIVE, "subscription status")
            self.lacks(sub.subscription_parameters is not None, "Subscription_Parameters")
            elem.set("subscription_id", sub.subscription_id)
        if sub.push_parameters is not None:
            self.push_parameters(elem, "Push_Parameters", sub.push_parameters)
        for contact in sub.poll_instances:
            item = self.sub(elem, "Poll_Instance")
            self.bindings(item, contact.protocol_binding, contact.address, contact.message_bindings)

    def source_subscription(self, parent: _Element, source: SourceSubscription) -> None:
        elem = self.sub(parent, "Source_Subscription")
        if self.v11:
            self.lacks(source.inclusive_begin_timestamp is not None, "Inclusive_Begin_Timestamp")
            if source.subscription_id is None:
                raise TAXIIMessageError("TAXII 1.1 Source_Subscription needs a subscription_id")
            elem.set("collection_name", source.collection_name)
            self.sub(elem, "Subscription_ID", source.subscription_id)
            self.stamp(elem, "Exclusive_Begin_Timestamp", source.exclusive_begin_timestamp)
        else:
            self.lacks(source.exclusive_begin_timestamp is not None, "Exclusive_Begin_Timestamp")
            if source.inclusive_end_timestamp is None:
                raise TAXIIMessageError(
                    "TAXII 1.0 Source_Subscription needs an inclusive_end_timestamp"
                )
            elem.set("feed_name", source.collection_name)
            if source.subscription_id is not None:
                elem.set("subscription_id", source.subscription_id)
            self.stamp(elem, "Inclusive_Begin_Timestamp", source.inclusive_begin_timestamp)
        self.stamp(elem, "Inclusive_End_Timestamp", source.inclusive_end_timestamp)

    def record_count(self, parent: _Element, count: RecordCount) -> None:
        if count.count < 0:
            raise TAXIIMessageError("Record_Count must not be negative")
        elem = self.sub(parent, "Record_Count", str(count.count))
        elem.set("partial_count", format_bool(count.partial))

    def content_block(self, parent: _Element, block: ContentBlock) -> _Element:
        elem = self.sub(parent, "Content_Block")
        if len(block.content_binding.subtypes) > 1:
            raise TAXIIMessageError("a Content_Block's binding has at most one subtype")
        self.lacks(block.message is not None and not self.v11, "Content_Block/Message")
        self.content_bindings(elem, (block.content_binding,))
        put_mixed(self.sub(elem, "Content"), block.content, "Content_Block/Content")
        self.stamp(elem, "Timestamp_Label", block.timestamp_label)
        self.opt(elem, "Message", block.message)
        self.opt(elem, "Padding", block.padding)
        return elem
