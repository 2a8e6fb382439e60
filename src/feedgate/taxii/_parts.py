"""The building blocks that TAXII messages are made of: bindings, services, content blocks.

One set of classes serves TAXII 1.0 and 1.1. Where the versions differ, the field's docstring
says which version has it; a field a version cannot carry must keep its default when a message
of that version is serialised (``to_xml`` raises :class:`TAXIIMessageError` otherwise), so data
is never dropped silently.

All classes are frozen, slotted dataclasses with keyword-only fields: messages are values that
compare equal field by field (which is what round-trip tests and interop checks rely on), and
keyword-only construction keeps call sites readable for types with many optional fields.
Sequences are tuples so that equality and hashing work.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ._constants import CT_DATA_FEED, RT_FULL, SS_ACTIVE
from ._content import ContentLike, content_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentBinding:
    """A content binding id (e.g. ``CB_STIX_XML_111``) with optional subtype ids.

    Subtypes are TAXII 1.1 only. In a content block there is at most one subtype.
    """

    binding_id: str
    subtypes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceContact:
    """Where and how to reach a service: Polling_Service, Subscription_Service, Poll_Instance."""

    protocol_binding: str
    address: str
    message_bindings: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxService:
    """A collection's Receiving_Inbox_Service (TAXII 1.1): a contact plus accepted content."""

    protocol_binding: str
    address: str
    message_bindings: tuple[str, ...]
    content_bindings: tuple[ContentBinding, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PushMethod:
    """A protocol and message bindings over which a collection can push content."""

    protocol_binding: str
    message_bindings: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class PushParameters:
    """Where to push content: Push_Parameters, and Delivery_Parameters of a 1.1 poll.

    ``content_bindings`` exists only in TAXII 1.0 (in 1.1 they live in the subscription or poll
    parameters).
    """

    protocol_binding: str
    address: str
    message_binding: str
    content_bindings: tuple[ContentBinding, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """A query (or a Supported_Query description), kept opaque: ``format_id`` and its payload.

    feedgate never evaluates TAXII queries; it only carries them so that nothing a peer sends
    is lost on a round trip. ``content`` follows the Content rule (usually a ``Default_Query``
    element serialised with its namespace declarations).
    """

    format_id: str
    content: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendedHeader:
    """One Extended_Header: a name (a URI) and a value (text, or XML by the Content rule)."""

    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordCount:
    """How many records a poll matched (TAXII 1.1); ``partial`` when it is a lower bound."""

    count: int
    partial: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusDetail:
    """One TAXII 1.1 status detail: a name (``SD_*`` or a URI) and its value as text.

    Values stay text so that a peer's malformed detail (a non-numeric ESTIMATED_WAIT, say) never
    hides the status itself; :class:`StatusMessage` offers typed accessors.
    """

    name: str
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceInstance:
    """One service in a Discovery_Response.

    ``supported_queries`` is TAXII 1.1 only; content binding subtypes likewise.
    ``content_bindings`` lists what an INBOX service accepts.
    """

    service_type: str
    services_version: str
    protocol_binding: str
    address: str
    message_bindings: tuple[str, ...]
    available: bool | None = None
    supported_queries: tuple[Query, ...] = ()
    content_bindings: tuple[ContentBinding, ...] = ()
    message: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Collection:
    """A collection (TAXII 1.1) or feed (TAXII 1.0) in an information response.

    TAXII 1.0 has no ``collection_type`` (a feed is a data feed), ``volume`` or
    ``receiving_inbox_services``. ``subscription_services`` are the services that manage
    subscriptions to it; ``push_methods`` how it can push content to subscribers.
    """

    collection_name: str
    description: str = ""
    collection_type: str = CT_DATA_FEED
    available: bool | None = None
    volume: int | None = None
    content_bindings: tuple[ContentBinding, ...] = ()
    push_methods: tuple[PushMethod, ...] = ()
    polling_services: tuple[ServiceContact, ...] = ()
    subscription_services: tuple[ServiceContact, ...] = ()
    receiving_inbox_services: tuple[InboxService, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PollParameters:
    """What a TAXII 1.1 poll without a subscription asks for."""

    allow_asynch: bool = False
    response_type: str = RT_FULL
    content_bindings: tuple[ContentBinding, ...] = ()
    query: Query | None = None
    delivery_parameters: PushParameters | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionParameters:
    """What a TAXII 1.1 subscription delivers."""

    response_type: str = RT_FULL
    content_bindings: tuple[ContentBinding, ...] = ()
    query: Query | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionInstance:
    """One subscription in a subscription management response.

    ``status`` and ``subscription_parameters`` are TAXII 1.1 only.
    """

    subscription_id: str
    status: str = SS_ACTIVE
    subscription_parameters: SubscriptionParameters | None = None
    push_parameters: PushParameters | None = None
    poll_instances: tuple[ServiceContact, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceSubscription:
    """The subscription an Inbox_Message's content comes from.

    The window is (exclusive begin, inclusive end] in TAXII 1.1 and [inclusive begin, inclusive
    end] in TAXII 1.0, hence two begin fields of which each version uses one. ``subscription_id``
    is required in 1.1; ``inclusive_end_timestamp`` is required in 1.0.
    """

    collection_name: str
    subscription_id: str | None = None
    exclusive_begin_timestamp: datetime | None = None
    inclusive_begin_timestamp: datetime | None = None
    inclusive_end_timestamp: datetime | None = None


@dataclass(frozen=True, slots=True, init=False)
class ContentBlock:
    """One piece of content (a STIX package, usually) with its binding and labels.

    ``content`` is always bytes; it may be given as bytes, str or an lxml element (see the
    Content rule in ``_content``: XML is embedded as an element, anything else is text).
    ``message`` and binding subtypes are TAXII 1.1 only; ``padding`` is opaque filler.
    """

    content_binding: ContentBinding
    content: bytes
    timestamp_label: datetime | None
    message: str | None
    padding: str | None

    def __init__(
        self,
        *,
        content_binding: ContentBinding,
        content: ContentLike,
        timestamp_label: datetime | None = None,
        message: str | None = None,
        padding: str | None = None,
    ) -> None:
        object.__setattr__(self, "content_binding", content_binding)
        object.__setattr__(self, "content", content_bytes(content))
        object.__setattr__(self, "timestamp_label", timestamp_label)
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "padding", padding)
