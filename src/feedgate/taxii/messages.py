"""TAXII 1.0 and 1.1 XML messages: typed classes that parse and serialise.

>>> from feedgate.taxii import messages as tm
>>> request = tm.PollRequest(
...     message_id="1",
...     collection_name="user_AlienVault",
...     poll_parameters=tm.PollParameters(),
... )
>>> tm.parse(request.to_xml()) == request
True

* :func:`parse` reads any message of either version (whole, from bytes); each class has
  ``to_xml()``. A message's ``version`` is its message binding id (``VID_TAXII_XML_11`` by
  default, or ``VID_TAXII_XML_10``); one class serves both versions (see ``_model`` for the
  1.0 names of the renamed messages).
* :func:`new_message_id` makes an id the version allows (TAXII 1.0: digits only; ``to_xml``
  refuses any other 1.0 id, as the 1.0 schema and the servers that check it do).
* :func:`iter_poll_response` / :class:`PollResponseReader` read a Poll_Response as a stream,
  :func:`iter_poll_response_xml` writes one; use them for polls, whose answers can be huge.
* Content payloads follow the Content rule of the peers: XML is embedded as an element, anything
  else is text; they are kept as bytes.

Errors: a message that breaks the TAXII rules raises :class:`TAXIIMessageError` (a
``ValueError``); XML that is not well-formed or is hostile (DOCTYPE, entities, limits) raises
:class:`feedgate.xml.XMLParseError` or its subclasses, unchanged.

This module is the public face; the pieces live in private modules with one job each:
``_constants`` (ids), ``_values`` (timestamps and other typed text), ``_content`` (the Content
rule), ``_parts`` and ``_model`` (the classes), ``_writer`` and ``_reader`` (XML), ``_stream``.
"""

from __future__ import annotations

from ..xml import parse_bytes
from ._constants import (
    ACT_PAUSE,
    ACT_RESUME,
    ACT_STATUS,
    ACT_SUBSCRIBE,
    ACT_UNSUBSCRIBE,
    ACTIONS,
    CB_CAP_11,
    CB_SMIME,
    CB_STIX_XML_10,
    CB_STIX_XML_11,
    CB_STIX_XML_12,
    CB_STIX_XML_101,
    CB_STIX_XML_111,
    CB_XENC_122002,
    COLLECTION_TYPES,
    CT_DATA_FEED,
    CT_DATA_SET,
    FID_TAXII_DEFAULT_QUERY_10,
    MESSAGE_BINDINGS,
    NAMESPACES,
    NS_TAXII_DEFAULT_QUERY_10,
    NS_TAXII_XML_10,
    NS_TAXII_XML_11,
    NS_XMLDSIG,
    PREFIXES,
    RESPONSE_TYPES,
    RT_COUNT_ONLY,
    RT_FULL,
    SD_ACCEPTABLE_DESTINATION,
    SD_ESTIMATED_WAIT,
    SD_ITEM,
    SD_MAX_PART_NUMBER,
    SD_RESULT_ID,
    SD_SUPPORTED_BINDING,
    SD_SUPPORTED_CONTENT,
    SD_SUPPORTED_PROTOCOL,
    SD_SUPPORTED_QUERY,
    SD_WILL_PUSH,
    SERVICE_TYPES,
    SS_ACTIVE,
    SS_PAUSED,
    SS_UNSUBSCRIBED,
    ST_ASYNCHRONOUS_POLL_ERROR,
    ST_BAD_MESSAGE,
    ST_DENIED,
    ST_DESTINATION_COLLECTION_ERROR,
    ST_FAILURE,
    ST_INVALID_RESPONSE_PART,
    ST_NETWORK_ERROR,
    ST_NOT_FOUND,
    ST_PENDING,
    ST_POLLING_UNSUPPORTED,
    ST_RETRY,
    ST_SUCCESS,
    ST_UNAUTHORIZED,
    ST_UNSUPPORTED_CONTENT,
    ST_UNSUPPORTED_MESSAGE,
    ST_UNSUPPORTED_PROTOCOL,
    ST_UNSUPPORTED_QUERY,
    SUBSCRIPTION_STATUSES,
    SVC_COLLECTION_MANAGEMENT,
    SVC_DISCOVERY,
    SVC_FEED_MANAGEMENT,
    SVC_INBOX,
    SVC_POLL,
    VID_TAXII_HTTP_10,
    VID_TAXII_HTTPS_10,
    VID_TAXII_SERVICES_10,
    VID_TAXII_SERVICES_11,
    VID_TAXII_XML_10,
    VID_TAXII_XML_11,
)
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
from ._reader import read_message
from ._stream import PollResponseReader, iter_poll_response, iter_poll_response_xml
from ._values import new_message_id

#: Default cap on the size of a message given to :func:`parse` (polls: use the stream reader).
MAX_MESSAGE_BYTES = 64 * 1024**2


def parse(data: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """Parse a whole TAXII 1.0 or 1.1 message; the root element decides version and type."""
    return read_message(parse_bytes(data, max_bytes=max_bytes))


__all__ = [  # noqa: RUF022 - grouped by kind, not sorted
    # functions
    "parse",
    "new_message_id",
    "iter_poll_response",
    "iter_poll_response_xml",
    "PollResponseReader",
    "TAXIIMessageError",
    "MAX_MESSAGE_BYTES",
    # messages
    "Message",
    "ResponseMessage",
    "DiscoveryRequest",
    "DiscoveryResponse",
    "CollectionInformationRequest",
    "CollectionInformationResponse",
    "ManageCollectionSubscriptionRequest",
    "ManageCollectionSubscriptionResponse",
    "PollRequest",
    "PollResponse",
    "PollFulfillment",
    "InboxMessage",
    "StatusMessage",
    # parts
    "Collection",
    "ContentBinding",
    "ContentBlock",
    "ExtendedHeader",
    "InboxService",
    "PollParameters",
    "PushMethod",
    "PushParameters",
    "Query",
    "RecordCount",
    "ServiceContact",
    "ServiceInstance",
    "SourceSubscription",
    "StatusDetail",
    "SubscriptionInstance",
    "SubscriptionParameters",
    # constants
    "VID_TAXII_XML_10",
    "VID_TAXII_XML_11",
    "VID_TAXII_SERVICES_10",
    "VID_TAXII_SERVICES_11",
    "VID_TAXII_HTTP_10",
    "VID_TAXII_HTTPS_10",
    "MESSAGE_BINDINGS",
    "NS_TAXII_XML_10",
    "NS_TAXII_XML_11",
    "NS_TAXII_DEFAULT_QUERY_10",
    "NS_XMLDSIG",
    "NAMESPACES",
    "PREFIXES",
    "CB_STIX_XML_10",
    "CB_STIX_XML_101",
    "CB_STIX_XML_11",
    "CB_STIX_XML_111",
    "CB_STIX_XML_12",
    "CB_CAP_11",
    "CB_XENC_122002",
    "CB_SMIME",
    "FID_TAXII_DEFAULT_QUERY_10",
    "ST_ASYNCHRONOUS_POLL_ERROR",
    "ST_BAD_MESSAGE",
    "ST_DENIED",
    "ST_DESTINATION_COLLECTION_ERROR",
    "ST_FAILURE",
    "ST_INVALID_RESPONSE_PART",
    "ST_NETWORK_ERROR",
    "ST_NOT_FOUND",
    "ST_PENDING",
    "ST_POLLING_UNSUPPORTED",
    "ST_RETRY",
    "ST_SUCCESS",
    "ST_UNAUTHORIZED",
    "ST_UNSUPPORTED_MESSAGE",
    "ST_UNSUPPORTED_CONTENT",
    "ST_UNSUPPORTED_PROTOCOL",
    "ST_UNSUPPORTED_QUERY",
    "SD_ACCEPTABLE_DESTINATION",
    "SD_MAX_PART_NUMBER",
    "SD_ITEM",
    "SD_ESTIMATED_WAIT",
    "SD_RESULT_ID",
    "SD_WILL_PUSH",
    "SD_SUPPORTED_BINDING",
    "SD_SUPPORTED_CONTENT",
    "SD_SUPPORTED_PROTOCOL",
    "SD_SUPPORTED_QUERY",
    "SVC_DISCOVERY",
    "SVC_INBOX",
    "SVC_POLL",
    "SVC_COLLECTION_MANAGEMENT",
    "SVC_FEED_MANAGEMENT",
    "SERVICE_TYPES",
    "ACT_SUBSCRIBE",
    "ACT_UNSUBSCRIBE",
    "ACT_PAUSE",
    "ACT_RESUME",
    "ACT_STATUS",
    "ACTIONS",
    "SS_ACTIVE",
    "SS_PAUSED",
    "SS_UNSUBSCRIBED",
    "SUBSCRIPTION_STATUSES",
    "RT_FULL",
    "RT_COUNT_ONLY",
    "RESPONSE_TYPES",
    "CT_DATA_FEED",
    "CT_DATA_SET",
    "COLLECTION_TYPES",
]
