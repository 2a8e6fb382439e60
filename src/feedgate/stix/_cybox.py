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


class Leaf(NamedTuple):
    """One leaf element of a ``cybox:Properties`` element, flattened.

    ``parent`` is the local name of its parent (``Properties`` for a direct child) and
    ``parent_key`` tells siblings apart (two ``Hash`` elements are two parents). A Properties
    element without element children is its own leaf, with ``name`` empty.
    """

    name: str
    parent: str
    parent_key: object
    condition: str | None
    text: str


class PropsView(NamedTuple):
    """A ``cybox:Properties`` element as the extractors need it: type, two attributes, leaves.

    The tree reader builds views from elements; the fast reader (``_flat``) from the records an
    XSLT pass emits. The extractors below work on views only, so both paths share one meaning.
    """

    type_name: str
    category: str | None
    type_attr: str | None
    leaves: list[Leaf]


def view_of(props: etree._Element, type_name: str) -> PropsView:
    """The view of a Properties element of the tree reader."""
    leaves: list[Leaf] = []
    if len(props) == 0:
        leaves.append(Leaf("", "", 0, props.get("condition"), props.text or ""))
    else:
        _collect_leaves(props, "Properties", 0, leaves, [0])
    return PropsView(type_name, props.get("category"), props.get("type"), leaves)


def _collect_leaves(
    elem: etree._Element, name: str, key: int, out: list[Leaf], counter: list[int]
) -> None:
    for child in elem:
        tag = child.tag
        if not isinstance(tag, str):
            continue
        if len(child):
            counter[0] += 1
            _collect_leaves(child, local(tag), counter[0], out, counter)
        else:
            out.append(Leaf(local(tag), name, key, child.get("condition"), child.text or ""))


def property_values(
    out: list[Candidate],
    leaf: Leaf,
    hint: KindHint,
    stats: ReadStats,
    original_type: str | None = None,
) -> None:
    """The values a CybOX property stands for, honouring ``condition`` and ``##comma##`` lists.

    A non-exact condition (Contains, StartsWith, FitsPattern, ...) describes a pattern; it is
    counted as skipped and never emitted as a value.
    """
    text = leaf.text.strip()
    if not text:
        return
    condition = leaf.condition
    if condition == "InclusiveBetween":
        parts = text.split(_LIST_SEP) if _LIST_SEP in text else text.split(",")
        if len(parts) != 2:
            stats.skip("InclusiveBetween range without exactly two bounds", text[:200])
            return
        out.append(Candidate(hint, parts[0].strip(), original_type, range_end=parts[1].strip()))
        return
    if condition not in _EXACT:
        stats.skip(f"pattern, not a value (condition {condition})", text[:200])
        return
    if _LIST_SEP in text:
        for part in text.split(_LIST_SEP):
            part = part.strip()
            if part:
                out.append(Candidate(hint, part, original_type))
        return
    out.append(Candidate(hint, text, original_type))


def _direct(view: PropsView, name: str) -> list[Leaf]:
    return [leaf for leaf in view.leaves if leaf.name == name and leaf.parent == "Properties"]


def _address(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    category = view.category
    hint: KindHint
    original: str | None = None
    if category is None:
        hint = "auto"
    elif category == "ipv4-addr":
        hint = Kind.IPV4
    elif category == "ipv6-addr":
        hint = Kind.IPV6
    elif category == "e-mail":
        hint = Kind.EMAIL
    elif category in ("cidr", "ipv4-net", "ipv6-net"):
        hint = Kind.CIDR
    else:
        hint, original = Kind.OTHER, f"AddressObjectType:{category}"
    for leaf in _direct(view, "Address_Value"):
        property_values(out, leaf, hint, stats, original)


def _domain(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    if view.type_attr == "TLD":
        hint: KindHint = Kind.OTHER
        original: str | None = "DomainNameObjectType:TLD"
    else:
        hint, original = Kind.DOMAIN, None
    for leaf in _direct(view, "Value"):
        property_values(out, leaf, hint, stats, original)


def _hostname(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    for leaf in _direct(view, "Hostname_Value"):
        property_values(out, leaf, Kind.DOMAIN, stats)


def _uri(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    uri_type = view.type_attr or "URL"
    hint: KindHint
    original: str | None = None
    if uri_type == "URL":
        hint = Kind.URL
    elif uri_type == "Domain Name":
        hint = Kind.DOMAIN
    else:
        hint, original = Kind.OTHER, f"URIObjectType:{uri_type}"
    for leaf in _direct(view, "Value"):
        property_values(out, leaf, hint, stats, original)


_HASH_KINDS: Final = {
    "MD5": Kind.MD5,
    "SHA1": Kind.SHA1,
    "SHA-1": Kind.SHA1,
    "SHA256": Kind.SHA256,
    "SHA-256": Kind.SHA256,
}
_HASH_VALUES: Final = frozenset({"Simple_Hash_Value", "Fuzzy_Hash_Value"})


def _file(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    """File hashes: each ``Hash`` pairs a ``Type`` with its value(s), in any order."""
    types: dict[object, str] = {}
    values: list[Leaf] = []
    for leaf in view.leaves:
        if leaf.parent == "Hash":
            if leaf.name == "Type":
                types[leaf.parent_key] = leaf.text.strip().upper()
            elif leaf.name in _HASH_VALUES:
                values.append(leaf)
    for leaf in values:
        hash_type = types.get(leaf.parent_key, "")
        kind = _HASH_KINDS.get(hash_type)
        if kind is None:
            label = f"{view.type_name}:{hash_type or 'unknown hash type'}"
            property_values(out, leaf, Kind.OTHER, stats, label)
        else:
            property_values(out, leaf, kind, stats)
    if not values:
        _other(out, view, stats)


_EMAIL_SENDER_FIELDS: Final = frozenset({"From", "Sender", "Reply_To"})


def _email_message(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    """Sender-side addresses and the originating IP are indicators; recipients are victims."""
    found = False
    for leaf in view.leaves:
        if leaf.name == "Address_Value" and leaf.parent in _EMAIL_SENDER_FIELDS:
            found = True
            property_values(out, leaf, Kind.EMAIL, stats)
        elif leaf.name == "X_Originating_IP" and leaf.parent == "Header":
            found = True
            property_values(out, leaf, "auto", stats)
        elif leaf.name == "Subject" and leaf.parent == "Header":
            found = True
            property_values(out, leaf, Kind.OTHER, stats, "EmailMessageObjectType:Subject")
        elif leaf.parent in ("Links", "Attachments") or leaf.name in ("Links", "Attachments"):
            found = True  # links and attachments are objects of their own, read by reference
    if not found:
        _other(out, view, stats)


def _socket_like(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    """SocketAddress / NetworkConnection: the addresses and host names they name."""
    found = False
    for leaf in view.leaves:
        if leaf.name == "Address_Value":
            found = True
            property_values(out, leaf, "auto", stats)
        elif leaf.name == "Hostname_Value":
            found = True
            property_values(out, leaf, Kind.DOMAIN, stats)
    if not found:
        _other(out, view, stats)


def _mutex(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    for leaf in _direct(view, "Name"):
        property_values(out, leaf, Kind.OTHER, stats, "MutexObjectType")


def _artifact(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    stats.skip("artifact (raw content) is not an indicator value")


def _other(out: list[Candidate], view: PropsView, stats: ReadStats) -> None:
    """An object we cannot enforce: keep it visible as ``other`` with its first leaf value."""
    type_name = view.type_name
    for leaf in view.leaves:
        text = leaf.text.strip()
        if not text:
            continue
        if leaf.condition not in _EXACT:
            stats.skip(f"pattern, not a value (condition {leaf.condition})", text[:200])
            return
        if len(text) > _OTHER_MAX:
            text = text[:_OTHER_MAX]
        label = f"{type_name}:{leaf.name}" if leaf.name else type_name
        out.append(Candidate(Kind.OTHER, text, label or "Object"))
        return
    stats.skip(f"object without a value ({type_name or 'no xsi:type'})")


_Extractor = Callable[[list[Candidate], PropsView, ReadStats], None]

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


def view_candidates(view: PropsView, stats: ReadStats) -> list[Candidate]:
    """All candidates of one Properties view, dispatched on its ``xsi:type``."""
    out: list[Candidate] = []
    extractor = _BY_TYPE.get(view.type_name)
    if extractor is not None:
        extractor(out, view, stats)
    elif view.type_name.endswith("FileObjectType"):
        _file(out, view, stats)
    else:
        _other(out, view, stats)
    return out


def object_references(props: etree._Element) -> list[str]:
    """idrefs an object points to through ``object_reference`` (e-mail links, attachments)."""
    return [ref for elem in props.iter() if (ref := elem.get("object_reference"))]
