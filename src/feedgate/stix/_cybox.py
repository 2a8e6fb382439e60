"""CybOX 2.x objects → raw (kind, value) candidates.

This module knows CybOX object shapes only: which property of which object type is an indicator
value and of what kind, how ``condition``/``apply_condition`` and ``##comma##`` lists work, and
which conditions describe a pattern rather than a value. It does not normalise (that is
:mod:`feedgate.observables`) and does not know STIX (that is :mod:`._stix1`).

Property namespaces differ between CybOX releases (``AddressObject-2``, ...), so properties are
matched by local name and object types by the local part of ``xsi:type``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, NamedTuple

from lxml import etree

from feedgate.observables import Kind

from ._stats import ReadStats

CYBOX: Final = "http://cybox.mitre.org/cybox-2"
XSI_TYPE: Final = "{http://www.w3.org/2001/XMLSchema-instance}type"

T_OBSERVABLE: Final = f"{{{CYBOX}}}Observable"
T_OBJECT: Final = f"{{{CYBOX}}}Object"
T_RELATED_OBJECT: Final = f"{{{CYBOX}}}Related_Object"
T_RELATED_OBJECTS: Final = f"{{{CYBOX}}}Related_Objects"
T_PROPERTIES: Final = f"{{{CYBOX}}}Properties"
T_COMPOSITION: Final = f"{{{CYBOX}}}Observable_Composition"

#: Conditions under which a property's text is the value itself.
_EXACT: Final = frozenset({None, "Equals"})
#: The longest text kept as the value of an ``other`` observable.
_OTHER_MAX: Final = 1024
_LIST_SEP: Final = "##comma##"

#: A kind, or "auto" when the value itself must say (an Address without ``category``).
KindHint = Kind | str


class Candidate(NamedTuple):
    """A raw value found in an object, before normalisation (a tuple: made once per value)."""

    hint: KindHint
    value: str
    original_type: str | None = None
    #: For InclusiveBetween ranges: the last address (``value`` is the first).
    range_end: str | None = None


#: The children of an element (comments and processing instructions included, as iterating
#: gives them) as a list made in one call: cheaper than iterating over the element. lxml's
#: stubs leave ``getchildren`` out (ElementTree deprecated it); lxml keeps it.
children: Final[Callable[[etree._Element], list[etree._Element]]] = etree._Element.getchildren  # type: ignore[attr-defined]


def local(tag: object) -> str:
    """The local part of a Clark-notation tag (``{ns}Name`` → ``Name``)."""
    text = tag if isinstance(tag, str) else ""
    return text[text.rfind("}") + 1 :]


def xsi_type(elem: etree._Element) -> str:
    """The local part of ``xsi:type`` (``AddressObj:AddressObjectType`` → ``AddressObjectType``)."""
    value = elem.get(XSI_TYPE)
    if not value:
        return ""
    return value[value.rfind(":") + 1 :]


def property_values(
    out: list[Candidate],
    elem: etree._Element,
    hint: KindHint,
    stats: ReadStats,
    original_type: str | None = None,
) -> None:
    """The values a CybOX property stands for, honouring ``condition`` and ``##comma##`` lists.

    A non-exact condition (Contains, StartsWith, FitsPattern, ...) describes a pattern; it is
    counted as skipped and never emitted as a value.
    """
    text = elem.text
    if text is None:
        return
    text = text.strip()
    if not text:
        return
    condition = elem.get("condition")
    if condition == "InclusiveBetween":
        parts = text.split(_LIST_SEP) if _LIST_SEP in text else text.split(",")
        if len(parts) != 2:
            stats.skip("InclusiveBetween range without exactly two bounds", repr(text[:200]))
            return
        out.append(Candidate(hint, parts[0].strip(), original_type, range_end=parts[1].strip()))
        return
    if condition not in _EXACT:
        stats.skip(pattern_reason(condition), repr(text[:200]))
        return
    apply = elem.get("apply_condition")
    if apply == "NONE":
        stats.skip("pattern, not a value (apply_condition NONE)", repr(text[:200]))
        return
    if _LIST_SEP in text:
        for part in text.split(_LIST_SEP):
            part = part.strip()
            if part:
                out.append(Candidate(hint, part, original_type))
        return
    out.append(Candidate(hint, text, original_type))


#: CybOX ConditionTypeEnum: anything else is reported as an unknown condition, so that feed
#: text never becomes a counter key (a feed could otherwise make one per value).
_CONDITIONS: Final = frozenset(
    {
        "Equals",
        "DoesNotEqual",
        "Contains",
        "DoesNotContain",
        "StartsWith",
        "EndsWith",
        "GreaterThan",
        "GreaterThanOrEqual",
        "LessThan",
        "LessThanOrEqual",
        "InclusiveBetween",
        "ExclusiveBetween",
        "FitsPattern",
        "BitwiseAnd",
        "BitwiseOr",
    }
)


def pattern_reason(condition: str | None) -> str:
    """The skip reason for a property whose condition makes it a pattern."""
    if condition in _CONDITIONS:
        return f"pattern, not a value (condition {condition})"
    return "pattern, not a value (unknown condition)"


def _children(props: etree._Element, name: str) -> list[etree._Element]:
    return [child for child in props if local(child.tag) == name]


#: What an Address object's values are, by its ``category`` (none: the value says, "auto").
_ADDRESS_HINTS: Final[dict[str | None, tuple[KindHint, str | None]]] = {
    None: ("auto", None),
    "ipv4-addr": (Kind.IPV4, None),
    "ipv6-addr": (Kind.IPV6, None),
    "e-mail": (Kind.EMAIL, None),
    "cidr": (Kind.CIDR, None),
    "ipv4-net": (Kind.CIDR, None),
    "ipv6-net": (Kind.CIDR, None),
}


def _address(out: list[Candidate], props: etree._Element, stats: ReadStats) -> None:
    category = props.get("category")
    known = _ADDRESS_HINTS.get(category)
    hint, original = known or (Kind.OTHER, f"AddressObjectType:{category}")
    for child in props:
        tag = child.tag
        if isinstance(tag, str) and tag.endswith("}Address_Value"):
            property_values(out, child, hint, stats, original)


def _domain_hint(props: etree._Element) -> tuple[KindHint, str | None]:
    """What a DomainName object's values are: domains, or (a TLD) ``other``."""
    if props.get("type") == "TLD":
        return Kind.OTHER, "DomainNameObjectType:TLD"
    return Kind.DOMAIN, None


def _uri_hint(props: etree._Element) -> tuple[KindHint, str | None]:
    """What a URI (or Link) object's values are, by its ``type``."""
    uri_type = props.get("type", "URL")
    if uri_type == "URL":
        return Kind.URL, None
    if uri_type == "Domain Name":
        return Kind.DOMAIN, None
    return Kind.OTHER, f"URIObjectType:{uri_type}"


def _domain(out: list[Candidate], props: etree._Element, stats: ReadStats) -> None:
    hint, original = _domain_hint(props)
    for child in props:
        tag = child.tag
        if isinstance(tag, str) and tag.endswith("}Value"):
            property_values(out, child, hint, stats, original)


def _hostname(out: list[Candidate], props: etree._Element, stats: ReadStats) -> None:
    for child in props:
        tag = child.tag
        if isinstance(tag, str) and tag.endswith("}Hostname_Value"):
            property_values(out, child, Kind.DOMAIN, stats)


def _uri(out: list[Candidate], props: etree._Element, stats: ReadStats) -> None:
    hint, original = _uri_hint(props)
    for child in props:
        tag = child.tag
        if isinstance(tag, str) and tag.endswith("}Value"):
            property_values(out, child, hint, stats, original)


_HASH_KINDS: Final = {
    "MD5": Kind.MD5,
    "SHA1": Kind.SHA1,
    "SHA-1": Kind.SHA1,
    "SHA256": Kind.SHA256,
    "SHA-256": Kind.SHA256,
}


def _file(out: list[Candidate], props: etree._Element, stats: ReadStats, type_name: str) -> None:
    found = False
    for hashes in props:
        tag = hashes.tag
        if not isinstance(tag, str) or not tag.endswith("}Hashes"):
            continue
        for hash_elem in hashes:
            hash_type = ""
            value_elems: list[etree._Element] = []
            for part in hash_elem:
                name = local(part.tag)
                if name == "Type":
                    hash_type = (part.text or "").strip().upper()
                elif name in ("Simple_Hash_Value", "Fuzzy_Hash_Value"):
                    value_elems.append(part)
            kind = _HASH_KINDS.get(hash_type)
            for value_elem in value_elems:
                found = True
                if kind is None:
                    label = f"{type_name}:{hash_type or 'unknown hash type'}"
                    property_values(out, value_elem, Kind.OTHER, stats, label)
                else:
                    property_values(out, value_elem, kind, stats)
    if not found:
        _other(out, props, stats, type_name)


_EMAIL_ADDRESS_FIELDS: Final = ("From", "Sender", "Reply_To")


def _email_message(out: list[Candidate], props: etree._Element, stats: ReadStats) -> None:
    """Sender-side addresses and the originating IP are indicators; recipients are victims."""
    found = False
    for header in _children(props, "Header"):
        for field in header:
            name = local(field.tag)
            if name in _EMAIL_ADDRESS_FIELDS:
                for value in _children(field, "Address_Value"):
                    found = True
                    property_values(out, value, Kind.EMAIL, stats)
            elif name == "X_Originating_IP":
                # an AddressObjectType: the value is in its Address_Value (or, loosely, itself)
                found = True
                values = _children(field, "Address_Value") or [field]
                for value in values:
                    property_values(out, value, "auto", stats)
            elif name == "Subject":
                found = True
                subject_type = "EmailMessageObjectType:Subject"
                property_values(out, field, Kind.OTHER, stats, subject_type)
    if not found and not any(local(c.tag) in ("Links", "Attachments") for c in props):
        _other(out, props, stats, "EmailMessageObjectType")


def _socket_like(out: list[Candidate], props: etree._Element, stats: ReadStats) -> None:
    """SocketAddress / NetworkConnection: the addresses and host names they name."""
    found = False
    for elem in props.iter():
        name = local(elem.tag)
        if name == "Address_Value":
            found = True
            property_values(out, elem, "auto", stats)
        elif name == "Hostname_Value":
            found = True
            property_values(out, elem, Kind.DOMAIN, stats)
    if not found:
        _other(out, props, stats, xsi_type(props) or "Object")


def _mutex(out: list[Candidate], props: etree._Element, stats: ReadStats) -> None:
    for child in props:
        tag = child.tag
        if isinstance(tag, str) and tag.endswith("}Name"):
            property_values(out, child, Kind.OTHER, stats, "MutexObjectType")


def _artifact(out: list[Candidate], props: etree._Element, stats: ReadStats) -> None:
    stats.skip("artifact (raw content) is not an indicator value")


def _other(out: list[Candidate], props: etree._Element, stats: ReadStats, type_name: str) -> None:
    """An object we cannot enforce: keep it visible as ``other`` with its first leaf value."""
    for elem in props.iter():
        if len(elem) or not isinstance(elem.tag, str):
            continue
        text = (elem.text or "").strip()
        if not text:
            continue
        condition = elem.get("condition")
        if condition not in _EXACT:
            stats.skip(pattern_reason(condition), repr(text[:200]))
            return
        if len(text) > _OTHER_MAX:
            text = text[:_OTHER_MAX]
        label = f"{type_name}:{local(elem.tag)}" if elem is not props else type_name
        out.append(Candidate(Kind.OTHER, text, label))
        return
    stats.skip("object without a value", repr(type_name[:100]) if type_name else "no xsi:type")


_Extractor = Callable[[list[Candidate], etree._Element, ReadStats], None]

_BY_TYPE: Final[dict[str, _Extractor]] = {
    "AddressObjectType": _address,
    "DomainNameObjectType": _domain,
    "HostnameObjectType": _hostname,
    "URIObjectType": _uri,
    "LinkObjectType": _uri,
    "EmailMessageObjectType": _email_message,
    "SocketAddressObjectType": _socket_like,
    "NetworkConnectionObjectType": _socket_like,
    "MutexObjectType": _mutex,
    "ArtifactObjectType": _artifact,
}


def properties_candidates(
    props: etree._Element, stats: ReadStats, type_name: str | None = None
) -> list[Candidate]:
    """All candidates of one ``cybox:Properties`` element, dispatched on its ``xsi:type``."""
    out: list[Candidate] = []
    if type_name is None:
        type_name = xsi_type(props)
    extractor = _BY_TYPE.get(type_name)
    if extractor is not None:
        extractor(out, props, stats)
    elif type_name.endswith("FileObjectType"):
        _file(out, props, stats, type_name)
    else:
        _other(out, props, stats, type_name)
    return out


#: The hint and original type of the simple object types, by the ``type``/``category`` attribute
#: they depend on; the value is in the one property whose tag ends with the given suffix.
_HASH_TYPE_TAG: Final = "{http://cybox.mitre.org/common-2}Type"
_HASH_VALUE_TAG: Final = "{http://cybox.mitre.org/common-2}Simple_Hash_Value"
#: The attributes of a value property that says only condition="Equals" (the common case).
_EQUALS_ONLY: Final = [("condition", "Equals")]


def simple_candidate(
    props: etree._Element,
) -> tuple[KindHint, str, str | None] | None:
    """The one value of a ``cybox:Properties`` of the common simple shape, or None.

    The common shape is one of the simple object types (address, domain, host name, URI, link,
    mutex, or a file with one MD5/SHA1/SHA256 hash) with exactly one value property whose
    condition is ``Equals`` (or none), no ``apply_condition="NONE"`` and no ``##comma##``
    list. For it, :func:`properties_candidates` would return exactly one
    ``Candidate(hint, value, original_type)``, and this returns that triple without building
    the candidate list. Anything else (another type, several values, a pattern, a range, an
    empty value, a fuzzy or unnamed hash, ...) returns None: the caller then takes the general
    path, which judges it (and counts what it skips). Nothing is counted here.
    """
    type_attr = props.get(XSI_TYPE)
    if not type_attr:
        return None
    type_name = type_attr[type_attr.rfind(":") + 1 :]
    hint: KindHint
    original: str | None = None
    if type_name == "DomainNameObjectType":
        hint, original = _domain_hint(props)
        suffix = "}Value"
    elif type_name == "URIObjectType" or type_name == "LinkObjectType":
        hint, original = _uri_hint(props)
        suffix = "}Value"
    elif type_name == "AddressObjectType":
        known = _ADDRESS_HINTS.get(props.get("category"))
        if known is None:
            return None
        hint, original = known
        suffix = "}Address_Value"
    elif type_name == "HostnameObjectType":
        hint = Kind.DOMAIN
        suffix = "}Hostname_Value"
    elif type_name == "MutexObjectType":
        hint, original = Kind.OTHER, "MutexObjectType"
        suffix = "}Name"
    elif type_name.endswith("FileObjectType") and not type_name.startswith("EmailMessage"):
        suffix = "}Hashes"
        hint = ""  # set from the hash's type below
    else:
        return None
    value_elem = None
    for child in children(props):
        tag = child.tag
        if tag.__class__ is str and tag.endswith(suffix):
            if value_elem is not None:
                return None
            value_elem = child
    if value_elem is None:
        return None
    if not hint:  # a file: value_elem is its Hashes, which must hold one Hash of a known type
        found = _simple_hash(value_elem)
        if found is None:
            return None
        hint, value_elem = found
    # What property_values reads as exactly one value.
    text = value_elem.text
    if text is None:
        return None
    text = text.strip()
    if not text or _LIST_SEP in text:
        return None
    attributes = value_elem.items()
    if attributes and attributes != _EQUALS_ONLY:
        condition = value_elem.get("condition")
        if condition is not None and condition != "Equals":
            return None
        if value_elem.get("apply_condition") == "NONE":
            return None
    return hint, text, original


def _simple_hash(hashes: etree._Element) -> tuple[Kind, etree._Element] | None:
    """The kind and value element of a Hashes holding one Hash with one Type and one
    Simple_Hash_Value, the type a known one; None for anything else."""
    hash_elem = None
    for child in children(hashes):
        if hash_elem is not None:
            return None
        hash_elem = child
    if hash_elem is None:
        return None
    type_elem = value_elem = None
    for part in children(hash_elem):
        tag = part.tag
        if tag == _HASH_TYPE_TAG and type_elem is None:
            type_elem = part
        elif tag == _HASH_VALUE_TAG and value_elem is None:
            value_elem = part
        else:
            return None
    if type_elem is None or value_elem is None:
        return None
    kind = _HASH_KINDS.get((type_elem.text or "").strip().upper())
    if kind is None:
        return None
    return kind, value_elem


def object_references(props: etree._Element) -> list[str]:
    """idrefs an object points to through ``object_reference`` (e-mail links, attachments)."""
    return [ref for elem in props.iter() if (ref := elem.get("object_reference"))]
