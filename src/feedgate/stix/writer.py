"""Write OTX pulses as STIX 1.1.1 packages, in the shape OTX itself serves over TAXII.

The hub serves one ``STIX_Package`` per pulse (design.md, "OTX pulses"); consumers built for OTX
(including our own reader and python-stix) must not be able to tell the hub from OTX. This module
is pure protocol code: it takes plain data (:class:`PulseDoc`, :class:`IndicatorDoc`) and returns
bytes, with no database and no clock of its own (``now`` is a parameter, so output is a function
of its input and tests are deterministic).

Why string templates rather than an lxml tree: a poll of a busy collection serves hundreds of
thousands of packages and building a tree costs several times more than the text. Every piece of
caller data goes through :func:`_text`, which drops what XML 1.0 cannot hold and escapes the
rest; attribute values are only constants, uuids and timestamps this module makes. The tests
check well-formedness on generated input (every character class) and that python-stix reads it.

Decisions beyond design.md:

- Characters XML 1.0 cannot carry (C0 controls other than tab, LF and CR; lone surrogates;
  U+FFFE/U+FFFF) are *stripped* from all text, names and values alike. A pulse title with a stray
  ``\\x0b`` is still served; the alternative (refusing the package) would let one bad pulse hide
  a whole collection. CR is written as ``&#13;`` so that it survives parsing.
- Ids are uuid5 in a namespace of our own, so the same pulse revision gives the same bytes: the
  package id from pulse id + revision (or ``modified``); indicator, observable and object ids
  from pulse id + indicator id, so an IOC keeps its id across revisions (STIX id + timestamp
  versioning).
- The package carries ``timestamp`` = ``modified`` and each indicator ``timestamp`` = its
  ``created``, as python-stix (which OTX's exporter uses) writes them.
- An unknown or empty TLP writes no ``Handling`` at all: no marking is better than a wrong one.
  ``clear`` (TLP 2.0) is written as WHITE, the TLP 1 equivalent the marking extension knows.
- A package with no usable indicator has no ``Indicators`` element (the schema wants at least one
  ``Indicator`` in it).
- Values are written stripped of surrounding whitespace; a value that is then empty, or a CIDR
  that is not a network, is left out like the types OTX does not export.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import re
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "EXPORTED_TYPES",
    "NAMESPACE",
    "OTX_TYPES",
    "OTX_TYPE_NAMES",
    "PREFIX",
    "PULSE_URL",
    "IndicatorDoc",
    "PulseDoc",
    "indicator_count",
    "package_id",
    "package_xml",
    "pulse_url",
]

#: The producer namespace OTX uses for its ids, and its prefix.
NAMESPACE: Final = "https://otx.alienvault.com"
PREFIX: Final = "alienvault-otx"
PULSE_URL: Final = "https://otx.alienvault.com/pulse/"
SOURCE_NAME: Final = "Alienvault OTX"

#: Every indicator type OTX knows, spelled as OTX spells them (design.md), in OTX's order.
OTX_TYPE_NAMES: Final[tuple[str, ...]] = (
    "IPv4",
    "IPv6",
    "domain",
    "hostname",
    "email",
    "URL",
    "URI",
    "FileHash-MD5",
    "FileHash-SHA1",
    "FileHash-SHA256",
    "FileHash-PEHASH",
    "FileHash-IMPHASH",
    "CIDR",
    "FilePath",
    "Mutex",
    "CVE",
    "YARA",
    "JA3",
    "osquery",
    "SSLCertFingerprint",
    "BitcoinAddress",
)
OTX_TYPES: Final = frozenset(OTX_TYPE_NAMES)

_UUID_NS: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://otx.alienvault.com/#feedgate-stix1")
_UUID_NS_BYTES: Final = _UUID_NS.bytes


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_UUID_NS, name))``, four times faster: ids were most of the cost of a
    package (three per indicator) before this."""
    digest = bytearray(
        hashlib.sha1(_UUID_NS_BYTES + name.encode(), usedforsecurity=False).digest()[:16]
    )
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NAMESPACES: Final = (
    ("stix", "http://stix.mitre.org/stix-1"),
    ("stixCommon", "http://stix.mitre.org/common-1"),
    ("stixVocabs", "http://stix.mitre.org/default_vocabularies-1"),
    ("indicator", "http://stix.mitre.org/Indicator-2"),
    ("marking", "http://data-marking.mitre.org/Marking-1"),
    ("tlpMarking", "http://data-marking.mitre.org/extensions/MarkingStructure#TLP-1"),
    ("cybox", "http://cybox.mitre.org/cybox-2"),
    ("cyboxCommon", "http://cybox.mitre.org/common-2"),
    ("cyboxVocabs", "http://cybox.mitre.org/default_vocabularies-2"),
    ("AddressObj", "http://cybox.mitre.org/objects#AddressObject-2"),
    ("DomainNameObj", "http://cybox.mitre.org/objects#DomainNameObject-1"),
    ("URIObj", "http://cybox.mitre.org/objects#URIObject-2"),
    ("FileObj", "http://cybox.mitre.org/objects#FileObject-2"),
    ("MutexObj", "http://cybox.mitre.org/objects#MutexObject-2"),
    ("xsi", "http://www.w3.org/2001/XMLSchema-instance"),
    (PREFIX, NAMESPACE),
)
#: Declared on the root, so the package can be cut out and embedded in a TAXII Content_Block.
_NS_DECL: Final = " ".join(f'xmlns:{prefix}="{uri}"' for prefix, uri in _NAMESPACES)

_TLP_COLORS: Final = {
    "white": "WHITE",
    "clear": "WHITE",
    "green": "GREEN",
    "amber": "AMBER",
    "red": "RED",
}

# --- escaping ---------------------------------------------------------------------------------

#: What XML 1.0 cannot hold (its Char production, negated).
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(value: str) -> str:
    """``value`` without the characters XML 1.0 cannot carry (see the module docstring)."""
    return _NOT_XML.sub("", value)


def _text(value: str) -> str:
    """Element content: cleaned and escaped; CR as a reference so parsing keeps it."""
    value = _NOT_XML.sub("", value)
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "\r" in value:
        value = value.replace("\r", "&#13;")
    return value


def _stripped(value: str) -> str:
    """Element content for optional text: cleaned, stripped (an empty result means omit it)."""
    return _text(_clean(value).strip()) if value else ""


def _iso(when: dt.datetime) -> str:
    """xs:dateTime with an explicit zone; a naive datetime is taken to be UTC (as OTX's are)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    elif when.utcoffset() != dt.timedelta(0):
        when = when.astimezone(dt.UTC)
    return when.isoformat()


def _aware(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when


# --- the data ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IndicatorDoc:
    """One IOC of a pulse, as OTX's REST API describes it (design.md, "OTX pulses").

    ``type`` is OTX's type string exactly (``IPv4``, ``FileHash-SHA256``, ...). ``created`` and
    ``expiration`` are datetimes (naive ones are UTC); ``expiration`` None never expires.
    """

    id: int
    indicator: str
    type: str
    title: str = ""
    description: str = ""
    created: dt.datetime | None = None
    expiration: dt.datetime | None = None
    is_active: bool = True
    role: str | None = None


@dataclass(frozen=True, slots=True)
class PulseDoc:
    """A pulse, reduced to what its STIX package needs (plain data: the hub builds these from
    its models, so this module never sees a database row)."""

    id: str
    name: str
    description: str
    author_name: str
    created: dt.datetime
    modified: dt.datetime
    tlp: str
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    indicators: tuple[IndicatorDoc, ...] = ()
    #: OTX's revision counter; when set it (not ``modified``) names the package version.
    revision: int | None = None


def pulse_url(pulse_id: str) -> str:
    """The pulse's page on OTX: the package's Short_Description and part of indicator titles."""
    return PULSE_URL + pulse_id


# --- CybOX objects per OTX type ---------------------------------------------------------------

#: (object id kind, cybox:Properties element) for a value that is already escaped text.
_Properties = Callable[[str], tuple[str, str]]


def _address(category: str) -> _Properties:
    head = f'<cybox:Properties xsi:type="AddressObj:AddressObjectType" category="{category}">'

    def render(value: str) -> tuple[str, str]:
        return "Address", (
            f'{head}<AddressObj:Address_Value condition="Equals">{value}'
            "</AddressObj:Address_Value></cybox:Properties>"
        )

    return render


def _hash(name: str) -> _Properties:
    head = (
        '<cybox:Properties xsi:type="FileObj:FileObjectType"><FileObj:Hashes><cyboxCommon:Hash>'
        '<cyboxCommon:Type xsi:type="cyboxVocabs:HashNameVocab-1.0" condition="Equals">'
        f"{name}</cyboxCommon:Type>"
        '<cyboxCommon:Simple_Hash_Value condition="Equals">'
    )

    def render(value: str) -> tuple[str, str]:
        return "File", (
            f"{head}{value}</cyboxCommon:Simple_Hash_Value></cyboxCommon:Hash></FileObj:Hashes>"
            "</cybox:Properties>"
        )

    return render


def _domain(value: str) -> tuple[str, str]:
    return "DomainName", (
        '<cybox:Properties xsi:type="DomainNameObj:DomainNameObjectType" type="FQDN">'
        f'<DomainNameObj:Value condition="Equals">{value}</DomainNameObj:Value>'
        "</cybox:Properties>"
    )


def _uri(value: str) -> tuple[str, str]:
    return "URI", (
        '<cybox:Properties xsi:type="URIObj:URIObjectType" type="URL">'
        f'<URIObj:Value condition="Equals">{value}</URIObj:Value></cybox:Properties>'
    )


def _mutex(value: str) -> tuple[str, str]:
    return "Mutex", (
        '<cybox:Properties xsi:type="MutexObj:MutexObjectType">'
        f'<MutexObj:Name condition="Equals">{value}</MutexObj:Name></cybox:Properties>'
    )


def _cidr_range(value: str) -> tuple[str, str] | None:
    """The category and ``first,last`` text of a CIDR value, or None if it is not a network.

    Host bits are ignored (``10.0.0.5/24`` is ``10.0.0.0/24``): a loosely written CIDR still names
    its network, and serving it beats dropping it.
    """
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None
    category = "ipv4-addr" if net.version == 4 else "ipv6-addr"
    return category, f"{net.network_address},{net.broadcast_address}"


def _cidr(bounds: str, category: str) -> tuple[str, str]:
    return "Address", (
        f'<cybox:Properties xsi:type="AddressObj:AddressObjectType" category="{category}">'
        '<AddressObj:Address_Value condition="InclusiveBetween" apply_condition="ANY">'
        f"{bounds}</AddressObj:Address_Value></cybox:Properties>"
    )


_BY_TYPE: Final[dict[str, _Properties]] = {
    "IPv4": _address("ipv4-addr"),
    "IPv6": _address("ipv6-addr"),
    "email": _address("e-mail"),
    "domain": _domain,
    "hostname": _domain,
    "URL": _uri,
    "URI": _uri,
    "FileHash-MD5": _hash("MD5"),
    "FileHash-SHA1": _hash("SHA1"),
    "FileHash-SHA256": _hash("SHA256"),
    "Mutex": _mutex,
}

#: The OTX types that become Indicators; the others are left out (design.md).
EXPORTED_TYPES: Final = frozenset({*_BY_TYPE, "CIDR"})


# --- selection --------------------------------------------------------------------------------


def _skip_reason(ind: IndicatorDoc, now: dt.datetime) -> str | None:
    """Why ``ind`` gets no Indicator (a bounded set of reasons, usable as counter keys)."""
    if not ind.is_active:
        return "inactive"
    if ind.expiration is not None and _aware(ind.expiration) <= now:
        return "expired"
    kind = ind.type
    if kind not in EXPORTED_TYPES:
        return f"type {kind} not exported" if kind in OTX_TYPES else "unknown type"
    value = _clean(ind.indicator).strip()
    if not value:
        return "empty value"
    if kind == "CIDR" and _cidr_range(value) is None:
        return "CIDR that is not a network"
    return None


def indicator_count(pulse: PulseDoc, now: dt.datetime) -> int:
    """How many Indicators :func:`package_xml` writes for ``pulse`` at ``now`` (the hub counts
    content without rendering it, e.g. for Poll_Response record counts)."""
    now = _aware(now)
    return sum(1 for ind in pulse.indicators if _skip_reason(ind, now) is None)


# --- rendering --------------------------------------------------------------------------------


def _indicator(ind: IndicatorDoc, pulse_id: str, url: str) -> str:
    """One ``stix:Indicator``; ``ind`` is known usable (:func:`_skip_reason` said None)."""
    value = _clean(ind.indicator).strip()
    escaped = _text(value)
    if ind.type == "CIDR":
        found = _cidr_range(value)
        assert found is not None  # checked by _skip_reason
        object_kind, props = _cidr(found[1], found[0])
    else:
        object_kind, props = _BY_TYPE[ind.type](escaped)
    key = f"{pulse_id}/{ind.id}"
    ind_uuid = _uuid5(key)
    obs_uuid = _uuid5(key + "/observable")
    obj_uuid = _uuid5(key + "/object")
    timestamp = f' timestamp="{_iso(ind.created)}"' if ind.created is not None else ""
    description = _stripped(ind.description)
    desc = f"<indicator:Description>{description}</indicator:Description>" if description else ""
    return (
        f'<stix:Indicator id="{PREFIX}:indicator-{ind_uuid}"{timestamp}'
        ' xsi:type="indicator:IndicatorType">'
        f"<indicator:Title>{escaped} from {url}</indicator:Title>{desc}"
        f'<indicator:Observable id="{PREFIX}:Observable-{obs_uuid}">'
        f"<cybox:Title>{_text(ind.type)} - {escaped}</cybox:Title>"
        f'<cybox:Object id="{PREFIX}:{object_kind}-{obj_uuid}">{props}</cybox:Object>'
        "</indicator:Observable></stix:Indicator>"
    )


def _handling(tlp: str) -> str:
    color = _TLP_COLORS.get(tlp.strip().lower()) if tlp else None
    if color is None:
        return ""
    return (
        "<stix:Handling><marking:Marking><marking:Controlled_Structure>"
        "../../../../descendant-or-self::node() | ../../../../descendant-or-self::node()/@*"
        "</marking:Controlled_Structure>"
        '<marking:Marking_Structure xsi:type="tlpMarking:TLPMarkingStructureType"'
        f' color="{color}"/>'
        "</marking:Marking></stix:Handling>"
    )


def package_id(pulse: PulseDoc) -> str:
    """The package id of this pulse revision (deterministic: the same revision, the same id)."""
    version = str(pulse.revision) if pulse.revision is not None else _iso(pulse.modified)
    return f"{PREFIX}:Package-{_uuid5(f'{pulse.id}@{version}')}"


def package_xml(pulse: PulseDoc, *, now: dt.datetime, stats: Counter[str] | None = None) -> bytes:
    """The pulse as one STIX 1.1.1 ``STIX_Package``: UTF-8, no XML declaration, every namespace
    declared on the root (so it can be embedded as a TAXII Content_Block as is).

    Only indicators usable at ``now`` (active and unexpired) of the types OTX exports are written;
    ``stats``, when given, counts ``written`` and each reason an indicator was left out.
    """
    now = _aware(now)
    url = pulse_url(pulse.id)
    url_text = _text(url)
    parts: list[str] = []
    for ind in pulse.indicators:
        reason = _skip_reason(ind, now)
        if reason is None:
            parts.append(_indicator(ind, pulse.id, url_text))
        elif stats is not None:
            stats[reason] += 1
    if stats is not None:
        stats["written"] += len(parts)
    modified = _iso(pulse.modified)
    description = _stripped(pulse.description)
    head = (
        f'<stix:STIX_Package {_NS_DECL} id="{package_id(pulse)}" version="1.1.1"'
        f' timestamp="{modified}"><stix:STIX_Header>'
        f"<stix:Title>{_text(pulse.name)}</stix:Title>"
        '<stix:Package_Intent xsi:type="stixVocabs:PackageIntentVocab-1.0">Indicators'
        "</stix:Package_Intent>"
        + (f"<stix:Description>{description}</stix:Description>" if description else "")
        + f"<stix:Short_Description>{url_text}</stix:Short_Description>"
        + _handling(pulse.tlp)
        + "<stix:Information_Source><stixCommon:Identity>"
        f"<stixCommon:Name>{SOURCE_NAME}</stixCommon:Name></stixCommon:Identity>"
        f"<stixCommon:Time><cyboxCommon:Produced_Time>{modified}</cyboxCommon:Produced_Time>"
        "</stixCommon:Time></stix:Information_Source></stix:STIX_Header>"
    )
    body = f"<stix:Indicators>{''.join(parts)}</stix:Indicators>" if parts else ""
    return f"{head}{body}</stix:STIX_Package>".encode()
