"""The TAXII messages, one class per message type for both TAXII 1.0 and 1.1.

A message's ``version`` is its message binding id (``VID_TAXII_XML_11`` by default, or
``VID_TAXII_XML_10``): the same string the HTTP binding puts in X-TAXII-Content-Type. One class
covers both versions so that the client, the poller and the CLIs handle a 1.0 and a 1.1 source
with the same code; the renamings are done on the wire:

==============================  =====================================================
class                           TAXII 1.1 element / TAXII 1.0 element
==============================  =====================================================
CollectionInformationRequest    Collection_Information_Request / Feed_Information_Request
CollectionInformationResponse   Collection_Information_Response / Feed_Information_Response
ManageCollectionSubscription*   Subscription_Management_* (collection_name / feed_name)
PollRequest, PollResponse       Poll_* (collection_name / feed_name)
PollFulfillment                 Poll_Fulfillment / (none: TAXII 1.0 has no Poll Fulfillment)
==============================  =====================================================

Fields one version lacks are documented as such and must keep their default in a message of
that version; ``to_xml`` refuses to drop them silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ._constants import (
    MESSAGE_BINDINGS,
    SD_ESTIMATED_WAIT,
    SD_MAX_PART_NUMBER,
    SD_RESULT_ID,
    SD_WILL_PUSH,
    VID_TAXII_XML_11,
)
from ._errors import TAXIIMessageError
from ._parts import (
    Collection,
    ContentBinding,
    ContentBlock,
    ExtendedHeader,
    PollParameters,
    PushParameters,
    RecordCount,
    ServiceInstance,
    SourceSubscription,
    StatusDetail,
    SubscriptionInstance,
    SubscriptionParameters,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """What every TAXII message has: an id, a version and optional extended headers."""

    message_id: str
    version: str = VID_TAXII_XML_11
    extended_headers: tuple[ExtendedHeader, ...] = ()

    def __post_init__(self) -> None:
        if self.version not in MESSAGE_BINDINGS:
            raise TAXIIMessageError(
                f"unknown TAXII message binding {self.version!r}; "
                f"expected one of {', '.join(MESSAGE_BINDINGS)}"
            )

    def to_xml(self) -> bytes:
        """Serialise as UTF-8 XML (no XML declaration), in this message's version."""
        from ._writer import message_xml  # the writer imports this module

        return message_xml(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseMessage(Message):
    """A message that answers another: it names the request's message id."""

    in_response_to: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryRequest(Message):
    """Asks a discovery service which services the server offers."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryResponse(ResponseMessage):
    """The services a server offers."""

    service_instances: tuple[ServiceInstance, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectionInformationRequest(Message):
    """Asks which collections (1.1) or feeds (1.0) a server has."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectionInformationResponse(ResponseMessage):
    """The collections (1.1) or feeds (1.0) a server has."""

    collections: tuple[Collection, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ManageCollectionSubscriptionRequest(Message):
    """Subscribe to, unsubscribe from, pause, resume or query a subscription.

    PAUSE and RESUME, and ``subscription_parameters``, are TAXII 1.1 only.
    """

    collection_name: str
    action: str
    subscription_id: str | None = None
    subscription_parameters: SubscriptionParameters | None = None
    push_parameters: PushParameters | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ManageCollectionSubscriptionResponse(ResponseMessage):
    """The state of the subscriptions a management request touched."""

    collection_name: str
    message: str | None = None
    subscriptions: tuple[SubscriptionInstance, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PollRequest(Message):
    """Asks for a collection's content in the window (exclusive begin, inclusive end].

    In TAXII 1.1 a poll names either a ``subscription_id`` or ``poll_parameters`` (exactly one).
    TAXII 1.0 has no poll parameters; its wanted content bindings are ``content_bindings``
    (a 1.0-only field).
    """

    collection_name: str
    subscription_id: str | None = None
    exclusive_begin_timestamp: datetime | None = None
    inclusive_end_timestamp: datetime | None = None
    poll_parameters: PollParameters | None = None
    content_bindings: tuple[ContentBinding, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PollResponse(ResponseMessage):
    """Content of a collection for a window, possibly one part of a multi-part result.

    When ``more`` is true the client fetches part ``result_part_number + 1`` of ``result_id``
    with a :class:`PollFulfillment`. ``more``, ``result_id``, ``result_part_number``,
    ``record_count`` and ``exclusive_begin_timestamp`` are TAXII 1.1; TAXII 1.0 has an
    inclusive begin instead (``inclusive_begin_timestamp``) and requires
    ``inclusive_end_timestamp``.
    """

    collection_name: str
    more: bool = False
    result_id: str | None = None
    result_part_number: int = 1
    subscription_id: str | None = None
    exclusive_begin_timestamp: datetime | None = None
    inclusive_begin_timestamp: datetime | None = None
    inclusive_end_timestamp: datetime | None = None
    record_count: RecordCount | None = None
    message: str | None = None
    content_blocks: tuple[ContentBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PollFulfillment(Message):
    """Asks for one part of a multi-part poll result (TAXII 1.1 only)."""

    collection_name: str
    result_id: str
    result_part_number: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxMessage(Message):
    """Pushes content to an inbox service.

    ``result_id``, ``destination_collection_names`` and ``record_count`` are TAXII 1.1 only.
    """

    message: str | None = None
    result_id: str | None = None
    destination_collection_names: tuple[str, ...] = ()
    source_subscription: SourceSubscription | None = None
    record_count: RecordCount | None = None
    content_blocks: tuple[ContentBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusMessage(ResponseMessage):
    """Success, or an error with a type (``ST_*`` or any URI) and details.

    TAXII 1.1 details are named (``details``); TAXII 1.0 has one free-text detail
    (``detail_text``), whose meaning depends on the status type.
    """

    status_type: str
    details: tuple[StatusDetail, ...] = ()
    detail_text: str | None = None
    message: str | None = None

    def detail_values(self, name: str) -> tuple[str, ...]:
        """All values of the named 1.1 detail (SUPPORTED_* details repeat)."""
        return tuple(d.value for d in self.details if d.name == name)

    def detail(self, name: str) -> str | None:
        """The first value of the named 1.1 detail, or None."""
        values = self.detail_values(name)
        return values[0] if values else None

    @property
    def estimated_wait(self) -> int | None:
        """Seconds to wait before retrying (RETRY, PENDING), if given as a whole number."""
        return _whole_number(self.detail(SD_ESTIMATED_WAIT))

    @property
    def max_part_number(self) -> int | None:
        """The last valid part number (INVALID_RESPONSE_PART), if given as a whole number."""
        return _whole_number(self.detail(SD_MAX_PART_NUMBER))

    @property
    def result_id(self) -> str | None:
        """The result id of an asynchronous poll (PENDING)."""
        value = self.detail(SD_RESULT_ID)
        return value.strip() if value is not None else None

    @property
    def will_push(self) -> bool | None:
        """Whether a PENDING result will be pushed, if stated as true or false."""
        value = (self.detail(SD_WILL_PUSH) or "").strip()
        return {"true": True, "1": True, "false": False, "0": False}.get(value)


def _whole_number(text: str | None) -> int | None:
    value = (text or "").strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 30 else None
