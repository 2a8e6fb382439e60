"""How the taxii-* commands show TAXII entities: cabby's text blocks, XML, JSON.

cabby prints what libtaxii's ``to_text()`` and ``to_xml()`` produce for each entity; these
functions produce the same text from feedgate's message classes (the formats, quirks included,
are written down in docs/cabby-cli.md). Every function here is pure: entity in, text out.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import re
from datetime import datetime
from typing import Any, Final

from lxml import etree

from ...xml import XMLParseError, parse_bytes
from .. import messages as tm
from .._writer import Writer

_Element = etree._Element

#: TAXII version as given on the command line -> message binding id.
VERSIONS: Final = {"1.0": tm.VID_TAXII_XML_10, "1.1": tm.VID_TAXII_XML_11}

#: The namespaces libtaxii declares on every element it serialises on its own, in its order.
LIBTAXII_NSMAP: Final = {
    "taxii": tm.NS_TAXII_XML_10,
    "taxii_11": tm.NS_TAXII_XML_11,
    "tdq": tm.NS_TAXII_DEFAULT_QUERY_10,
}
_TDQ: Final = f"{{{tm.NS_TAXII_DEFAULT_QUERY_10}}}"
_IND: Final = "  "  # libtaxii's STD_INDENT


def _s(value: object) -> str:
    """A value as Python's ``%s`` shows it (``None``, ``True``, ...)."""
    return str(value)


def _opt_text(value: str | None) -> str | None:
    """libtaxii reads an empty element's text as None."""
    return value if value else None


def _binding(binding: tm.ContentBinding) -> str:
    """A content binding as libtaxii prints it: ``id`` or ``id>sub1,sub2``."""
    if binding.subtypes:
        return f"{binding.binding_id}>{','.join(binding.subtypes)}"
    return binding.binding_id


# --- queries (opaque in feedgate's messages; libtaxii prints the TAXII Default Query) ---------


def _query_root(query: tm.Query, local_name: str) -> _Element | None:
    if query.format_id != tm.FID_TAXII_DEFAULT_QUERY_10 or not query.content.strip():
        return None
    try:
        root = parse_bytes(query.content, max_bytes=max(len(query.content), 1))
    except XMLParseError:
        return None
    return root if root.tag == _TDQ + local_name else None


def _supported_query_text(query: tm.Query, pre: str) -> str:
    s = pre + "=== Supported Query Information ===\n"
    s += pre + f"  Query Format: {query.format_id}\n"
    root = _query_root(query, "Default_Query_Info")
    if root is None:
        return s
    for info in root.findall(_TDQ + "Targeting_Expression_Info"):
        inner = pre + _IND
        s += inner + "=== Targeting Expression Info ===\n"
        s += inner + f"  Targeting Expression ID: {info.get('targeting_expression_id')}\n"
        for scope in info.findall(_TDQ + "Preferred_Scope"):
            s += inner + f"  Preferred Scope: {scope.text}\n"
        for scope in info.findall(_TDQ + "Allowed_Scope"):
            s += inner + f"  Allowed Scope: {scope.text}\n"
    for module in root.findall(_TDQ + "Capability_Module"):
        s += pre + f"  Capability Module: {module.text}\n"
    return s


def _criteria_text(elem: _Element, pre: str) -> str:
    s = pre + "=== Criteria ===\n"
    s += pre + f"  Operator: {elem.get('operator')}\n"
    for child in elem.findall(_TDQ + "Criteria"):
        s += _criteria_text(child, pre + _IND)
    for child in elem.findall(_TDQ + "Criterion"):
        inner = pre + _IND
        s += inner + "=== Criterion ===\n"
        s += inner + f"  Negate: {child.get('negate') == 'true'}\n"
        s += inner + f"  Target: {child.findtext(_TDQ + 'Target')}\n"
        test = child.find(_TDQ + "Test")
        if test is not None:
            deeper = inner + _IND
            s += deeper + "=== Test ==\n"
            s += deeper + f"  Capability ID: {test.get('capability_id')}\n"
            s += deeper + f"  Relationship: {test.get('relationship')}\n"
            for param in test.findall(_TDQ + "Parameter"):
                s += deeper + f"  Parameter: {param.get('name')} = {param.text}\n"
    return s


def _query_text(query: tm.Query, pre: str) -> str:
    s = pre + "=== Query ===\n"
    s += pre + f"  Query Format: {query.format_id}\n"
    root = _query_root(query, "Default_Query")
    if root is None:
        return s
    s += pre + f"  Targeting Expression ID: {root.get('targeting_expression_id')}\n"
    criteria = root.find(_TDQ + "Criteria")
    if criteria is not None:
        s += _criteria_text(criteria, pre)
    return s


# --- text: discovery ----------------------------------------------------------------------


def service_text(service: tm.ServiceInstance, v11: bool) -> str:
    """A service instance as ``taxii-discovery`` prints it (without print's newline)."""
    if not v11:
        s = "=== Service Instance===\n"
        s += f"  Service Type: {service.service_type}\n"
        s += f"  Services Version: {service.services_version}\n"
        s += f"  Protocol Binding: {service.protocol_binding}\n"
        s += f"  Address: {service.address}\n"
        for binding in service.message_bindings:
            s += f"  Message Binding: {binding}\n"
        if not service.content_bindings:
            s += "  Inbox Service Accepts: None\n"
        for content in service.content_bindings:
            s += f"  Inbox Service Accepts: {content.binding_id}\n"
        s += f"  Available: {_s(service.available)}\n"
        s += f"  Message: {_s(_opt_text(service.message))}\n"
        return s
    s = "=== Service Instance ===\n"
    s += f"  Service Type: {service.service_type}\n"
    s += f"  Service Version: {service.services_version}\n"
    s += f"  Protocol Binding: {service.protocol_binding}\n"
    s += f"  Service Address: {service.address}\n"
    for binding in service.message_bindings:
        s += f"  Message Binding: {binding}\n"
    if service.service_type == tm.SVC_INBOX:
        s += f"  Inbox Service AC: {[_binding(b) for b in service.content_bindings]!r}\n"
    s += f"  Available: {_s(service.available)}\n"
    s += f"  Message: {_s(_opt_text(service.message))}\n"
    for query in service.supported_queries:
        s += _supported_query_text(query, _IND)
    return s


# --- text: collections --------------------------------------------------------------------


def _contact_lines(pre: str, protocol_label: str, address_label: str, c: tm.ServiceContact) -> str:
    s = pre + f"  {protocol_label}: {c.protocol_binding}\n"
    s += pre + f"  {address_label}: {c.address}\n"
    for binding in c.message_bindings:
        s += pre + f"  Message Binding: {binding}\n"
    return s


def collection_text(collection: tm.Collection, v11: bool) -> str:
    """A collection (1.1) or feed (1.0) as ``taxii-collections`` prints it."""
    description = _s(_opt_text(collection.description))
    pre = _IND
    if not v11:
        s = "=== Data Feed ===\n"
        s += f"  Feed Name: {collection.collection_name}\n"
        if collection.available:
            s += f"  Available: {collection.available}\n"
        s += f"  Feed Description: {description}\n"
        for content in collection.content_bindings:
            s += f"  Supported Content: {content.binding_id}\n"
        for method in collection.push_methods:
            s += pre + "=== Push Method ===\n"
            s += pre + f"  Protocol Binding: {method.protocol_binding}\n"
            for binding in method.message_bindings:
                s += pre + f"  Message Binding: {binding}\n"
        for contact in collection.polling_services:
            s += pre + "=== Poll Service Instance ===\n"
            s += _contact_lines(pre, "Protocol Binding", "Address", contact)
        for contact in collection.subscription_services:
            s += pre + "=== Subscription Method ===\n"
            s += _contact_lines(pre, "Protocol Binding", "Address", contact)
        return s
    s = "=== Data Collection Information ===\n"
    s += f"  Collection Name: {collection.collection_name}\n"
    s += f"  Collection Type: {collection.collection_type}\n"
    s += f"  Available: {_s(collection.available)}\n"
    s += f"  Collection Description: {description}\n"
    if collection.volume:
        s += f"  Volume: {collection.volume}\n"
    if not collection.content_bindings:
        s += "  Supported Content: All\n"
    for content in collection.content_bindings:
        s += f"  Supported Content: {pre}{_binding(content)}\n"
    for contact in collection.polling_services:
        s += pre + "=== Polling Service Instance ===\n"
        s += _contact_lines(pre, "Poll Protocol", "Poll Address", contact)
    for contact in collection.subscription_services:
        s += pre + "=== Subscription Service ===\n"
        s += _contact_lines(pre, "Protocol Binding", "Address", contact)
    for inbox in collection.receiving_inbox_services:
        s += pre + "=== Receiving Inbox Service ===\n"
        s += pre + f"  Protocol Binding: {inbox.protocol_binding}\n"
        s += pre + f"  Address: {inbox.address}\n"
        for binding in inbox.message_bindings:
            s += pre + f"  Message Binding: {binding}\n"
        if not inbox.content_bindings:
            s += pre + "  Supported Contents: All\n"
        for content in inbox.content_bindings:
            s += pre + f"  Supported Content: {_binding(content)}\n"
    s += "==================================\n\n"
    return s


# --- text: content blocks -----------------------------------------------------------------


def content_element(content: bytes) -> _Element | None:
    """The content as an element when it is one XML document (the Content rule), else None."""
    if content.lstrip()[:1] != b"<":
        return None
    try:
        return parse_bytes(content, max_bytes=max(len(content), 1))
    except XMLParseError:
        return None


def _content_length(content: bytes) -> int:
    """libtaxii's ``len(content)``: bytes for XML content, characters for text."""
    if content.lstrip()[:1] == b"<":
        return len(content)
    return len(content.decode("utf-8", "replace"))


def block_text(block: tm.ContentBlock, v11: bool) -> str:
    """A content block as ``taxii-poll -r`` prints it (what cabby meant to print)."""
    s = "=== Content Block ===\n"
    if not v11:
        s += f"  Content Binding: {block.content_binding.binding_id}\n"
        s += f"  Content Length: {_content_length(block.content)}\n"
        s += "  (Only content length is shown for brevity)\n"
        if block.timestamp_label:
            s += f"  Timestamp Label: {block.timestamp_label.isoformat()}\n"
        s += f"  Padding: {_s(block.padding)}\n"
        return s
    s += f"  Content Binding: {_binding(block.content_binding)}\n"
    s += f"  Content length: {_content_length(block.content)}\n"
    s += "  (Content not printed for brevity)\n"
    if block.timestamp_label:
        s += f"  Timestamp Label: {block.timestamp_label}\n"
    s += f"  Message: {_s(block.message)}\n"
    s += f"  Padding: {_s(block.padding)}\n"
    return s


# --- text: subscription responses ---------------------------------------------------------


def _push_parameters_text(params: tm.PushParameters, pre: str, v11: bool) -> str:
    s = pre + "=== Push Parameters ===\n"
    if v11:
        s += pre + f"  Protocol Binding: {params.protocol_binding}\n"
        s += pre + f"  Inbox Address: {params.address}\n"
        s += pre + f"  Message Binding: {params.message_binding}\n"
        return s
    s += pre + f"  Inbox Protocol: {params.protocol_binding}\n"
    s += pre + f"  Address: {params.address}\n"
    s += pre + f"  Message Binding: {params.message_binding}\n"
    if params.content_bindings:
        s += pre + "  Content Bindings: Any Content\n"  # sic: libtaxii's inverted test
    for content in params.content_bindings:
        s += pre + f"  Content Binding: {content.binding_id}\n"
    return s


def _subscription_text(sub: tm.SubscriptionInstance, pre: str, v11: bool) -> str:
    s = pre + "=== Subscription Instance ===\n"
    if v11:
        s += pre + f"  Status: {sub.status}\n"
    s += pre + f"  Subscription ID: {sub.subscription_id}\n"
    inner = pre + _IND
    if v11 and sub.subscription_parameters is not None:
        params = sub.subscription_parameters
        s += inner + "=== Subscription_Parameters ===\n"
        for content in params.content_bindings:
            s += f"  Content Binding: {_binding(content)}\n"  # sic: not indented
        if params.query is not None:
            s += _query_text(params.query, inner + _IND)
        if params.response_type:
            s += inner + f"  Response type: {params.response_type}\n"
    if sub.push_parameters is not None:
        s += _push_parameters_text(sub.push_parameters, inner, v11)
    for contact in sub.poll_instances:
        s += inner + "=== Poll Instance ===\n"
        s += _contact_lines(inner, "Protocol Binding", "Address", contact)
    return s


def subscription_response_text(response: tm.ManageCollectionSubscriptionResponse) -> str:
    """A subscription management response as ``taxii-subscription`` prints it."""
    v11 = response.version == tm.VID_TAXII_XML_11
    s = "Message Type: Subscription_Management_Response\n"
    s += f"Message ID: {response.message_id}"
    if response.in_response_to:
        s += f"; In Response To: {response.in_response_to}"
    s += "\n"
    for header in response.extended_headers:
        s += f"Extended Header: {header.name} = {header.value}" + ("\n" if v11 else "")
    s += f"  {'Collection' if v11 else 'Feed'} Name: {response.collection_name}\n"
    s += f"  Message: {_s(_opt_text(response.message))}\n"
    for sub in response.subscriptions:
        s += _subscription_text(sub, _IND, v11)
    return s


# --- status errors ------------------------------------------------------------------------

_BOOL_DETAILS: Final = {tm.SD_WILL_PUSH}
_INT_DETAILS: Final = {tm.SD_ESTIMATED_WAIT, tm.SD_MAX_PART_NUMBER}


def _detail_value(name: str, values: tuple[str, ...]) -> str:
    def typed(value: str) -> object:
        text = value.strip()
        if name in _BOOL_DETAILS:
            return text.lower() == "true"
        if name in _INT_DETAILS and text.isdigit():
            return int(text)
        return value

    if len(values) == 1:
        return str(typed(values[0]))
    return str([typed(v) for v in values])


def status_text(status: tm.StatusMessage) -> str:
    """An error status as cabby reports it: ``Server Error: TYPE: details; message``."""
    grouped: dict[str, tuple[str, ...]] = {}
    for detail in status.details:
        grouped[detail.name] = (*grouped.get(detail.name, ()), detail.value)
    parts: list[str] = []
    if grouped:
        parts.append(", ".join(f"{k}={_detail_value(k, v)}" for k, v in grouped.items()))
    if status.detail_text:
        parts.append(status.detail_text)
    if status.extended_headers:
        parts.append(", ".join(f"{h.name}={h.value}" for h in status.extended_headers))
    if status.message:
        parts.append(status.message)
    return f"Server Error: {status.status_type}: {'; '.join(parts)}"


# --- XML ----------------------------------------------------------------------------------


def _reroot(elem: _Element) -> _Element:
    """``elem`` as the root of its own tree with libtaxii's namespace declarations."""
    root = etree.Element(elem.tag, nsmap=LIBTAXII_NSMAP)
    for name, value in elem.attrib.items():
        root.set(name, value)
    root.text = elem.text
    for child in elem:
        root.append(copy.deepcopy(child))
    return root


def _part(version: str, build: Any, item: Any) -> _Element:
    writer = Writer(version)
    holder = etree.Element(writer.q("Holder"), nsmap=LIBTAXII_NSMAP)
    build(writer, holder, item)
    return _reroot(holder[0])


def service_xml(service: tm.ServiceInstance, version: str) -> str:
    """A Service_Instance element as ``taxii-discovery -x`` prints it (pretty)."""
    elem = _part(version, Writer.service_instance, service)
    return etree.tostring(elem, pretty_print=True, encoding="unicode")


def collection_xml(collection: tm.Collection, version: str) -> str:
    """A Collection (1.1) / Feed (1.0) element, pretty-printed."""
    elem = _part(version, Writer.collection, collection)
    ns = tm.NAMESPACES[version]
    for description in elem.iterchildren(f"{{{ns}}}Description"):
        if not description.text:
            description.text = None  # as libtaxii writes an empty description: <Description/>
    return etree.tostring(elem, pretty_print=True, encoding="unicode")


def message_xml(message: tm.Message) -> str:
    """A whole message, pretty-printed, with libtaxii's namespace declarations."""
    from .._writer import message_element

    elem = _reroot(message_element(message))
    return etree.tostring(elem, pretty_print=True, encoding="unicode")


def block_element(block: tm.ContentBlock, version: str) -> tuple[_Element, _Element | None]:
    """A Content_Block element built as libtaxii builds it, and its content element (or None).

    This is the serialisation cabby hashes for ``--dest-dir`` names and prints for ``-r -x``:
    libtaxii's three namespaces on the block, the Timestamp_Label in ``isoformat()``.
    """
    v11 = version == tm.VID_TAXII_XML_11
    ns = tm.NS_TAXII_XML_11 if v11 else tm.NS_TAXII_XML_10
    root = etree.Element(f"{{{ns}}}Content_Block", nsmap=LIBTAXII_NSMAP)
    binding = etree.SubElement(root, f"{{{ns}}}Content_Binding")
    if v11:
        binding.set("binding_id", block.content_binding.binding_id)
        for subtype in block.content_binding.subtypes:
            etree.SubElement(binding, f"{{{ns}}}Subtype").set("subtype_id", subtype)
    else:
        binding.text = block.content_binding.binding_id
    content = etree.SubElement(root, f"{{{ns}}}Content")
    child = content_element(block.content)
    if child is not None:
        content.append(child)
    else:
        content.text = block.content.decode("utf-8", "replace")
    if block.timestamp_label is not None:
        etree.SubElement(root, f"{{{ns}}}Timestamp_Label").text = block.timestamp_label.isoformat()
    if v11 and block.message is not None:
        etree.SubElement(root, f"{{{ns}}}Message").text = block.message
    if block.padding is not None:
        etree.SubElement(root, f"{{{ns}}}Padding").text = block.padding
    return root, child


def block_xml(block: tm.ContentBlock, version: str, *, pretty: bool = False) -> bytes:
    """The Content_Block XML of ``taxii-poll -r -x`` (and, pretty, of ``-r --dest-dir``)."""
    root, _ = block_element(block, version)
    return etree.tostring(root, pretty_print=pretty, encoding="utf-8")


_NON_WORD: Final = re.compile(r"[^\w]+")


def dest_file_name(collection: str | None, block: tm.ContentBlock, version: str) -> str:
    """cabby's ``--dest-dir`` file name: ``<collection, non-word runs as ->_<md5 of block>``."""
    name = _NON_WORD.sub("-", collection) if collection else ""
    digest = hashlib.md5(block_xml(block, version), usedforsecurity=False).hexdigest()
    return f"{name}_{digest}"


def saved_content(block: tm.ContentBlock, version: str) -> bytes:
    """What cabby writes to a ``--dest-dir`` file for a block (without ``-r``).

    XML content is serialised inside the libtaxii-shaped block (so it carries the namespaces
    declared there, as cabby's files do); text content is written as is.
    """
    _, child = block_element(block, version)
    if child is None:
        return block.content
    return etree.tostring(child, encoding="utf-8", with_tail=False)


# --- JSON ---------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A message or part as plain JSON data: dataclass fields by name, bytes as text."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if isinstance(item, bytes):
                try:
                    out[field.name] = item.decode("utf-8")
                except UnicodeDecodeError:
                    out[field.name] = base64.b64encode(item).decode("ascii")
                    out[f"{field.name}_encoding"] = "base64"
            else:
                out[field.name] = jsonable(item)
        return out
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
