"""Identifiers and enumerated values of TAXII 1.0 and 1.1, spelled exactly as on the wire.

They are plain strings rather than enums: several of them are open-ended on the wire (a status
type may be any URI, a content binding any URN), and the HTTP layer copies the version ids into
headers verbatim. Keeping them as ``str`` lets a value read from a peer and a constant compare
equal without conversion.
"""

from __future__ import annotations

from typing import Final

# --- Versions: message bindings (also the X-TAXII-Content-Type header), services, protocols ----
VID_TAXII_XML_10: Final = "urn:taxii.mitre.org:message:xml:1.0"
VID_TAXII_XML_11: Final = "urn:taxii.mitre.org:message:xml:1.1"
VID_TAXII_SERVICES_10: Final = "urn:taxii.mitre.org:services:1.0"
VID_TAXII_SERVICES_11: Final = "urn:taxii.mitre.org:services:1.1"
VID_TAXII_HTTP_10: Final = "urn:taxii.mitre.org:protocol:http:1.0"
VID_TAXII_HTTPS_10: Final = "urn:taxii.mitre.org:protocol:https:1.0"

#: The message bindings this package reads and writes.
MESSAGE_BINDINGS: Final = (VID_TAXII_XML_10, VID_TAXII_XML_11)

# --- XML namespaces of the message bindings, and the prefixes we write them with ---------------
NS_TAXII_XML_10: Final = "http://taxii.mitre.org/messages/taxii_xml_binding-1"
NS_TAXII_XML_11: Final = "http://taxii.mitre.org/messages/taxii_xml_binding-1.1"
NS_TAXII_DEFAULT_QUERY_10: Final = "http://taxii.mitre.org/query/taxii_default_query-1"
NS_XMLDSIG: Final = "http://www.w3.org/2000/09/xmldsig#"

#: Message binding id -> XML namespace.
NAMESPACES: Final = {VID_TAXII_XML_10: NS_TAXII_XML_10, VID_TAXII_XML_11: NS_TAXII_XML_11}
#: The prefixes used by the TAXII specifications' own examples (and by libtaxii).
PREFIXES: Final = {VID_TAXII_XML_10: "taxii", VID_TAXII_XML_11: "taxii_11"}

# --- Content bindings --------------------------------------------------------------------------
CB_STIX_XML_10: Final = "urn:stix.mitre.org:xml:1.0"
CB_STIX_XML_101: Final = "urn:stix.mitre.org:xml:1.0.1"
CB_STIX_XML_11: Final = "urn:stix.mitre.org:xml:1.1"
CB_STIX_XML_111: Final = "urn:stix.mitre.org:xml:1.1.1"
CB_STIX_XML_12: Final = "urn:stix.mitre.org:xml:1.2"
CB_CAP_11: Final = "urn:oasis:names:tc:emergency:cap:1.1"
CB_XENC_122002: Final = "http://www.w3.org/2001/04/xmlenc#"
CB_SMIME: Final = "application/x-pkcs7-mime"

#: Query format of the TAXII Default Query (kept opaque here, see ``Query``).
FID_TAXII_DEFAULT_QUERY_10: Final = "urn:taxii.mitre.org:query:default:1.0"

# --- Status types (Status_Message/@status_type; any URI is also allowed) -----------------------
ST_ASYNCHRONOUS_POLL_ERROR: Final = "ASYNCHRONOUS_POLL_ERROR"  # 1.1
ST_BAD_MESSAGE: Final = "BAD_MESSAGE"
ST_DENIED: Final = "DENIED"
ST_DESTINATION_COLLECTION_ERROR: Final = "DESTINATION_COLLECTION_ERROR"  # 1.1
ST_FAILURE: Final = "FAILURE"
ST_INVALID_RESPONSE_PART: Final = "INVALID_RESPONSE_PART"  # 1.1
ST_NETWORK_ERROR: Final = "NETWORK_ERROR"  # 1.1
ST_NOT_FOUND: Final = "NOT_FOUND"
ST_PENDING: Final = "PENDING"  # 1.1
ST_POLLING_UNSUPPORTED: Final = "POLLING_UNSUPPORTED"
ST_RETRY: Final = "RETRY"
ST_SUCCESS: Final = "SUCCESS"
ST_UNAUTHORIZED: Final = "UNAUTHORIZED"
ST_UNSUPPORTED_MESSAGE: Final = "UNSUPPORTED_MESSAGE"
ST_UNSUPPORTED_CONTENT: Final = "UNSUPPORTED_CONTENT"
ST_UNSUPPORTED_PROTOCOL: Final = "UNSUPPORTED_PROTOCOL"
ST_UNSUPPORTED_QUERY: Final = "UNSUPPORTED_QUERY"  # 1.1

# --- Status detail names (1.1 Status_Detail/Detail/@name) --------------------------------------
SD_ACCEPTABLE_DESTINATION: Final = "ACCEPTABLE_DESTINATION"
SD_MAX_PART_NUMBER: Final = "MAX_PART_NUMBER"
SD_ITEM: Final = "ITEM"
SD_ESTIMATED_WAIT: Final = "ESTIMATED_WAIT"
SD_RESULT_ID: Final = "RESULT_ID"
SD_WILL_PUSH: Final = "WILL_PUSH"
SD_SUPPORTED_BINDING: Final = "SUPPORTED_BINDING"
SD_SUPPORTED_CONTENT: Final = "SUPPORTED_CONTENT"
SD_SUPPORTED_PROTOCOL: Final = "SUPPORTED_PROTOCOL"
SD_SUPPORTED_QUERY: Final = "SUPPORTED_QUERY"

# --- Service types (Service_Instance/@service_type) --------------------------------------------
SVC_DISCOVERY: Final = "DISCOVERY"
SVC_INBOX: Final = "INBOX"
SVC_POLL: Final = "POLL"
SVC_COLLECTION_MANAGEMENT: Final = "COLLECTION_MANAGEMENT"  # 1.1
SVC_FEED_MANAGEMENT: Final = "FEED_MANAGEMENT"  # 1.0
SERVICE_TYPES: Final = {
    VID_TAXII_XML_10: (SVC_DISCOVERY, SVC_INBOX, SVC_POLL, SVC_FEED_MANAGEMENT),
    VID_TAXII_XML_11: (SVC_DISCOVERY, SVC_INBOX, SVC_POLL, SVC_COLLECTION_MANAGEMENT),
}

# --- Subscription management actions -----------------------------------------------------------
ACT_SUBSCRIBE: Final = "SUBSCRIBE"
ACT_UNSUBSCRIBE: Final = "UNSUBSCRIBE"
ACT_PAUSE: Final = "PAUSE"  # 1.1
ACT_RESUME: Final = "RESUME"  # 1.1
ACT_STATUS: Final = "STATUS"
ACTIONS: Final = {
    VID_TAXII_XML_10: (ACT_SUBSCRIBE, ACT_UNSUBSCRIBE, ACT_STATUS),
    VID_TAXII_XML_11: (ACT_SUBSCRIBE, ACT_UNSUBSCRIBE, ACT_PAUSE, ACT_RESUME, ACT_STATUS),
}

# --- Subscription status (1.1) -----------------------------------------------------------------
SS_ACTIVE: Final = "ACTIVE"
SS_PAUSED: Final = "PAUSED"
SS_UNSUBSCRIBED: Final = "UNSUBSCRIBED"
SUBSCRIPTION_STATUSES: Final = (SS_ACTIVE, SS_PAUSED, SS_UNSUBSCRIBED)

# --- Response types (1.1 Poll_Parameters / Subscription_Parameters) ----------------------------
RT_FULL: Final = "FULL"
RT_COUNT_ONLY: Final = "COUNT_ONLY"
RESPONSE_TYPES: Final = (RT_FULL, RT_COUNT_ONLY)

# --- Collection types (1.1; a TAXII 1.0 feed is always a data feed) ----------------------------
CT_DATA_FEED: Final = "DATA_FEED"
CT_DATA_SET: Final = "DATA_SET"
COLLECTION_TYPES: Final = (CT_DATA_FEED, CT_DATA_SET)
