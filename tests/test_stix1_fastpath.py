"""The STIX 1 reader's fast path for the common shape of observable gives exactly what the general
path gives: the same observables in the same order (kind, value, original type, context with the
same keys, values and key order) and the same counters, skip reasons and examples.

Every STIX 1 / TAXII 1 sample in tests/data is read both ways, and so is a generated OTX-like
package holding the common shape next to every variant that must leave it (negation, idrefs,
compositions, several objects, related objects, patterns, lists, ranges, hashes of several types,
empty and invalid values, e-mail messages, comments, nested packages, ...).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from feedgate import observables
from feedgate.observables import (
    FAST_NORMALISERS,
    InvalidValue,
    Kind,
    Observable,
    _fast,
    _normalise_full,
    normalise_ip_range,
)
from feedgate.stix import ReadStats, _stix1
from feedgate.stix._stix1 import read_stix1
from stix_helpers import DATA, NS

# --- reading both ways --------------------------------------------------------------------------


def _summary(found: list[Observable]) -> list[tuple[Any, ...]]:
    """Each observable, with its context's items in order and which observables share one
    context object (batches send a shared context once)."""
    numbers: dict[int, int] = {}
    return [
        (
            o.kind,
            o.value,
            o.original_type,
            type(o.context),
            list(o.context.items()),
            numbers.setdefault(id(o.context), len(numbers)),
            numbers.setdefault(id(getattr(o.context, "shared", None)), len(numbers)),
        )
        for o in found
    ]


def _stats(stats: ReadStats) -> tuple[Any, ...]:
    return (
        stats.packages,
        stats.indicators,
        stats.content_blocks,
        list(stats.by_kind.items()),
        list(stats.skipped.items()),
        {reason: list(kept) for reason, kept in stats.examples.items()},
    )


def _read(data: bytes, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """What read_stix1 gives for ``data``, with or without the fast path (or what it raised)."""
    taken = 0
    original = _stix1._PackageReader._fast_observable

    def counting(self: _stix1._PackageReader, *args: Any) -> bool:
        nonlocal taken
        done = original(self, *args)
        taken += done
        return done

    with monkeypatch.context() as patch:
        patch.setattr(_stix1, "FAST_PATH", fast)
        patch.setattr(_stix1._PackageReader, "_fast_observable", counting)
        stats = ReadStats()
        found: list[Observable] = []
        error: tuple[str, str] | None = None
        try:
            for item in read_stix1(io.BytesIO(data), stats):
                found.append(item)
        except Exception as exc:  # compared between both paths, as the output is
            error = (type(exc).__name__, str(exc))
    return _summary(found), _stats(stats), error, taken


def _same_both_ways(data: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    fast = _read(data, fast=True, monkeypatch=monkeypatch)
    general = _read(data, fast=False, monkeypatch=monkeypatch)
    assert general[3] == 0, "the general path must not use the fast path"
    assert fast[0] == general[0]  # observables, contexts and key order
    assert fast[1] == general[1]  # counters, skip reasons, examples (in order)
    assert fast[2] == general[2]  # the same error, if any
    return fast


def _samples() -> Iterator[Path]:
    for folder in ("stix1", "taxii1"):
        yield from sorted((DATA / folder).rglob("*.xml"))


SAMPLES = list(_samples())


def test_there_are_samples() -> None:
    assert len(SAMPLES) > 30


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(DATA)))
def test_every_sample_reads_the_same_both_ways(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _same_both_ways(path.read_bytes(), monkeypatch)


# --- a generated OTX-like package with every variant --------------------------------------------


def _props(xsi: str, inner: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f'<cybox:Properties xsi:type="{xsi}"{extra}>{inner}</cybox:Properties>'


def _value(tag: str, text: str, **attrs: str) -> str:
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f"<{tag}{extra}>{text}</{tag}>"


def _domain(text: str, *, type_: str = "FQDN", **attrs: str) -> str:
    return _props(
        "DomainNameObj:DomainNameObjectType",
        _value("DomainNameObj:Value", text, condition="Equals", **attrs),
        type=type_,
    )


def _uri(text: str, *, type_: str | None = "URL", link: bool = False) -> str:
    attrs = {"type": type_} if type_ is not None else {}
    xsi = "LinkObj:LinkObjectType" if link else "URIObj:URIObjectType"
    return _props(xsi, _value("URIObj:Value", text, condition="Equals"), **attrs)


def _address(text: str, category: str | None = "ipv4-addr", **attrs: str) -> str:
    cat = {"category": category} if category is not None else {}
    return _props(
        "AddressObj:AddressObjectType", _value("AddressObj:Address_Value", text, **attrs), **cat
    )


def _hash(kind: str, digest: str, *, part: str = "Simple_Hash_Value") -> str:
    return (
        "<cyboxCommon:Hash>"
        f'<cyboxCommon:Type condition="Equals">{kind}</cyboxCommon:Type>'
        f'<cyboxCommon:{part} condition="Equals">{digest}</cyboxCommon:{part}>'
        "</cyboxCommon:Hash>"
    )


def _file(*hashes: str, extra: str = "", xsi: str = "FileObj:FileObjectType") -> str:
    return _props(xsi, f"{extra}<FileObj:Hashes>{''.join(hashes)}</FileObj:Hashes>")


#: The helpers' namespaces and those of the few more object types used here.
NS_ALL = (
    f"{NS} "
    'xmlns:ArtifactObj="http://cybox.mitre.org/objects#ArtifactObject-2" '
    'xmlns:WhoisObj="http://cybox.mitre.org/objects#WhoisObject-2" '
    'xmlns:PortObj="http://cybox.mitre.org/objects#PortObject-2"'
)
MD5 = "d41d8cd98f00b204e9800998ecf8427e"
SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

#: Properties elements, common shape first, then everything that must take the general path.
PROPERTIES: list[str] = [
    _domain("secure.online-service.test"),
    _domain("Secure.Online-Service.TEST"),
    _domain("  padded.example.com  "),
    _domain("example", type_="TLD"),
    _domain("-bad-.example"),
    _domain("xn--bcher-kva.example"),
    _domain("bücher.example"),
    _domain("evil[.]example"),
    _domain(""),
    _domain("   "),
    _domain("a.example##comma##b.example##comma##"),
    _domain("part.example", apply_condition="NONE"),
    _domain("part.example", apply_condition="ANY"),
    _props("DomainNameObj:DomainNameObjectType", _value("DomainNameObj:Value", "no.cond.example")),
    _props(
        "DomainNameObj:DomainNameObjectType",
        _value("DomainNameObj:Value", "contains.example", condition="Contains"),
    ),
    _props(
        "DomainNameObj:DomainNameObjectType",
        _value("DomainNameObj:Value", "odd.example", condition="Weird"),
    ),
    _props(
        "DomainNameObj:DomainNameObjectType",
        _value("DomainNameObj:Value", "one.example") + _value("DomainNameObj:Value", "two.example"),
    ),
    _props(
        "DomainNameObj:DomainNameObjectType",
        "<!-- a comment -->" + _value("DomainNameObj:Value", "commented.example"),
    ),
    _props("other:DomainNameObjectType", _value("DomainNameObj:Value", "prefix.example")),
    _props("DomainNameObjectType", _value("Value", "bare.example")),
    _uri("http://secure-verify20.invalid:8080/docs?id=76c371"),
    _uri("https://files.support-docs27.example/office/37519971.exe"),
    _uri("http://host.example:80/default-port"),
    _uri("https://host.example:443"),
    _uri("https://host.example:8443?q=1"),
    _uri("http://host.example:65536/"),
    _uri("http://host.example:08080/"),
    _uri("http://192.0.2.7:8000/x"),
    _uri("HTTP://Host.Example/Path%2f"),
    _uri("hxxp://evil[.]example/x"),
    _uri("evil.example/no-scheme"),
    _uri("http://a.example/p", type_=None),
    _uri("dom.example", type_="Domain Name"),
    _uri("urn:isbn:0451450523", type_="General URN"),
    _uri("http://link.example/l", link=True),
    _uri("http://"),
    _address("192.0.2.1"),
    _address("192.0.2.0/24"),
    _address("2001:db8:b486::3349", "ipv6-addr"),
    _address("2001:DB8::1", "ipv6-addr"),
    _address("::ffff:192.0.2.1", "ipv6-addr"),
    _address("admin26@portal-files96.example", "e-mail"),
    _address("Admin@Portal.Example", "e-mail"),
    _address("user@[192.0.2.1]", "e-mail"),
    _address("198.51.100.0/24", "cidr"),
    _address("198.51.100.0/24", "ipv4-net"),
    _address("2001:db8::/32", "ipv6-net"),
    _address("198.51.100.7/32", "cidr"),
    _address("203.0.113.9", None),
    _address("203.0.113.0/28", None),
    _address("who@where.example", None),
    _address("00:11:22:33:44:55", "mac"),
    _address("999.1.1.1"),
    _address("010.1.1.1"),
    _address("192.0.2.48,192.0.2.51", condition="InclusiveBetween", apply_condition="ANY"),
    _address("192.0.2.1##comma##192.0.2.2", condition="Equals"),
    _address("192.0.2.9", condition="Equals", apply_condition="ALL"),
    _address("192.0.2.10", condition="GreaterThan"),
    _props("HostnameObj:HostnameObjectType", _value("HostnameObj:Hostname_Value", "h.example")),
    _props("HostnameObj:HostnameObjectType", _value("HostnameObj:Hostname_Value", "bad host")),
    _props("MutexObj:MutexObjectType", _value("MutexObj:Name", "Global\\static-734f0f27")),
    _props("MutexObj:MutexObjectType", _value("MutexObj:Name", "")),
    _props("MutexObj:MutexObjectType", _value("MutexObj:Name", "line\tone\nline two")),
    _file(_hash("MD5", MD5)),
    _file(_hash("SHA1", SHA1)),
    _file(_hash("SHA-1", SHA1)),
    _file(_hash("SHA256", SHA256)),
    _file(_hash("sha-256", SHA256.upper())),
    _file(_hash("MD5", MD5[:-1])),
    _file(_hash("MD5", SHA1)),
    _file(_hash("SSDEEP", "3:abc:def", part="Fuzzy_Hash_Value")),
    _file(_hash("SHA512", "ab" * 64)),
    _file(_hash("", MD5)),
    _file(_hash("MD5", MD5), _hash("SHA1", SHA1)),
    _file(_hash("MD5", MD5), extra="<FileObj:File_Name>x.exe</FileObj:File_Name>"),
    _file(_hash("MD5", MD5) + "<!-- c -->"),
    _file(_hash("MD5", MD5), xsi="WinExecutableFileObj:WindowsExecutableFileObjectType"),
    _props(
        "FileObj:FileObjectType",
        "<FileObj:Hashes>" + _hash("MD5", MD5) + "</FileObj:Hashes>"
        "<FileObj:Hashes>" + _hash("SHA1", SHA1) + "</FileObj:Hashes>",
    ),
    _props(
        "FileObj:FileObjectType",
        "<FileObj:Hashes><cyboxCommon:Hash><cyboxCommon:Type>MD5</cyboxCommon:Type>"
        "</cyboxCommon:Hash></FileObj:Hashes>",
    ),
    _props(
        "FileObj:FileObjectType",
        "<FileObj:Hashes><cyboxCommon:Hash><cyboxCommon:Type>MD5</cyboxCommon:Type>"
        "<cyboxCommon:Type>SHA1</cyboxCommon:Type>"
        f"<cyboxCommon:Simple_Hash_Value>{SHA1}</cyboxCommon:Simple_Hash_Value>"
        "</cyboxCommon:Hash></FileObj:Hashes>",
    ),
    _props("FileObj:FileObjectType", "<FileObj:File_Name>only-a-name.exe</FileObj:File_Name>"),
    _props("FileObj:FileObjectType", "<FileObj:Hashes/>"),
    _props(
        "EmailMessageObj:EmailMessageObjectType",
        "<EmailMessageObj:Header><EmailMessageObj:From>"
        "<AddressObj:Address_Value>sender@evil.example</AddressObj:Address_Value>"
        "</EmailMessageObj:From><EmailMessageObj:To>"
        "<AddressObj:Address_Value>victim@corp.example</AddressObj:Address_Value>"
        "</EmailMessageObj:To><EmailMessageObj:Subject>Invoice</EmailMessageObj:Subject>"
        "</EmailMessageObj:Header>",
    ),
    _props(
        "ArtifactObj:ArtifactObjectType",
        "<ArtifactObj:Raw_Artifact>AAAA</ArtifactObj:Raw_Artifact>",
    ),
    _props("WhoisObj:WhoisObjectType", "<WhoisObj:Registrar>Evil Inc</WhoisObj:Registrar>"),
    _props("PortObj:PortObjectType", ""),
    "<cybox:Properties><DomainNameObj:Value>untyped.example</DomainNameObj:Value></cybox:Properties>",
]


def _observable(inner: str, *, ident: str | None = None, **attrs: str) -> str:
    extra = f' id="{ident}"' if ident else ""
    extra += "".join(f' {k}="{v}"' for k, v in attrs.items())
    return f"<indicator:Observable{extra}>{inner}</indicator:Observable>"


def _object(props: str, *, ident: str | None = None, related: str = "") -> str:
    extra = f' id="{ident}"' if ident else ""
    return f"<cybox:Object{extra}>{props}{related}</cybox:Object>"


def _indicator(n: int, body: str, *, ident: str | None = None, extra: str = "") -> str:
    ident = ident or f"ex:indicator-{n}"
    return (
        f'<stix:Indicator id="{ident}" timestamp="2026-06-01T21:03:{n % 60:02d}+00:00" '
        f'xsi:type="indicator:IndicatorType">'
        f"<indicator:Title>indicator {n} from https://otx.example/pulse/1</indicator:Title>"
        f"{extra}{body}</stix:Indicator>"
    )


def _variants() -> list[str]:
    """Indicators: each Properties alone (the shape OTX sends), then structural variants."""
    out: list[str] = []
    n = 0

    def add(body: str, **kwargs: str) -> None:
        nonlocal n
        n += 1
        out.append(_indicator(n, body, **kwargs))

    for i, props in enumerate(PROPERTIES):
        add(
            _observable(
                "<cybox:Title>t</cybox:Title>" + _object(props, ident=f"ex:Object-{i}"),
                ident=f"ex:Observable-{i}",
            )
        )
    common = _domain("common.example")
    # negation
    for negate in ("true", "1", "false", "0", "TRUE"):
        add(_observable(_object(common), negate=negate))
    # idrefs: to a package-level observable, to an object, to nothing, to an indicator
    add('<indicator:Observable idref="ex:PkgObservable-1"/>')
    add('<indicator:Observable idref="ex:Missing-1"/>')
    add(_observable('<cybox:Object idref="ex:PkgObject-2"/>'))
    add(_observable('<cybox:Object idref="ex:Missing-2"/>'))
    # two objects in one observable; an observable without an object; an object without
    # properties; two Properties in one object
    add(_observable(_object(common) + _object(_domain("second.example"))))
    add(_observable("<cybox:Title>only a title</cybox:Title>"))
    add(_observable("<cybox:Object><cybox:Description>d</cybox:Description></cybox:Object>"))
    add(_observable(_object(common + _domain("other-props.example"))))
    # compositions, nested
    add(
        _observable(
            '<cybox:Observable_Composition operator="OR">'
            f"<cybox:Observable>{_object(common)}</cybox:Observable>"
            '<cybox:Observable><cybox:Observable_Composition operator="AND">'
            f"<cybox:Observable>{_object(_address('192.0.2.77'))}</cybox:Observable>"
            '<cybox:Observable idref="ex:PkgObservable-3"/>'
            "</cybox:Observable_Composition></cybox:Observable>"
            "</cybox:Observable_Composition>"
        )
    )
    # an object and a composition side by side
    add(
        _observable(
            _object(common) + '<cybox:Observable_Composition operator="OR">'
            f"<cybox:Observable>{_object(_domain('in-composition.example'))}</cybox:Observable>"
            "</cybox:Observable_Composition>"
        )
    )
    # an inline observable whose id is also a package-level observable's: that one is consumed
    add(_observable(_object(_domain("inline-twin.example")), ident="ex:PkgObservable-5"))
    # related objects
    related = (
        "<cybox:Related_Objects><cybox:Related_Object>"
        f"{_uri('http://related.example/x')}</cybox:Related_Object>"
        '<cybox:Related_Object idref="ex:PkgObject-2"/></cybox:Related_Objects>'
    )
    add(_observable(_object(common, related=related)))
    # several observables in one indicator, sharing an object id (read once), and an idref
    # back to an object an earlier observable of the same indicator read
    add(
        _observable(_object(common, ident="ex:Shared-1"))
        + _observable(_object(_domain("again.example"), ident="ex:Shared-1"))
        + _observable(_object(_domain("third.example"), ident="ex:Shared-2"))
        + _observable('<cybox:Object idref="ex:Shared-2"/>')
        + _observable(_object(_domain("Fourth.Example")))
    )
    # the same object id in two indicators: read by each
    add(_observable(_object(common, ident="ex:Shared-1")))
    # e-mail message with a link by reference
    add(
        _observable(
            _object(
                _props(
                    "EmailMessageObj:EmailMessageObjectType",
                    "<EmailMessageObj:Header><EmailMessageObj:From>"
                    "<AddressObj:Address_Value>phish@evil.example</AddressObj:Address_Value>"
                    "</EmailMessageObj:From></EmailMessageObj:Header>"
                    "<EmailMessageObj:Links>"
                    '<EmailMessageObj:Link object_reference="ex:PkgObject-4"/>'
                    '<EmailMessageObj:Link object_reference="ex:Missing-4"/>'
                    "</EmailMessageObj:Links>",
                )
            )
        )
    )
    # indicator context: description, types, confidence, valid time, handling
    add(
        _observable(_object(common)),
        extra=(
            "<indicator:Type>Domain Watchlist</indicator:Type>"
            "<indicator:Type>Malware Artifacts</indicator:Type>"
            "<indicator:Description> described </indicator:Description>"
            "<indicator:Description>second</indicator:Description>"
            "<indicator:Valid_Time_Position><indicator:Start_Time>2026-01-01T00:00:00Z"
            "</indicator:Start_Time><indicator:End_Time>2027-01-01T00:00:00Z"
            "</indicator:End_Time></indicator:Valid_Time_Position>"
            "<indicator:Confidence><stixCommon:Value>High</stixCommon:Value>"
            "</indicator:Confidence>"
            '<indicator:Handling><marking:Marking xmlns:marking="http://data-marking.mitre.org/'
            'Marking-1"><marking:Marking_Structure color="AMBER"/></marking:Marking>'
            "</indicator:Handling>"
        ),
    )
    # a duplicate indicator id, an indicator by reference, an indicator without id
    add(_observable(_object(_domain("dup.example"))), ident="ex:indicator-1")
    out.append('<stix:Indicator idref="ex:indicator-2"/>')
    out.append(
        "<stix:Indicator><indicator:Title>anonymous</indicator:Title>"
        f"{_observable(_object(_domain('anon.example')))}</stix:Indicator>"
    )
    # comments and processing instructions between the elements of the common shape
    add(
        "<!-- c --><indicator:Observable><!-- c --><cybox:Object><?pi x?>"
        f"{common}<!-- c --></cybox:Object></indicator:Observable>"
    )
    return out


def _package(indicators: list[str], *, pkg_id: str = "ex:Package-1", extra: str = "") -> str:
    header = (
        "<stix:STIX_Header><stix:Title>Exploitation of CVE-2021-40444</stix:Title>"
        "<stix:Description>Indicators observed in a campaign.</stix:Description>"
        "<stix:Short_Description>https://otx.example/pulse/1</stix:Short_Description>"
        '<stix:Handling><marking:Marking xmlns:marking="http://data-marking.mitre.org/Marking-1">'
        '<marking:Marking_Structure color="WHITE"/></marking:Marking></stix:Handling>'
        "<stix:Information_Source><stixCommon:Time><cyboxCommon:Produced_Time>"
        "2026-06-02T05:24:18+00:00</cyboxCommon:Produced_Time></stixCommon:Time>"
        "</stix:Information_Source></stix:STIX_Header>"
    )
    return (
        f'<stix:STIX_Package {NS_ALL} id="{pkg_id}" version="1.1.1" '
        f'timestamp="2026-06-02T05:24:18+00:00">{header}'
        f"<stix:Indicators>{''.join(indicators)}</stix:Indicators>{extra}</stix:STIX_Package>"
    )


_PACKAGE_OBSERVABLES = (
    '<stix:Observables cybox_major_version="2" cybox_minor_version="1">'
    f'<cybox:Observable id="ex:PkgObservable-1">{_object(_domain("pkg-one.example"))}'
    "</cybox:Observable>"
    f'<cybox:Observable id="ex:PkgObservable-2">'
    f"{_object(_address('198.51.100.20'), ident='ex:PkgObject-2')}</cybox:Observable>"
    f'<cybox:Observable id="ex:PkgObservable-3">{_object(_domain("pkg-three.example"))}'
    "</cybox:Observable>"
    f'<cybox:Observable id="ex:PkgObservable-4">'
    f"{_object(_uri('http://pkg-link.example/l', link=True), ident='ex:PkgObject-4')}"
    "</cybox:Observable>"
    f'<cybox:Observable id="ex:PkgObservable-5">{_object(_domain("unreferenced.example"))}'
    "</cybox:Observable>"
    f'<cybox:Observable id="ex:PkgObservable-6">{_object(_domain("incident-only.example"))}'
    "</cybox:Observable>"
    f'<cybox:Observable id="ex:PkgObservable-7" negate="true">{_object(_domain("n.example"))}'
    "</cybox:Observable>"
    "</stix:Observables>"
    '<stix:Incidents><stix:Incident xmlns:incident="http://stix.mitre.org/Incident-1" '
    'xsi:type="incident:IncidentType" id="ex:incident-1"><incident:Related_Observables>'
    '<incident:Related_Observable><stixCommon:Observable idref="ex:PkgObservable-6"/>'
    "</incident:Related_Observable></incident:Related_Observables></stix:Incident>"
    "</stix:Incidents>"
)


def otx_like() -> bytes:
    """A TAXII poll response: plain OTX-shaped packages, one with every variant, one with
    package-level observables, one nesting another package, and one as escaped text."""
    plain = [
        _indicator(
            1000 + i,
            _observable(
                "<cybox:Title>t</cybox:Title>"
                + _object(PROPERTIES[i % 6], ident=f"ex:Object-{1000 + i}")
            ),
        )
        for i in range(30)
    ]
    nested = _package(
        [_indicator(1, _observable(_object(_domain("outer.example"))))],
        pkg_id="ex:Package-outer",
        extra=(
            "<stix:Related_Packages><stix:Related_Package><stix:Package "
            'id="ex:Package-inner" timestamp="2026-01-01T00:00:00Z"><stix:STIX_Header>'
            "<stix:Title>inner</stix:Title></stix:STIX_Header><stix:Indicators>"
            + _indicator(2, _observable(_object(_domain("inner.example"))))
            + _indicator(3, '<indicator:Observable idref="ex:PkgObservable-1"/>')
            + "</stix:Indicators>"
            + _PACKAGE_OBSERVABLES
            + "</stix:Package></stix:Related_Package></stix:Related_Packages>"
        ),
    )
    packages = [
        _package(plain, pkg_id="ex:Package-plain"),
        _package(_variants(), pkg_id="ex:Package-variants", extra=_PACKAGE_OBSERVABLES),
        _package(plain[:5] + _variants()[:20], pkg_id="ex:Package-no-pkg-observables"),
        nested,
    ]
    escaped = _package(plain[:3], pkg_id="ex:Package-escaped")
    escaped = escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    blocks = [
        '<taxii_11:Content_Block><taxii_11:Content_Binding binding_id="urn:stix.mitre.org:'
        f'xml:1.1.1"/><taxii_11:Content>{pkg}</taxii_11:Content></taxii_11:Content_Block>'
        for pkg in [*packages, escaped]
    ]
    cybox_document = (
        f'<cybox:Observables {NS_ALL} cybox_major_version="2" cybox_minor_version="1">'
        f"<cybox:Observable>{_object(_domain('bare-cybox.example'))}</cybox:Observable>"
        f"<cybox:Observable>{_object(_domain('Bare-Upper.Example'))}</cybox:Observable>"
        f'<cybox:Observable negate="true">{_object(_domain("neg.example"))}</cybox:Observable>'
        "</cybox:Observables>"
    )
    blocks.append(
        "<taxii_11:Content_Block><taxii_11:Content>"
        f"{cybox_document}</taxii_11:Content></taxii_11:Content_Block>"
    )
    return (
        '<taxii_11:Poll_Response xmlns:taxii_11="http://taxii.mitre.org/messages/'
        'taxii_xml_binding-1.1" message_id="1" in_response_to="2" collection_name="c" '
        f'more="false">{"".join(blocks)}</taxii_11:Poll_Response>'
    ).encode()


def test_generated_package_is_well_formed() -> None:
    etree.fromstring(otx_like())


def test_otx_like_variants_read_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    found, stats, error, taken = _same_both_ways(otx_like(), monkeypatch)
    assert error is None
    # The common shape does take the fast path, and the variants exercise the general one.
    assert taken > 60
    assert stats[2] == 6  # content blocks
    assert len(found) > taken
    assert len(stats[4]) > 10  # many different skip reasons


def test_each_variant_alone_reads_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each indicator in a package of its own: a variant cannot hide behind another's output."""
    for body in _variants():
        data = _package([body], extra=_PACKAGE_OBSERVABLES).encode()
        _same_both_ways(data, monkeypatch)


def test_observable_limit_reads_the_same_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stix1, "MAX_OBSERVABLES_PER_PACKAGE", 7)
    _, stats, _, taken = _same_both_ways(otx_like(), monkeypatch)
    assert taken > 0
    assert any("observables (rest left out)" in reason for reason, _ in stats[4])


def test_fast_path_is_on_by_default() -> None:
    assert _stix1.FAST_PATH is True
    assert _stix1._PackageReader(ReadStats()).fast is True


# --- the package context, against the ElementPath reference it replaced ------------------------


def _reference_text(parent: Any, *path: str) -> str | None:
    elem = parent
    for tag in path:
        if elem is None:
            return None
        elem = elem.find(tag)
    if elem is None or elem.text is None:
        return None
    return elem.text.strip() or None


def _reference_tlp(parent: Any) -> str | None:
    handling = parent.find(f"{{{_stix1.STIX}}}Handling")
    if handling is None:
        handling = parent.find(f"{{{_stix1.INDICATOR}}}Handling")
    if handling is None:
        return None
    for structure in handling.iter("{http://data-marking.mitre.org/Marking-1}Marking_Structure"):
        color = structure.get("color")
        if color:
            return str(color).lower()
    return None


def _reference_package_context(pkg: Any) -> dict[str, Any]:
    stix, common, cybox_common = _stix1.STIX, _stix1.STIX_COMMON, _stix1.CYBOX_COMMON
    ctx: dict[str, Any] = {}
    if pkg.get("id"):
        ctx["package_id"] = pkg.get("id")
    header = pkg.find(_stix1.T_HEADER)
    if header is not None:
        for key, tag in (
            ("package_title", "Title"),
            ("package_description", "Description"),
            ("package_short_description", "Short_Description"),
        ):
            text = _reference_text(header, f"{{{stix}}}{tag}")
            if text:
                ctx[key] = text
        produced = _reference_text(
            header,
            f"{{{stix}}}Information_Source",
            f"{{{common}}}Time",
            f"{{{cybox_common}}}Produced_Time",
        )
        if produced:
            ctx["produced"] = produced
        tlp = _reference_tlp(header)
        if tlp:
            ctx["tlp"] = tlp
    if "produced" not in ctx and pkg.get("timestamp"):
        ctx["produced"] = pkg.get("timestamp")
    return ctx


_HEADERS = [
    "",
    "<stix:STIX_Header/>",
    "<stix:STIX_Header><stix:Title> </stix:Title><stix:Title>second</stix:Title>"
    "<stix:Description>d</stix:Description></stix:STIX_Header>",
    "<stix:STIX_Header><!-- c --><stix:Short_Description>s</stix:Short_Description>"
    "<stix:Title>t</stix:Title><stix:Information_Source/></stix:STIX_Header>",
    "<stix:STIX_Header><stix:Information_Source><stixCommon:Time/></stix:Information_Source>"
    "<stix:Information_Source><stixCommon:Time><cyboxCommon:Produced_Time>late"
    "</cyboxCommon:Produced_Time></stixCommon:Time></stix:Information_Source>"
    "</stix:STIX_Header>",
    "<stix:STIX_Header><stix:Information_Source><stixCommon:Time><cyboxCommon:Produced_Time>"
    " 2026 </cyboxCommon:Produced_Time></stixCommon:Time></stix:Information_Source>"
    "</stix:STIX_Header>",
    '<stix:STIX_Header><indicator:Handling><m:Marking xmlns:m="http://data-marking.mitre.org/'
    'Marking-1"><m:Marking_Structure color="RED"/></m:Marking></indicator:Handling>'
    '<stix:Handling><m:Marking xmlns:m="http://data-marking.mitre.org/Marking-1">'
    '<m:Marking_Structure/><m:Marking_Structure color="Green"/></m:Marking></stix:Handling>'
    "</stix:STIX_Header>",
    '<stix:STIX_Header><indicator:Handling><m:Marking xmlns:m="http://data-marking.mitre.org/'
    'Marking-1"><m:Marking_Structure color="RED"/></m:Marking></indicator:Handling>'
    "</stix:STIX_Header>",
    "<stix:STIX_Header><stix:Handling/><indicator:Handling><m:Marking xmlns:m="
    '"http://data-marking.mitre.org/Marking-1"><m:Marking_Structure color="RED"/>'
    "</m:Marking></indicator:Handling></stix:STIX_Header>",
]


@pytest.mark.parametrize("header", _HEADERS)
@pytest.mark.parametrize("attrs", ['id="ex:p" timestamp="2026-01-01T00:00:00Z"', ""])
def test_package_context_matches_the_elementpath_reference(header: str, attrs: str) -> None:
    pkg = etree.fromstring(f"<stix:STIX_Package {NS} {attrs}>{header}</stix:STIX_Package>")
    got = _stix1.package_context(pkg)
    want = _reference_package_context(pkg)
    assert list(got.items()) == list(want.items())


def test_package_context_of_every_sample_matches_the_reference() -> None:
    seen = 0
    for path in SAMPLES:
        try:
            root = etree.parse(str(path)).getroot()
        except etree.XMLSyntaxError:
            continue
        for pkg in root.iter(_stix1.T_PACKAGE, _stix1.T_NESTED_PACKAGE):
            seen += 1
            got = _stix1.package_context(pkg)
            assert list(got.items()) == list(_reference_package_context(pkg).items()), path
    assert seen > 20


# --- the fast normalisers agree with the full ones ----------------------------------------------

_HOSTS = st.one_of(
    st.from_regex(
        r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z0-9]{1,5}){0,2}\.[a-z]{2,5}", fullmatch=True
    ),
    st.ip_addresses(v=4).map(str),
)
_PORTS = st.one_of(
    st.none(),
    st.integers(0, 70000).map(str),
    st.sampled_from(["80", "443", "08080", "0", "65535", "65536", "99999", "123456", ""]),
)
_PATHS = st.one_of(st.none(), st.from_regex(r"/[A-Za-z0-9._~%:@/-]{0,12}", fullmatch=True))
_QUERIES = st.one_of(st.none(), st.from_regex(r"\?[A-Za-z0-9=&%?]{0,8}", fullmatch=True))


def _url(scheme: str, host: str, port: str | None, path: str | None, query: str | None) -> str:
    netloc = host if port is None else f"{host}:{port}"
    return f"{scheme}://{netloc}{path or ''}{query or ''}"


def _agree(kind: Kind, value: str) -> None:
    fast = FAST_NORMALISERS[kind](value)
    assert fast == _fast(kind, value)
    if fast is not None:
        try:
            full: Any = _normalise_full(kind, value)
        except InvalidValue as exc:
            full = f"invalid: {exc}"
        assert fast == full, value


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(["http", "https"]), _HOSTS, _PORTS, _PATHS, _QUERIES)
def test_fast_urls_with_ports_agree_with_the_full_normaliser(
    scheme: str, host: str, port: str | None, path: str | None, query: str | None
) -> None:
    _agree(Kind.URL, _url(scheme, host, port, path, query))


@pytest.mark.parametrize(
    "value",
    [
        "http://secure-verify20.invalid:8080/docs?id=76c371",
        "http://host.example:8080",
        "http://host.example:8080?x=1",
        "https://host.example:8443/",
        "http://192.0.2.1:8000/x",
    ],
)
def test_canonical_urls_with_ports_take_the_fast_path(value: str) -> None:
    assert FAST_NORMALISERS[Kind.URL](value) is not None
    _agree(Kind.URL, value)


@pytest.mark.parametrize(
    "value",
    [
        "http://host.example:80/",
        "https://host.example:443/",
        "http://host.example:08080/",
        "http://host.example:65536/",
        "http://host.example:/",
        "http://ho--st.example:8080/",
        "http://" + "a" * 250 + ".example:8080/",
        "http://host.example/" + "a" * 3000,
    ],
)
def test_unusual_urls_take_the_full_path(value: str) -> None:
    assert FAST_NORMALISERS[Kind.URL](value) is None


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefABCDEF0123456789xyz-. @:/", min_size=0, max_size=70))
def test_every_fast_normaliser_agrees_on_near_misses(value: str) -> None:
    for kind in FAST_NORMALISERS:
        _agree(kind, value)


@settings(max_examples=500, deadline=None)
@given(st.ip_addresses(v=6), st.integers(0, 3))
def test_fast_ipv6_agrees_with_the_full_normaliser(address: Any, spelling: int) -> None:
    text = [str(address), address.exploded, str(address).upper(), f"{address}".replace("::", ":0:")]
    for kind in (Kind.IPV4, Kind.IPV6):
        _agree(kind, text[spelling])
    if address.ipv4_mapped is None:
        assert FAST_NORMALISERS[Kind.IPV6](str(address)) == (Kind.IPV6, str(address))


@pytest.mark.parametrize(
    "value",
    [
        "::",
        "::1",
        "1::",
        "1:0:0:2::3",
        "1::2:0:0:3",
        "1:2:3:4:5:6:7::",
        "1:2:3:4:5:6::8",
        "::ffff:c000:201",
        "1:0::2",
        "01::1",
        "0:0:0:0:0:0:0:1",
        "1::0:0:2",
        "1:::2",
        ":1::",
        "1:2:3:4:5:6:7:8:9",
    ],
)
def test_fast_ipv6_edge_cases_agree(value: str) -> None:
    _agree(Kind.IPV6, value)


def _range_or_reason(first: str, last: str) -> Any:
    try:
        return normalise_ip_range(first, last)
    except InvalidValue as exc:
        return f"invalid: {exc}"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(0, 300),
    st.sampled_from([str, lambda a: a.exploded, lambda a: str(a).upper(), lambda a: f" {a} "]),
)
def test_ip_ranges_read_their_ends_as_the_full_normaliser_does(
    start: Any, span: int, spell: Any
) -> None:
    top = 2**start.max_prefixlen - 1
    end = start + min(span, top - int(start))
    first, last = spell(start), spell(end)
    fast = _range_or_reason(first, last)
    with mock.patch.object(observables, "_fast_ip", lambda value: None):
        assert _range_or_reason(first, last) == fast
