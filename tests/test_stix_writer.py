"""The STIX 1.1.1 writer the hub serves pulses with (feedgate.stix.writer).

What matters is that consumers built for OTX read our packages as they read OTX's: our own reader
(kinds, normalised values, context), python-stix (the peers venv) and a TAXII Content_Block
embedding. Plus the writer's own promises: usable indicators only, escaping, determinism, and
well-formed output for any text (hypothesis).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import textwrap
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from feedgate.observables import Kind, Observable
from feedgate.stix import ReadStats, read_observables
from feedgate.stix.writer import (
    EXPORTED_TYPES,
    OTX_TYPES,
    IndicatorDoc,
    PulseDoc,
    indicator_count,
    package_id,
    package_xml,
    pulse_url,
)

UTC = dt.UTC
NOW = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
CREATED = dt.datetime(2024, 5, 1, 8, 30, 15, 264000, tzinfo=UTC)
PULSE_ID = "5824a3e6ba8d6c1a0cc1e1b2"
URL = f"https://otx.alienvault.com/pulse/{PULSE_ID}"

SHA256 = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"
SHA1 = "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"
MD5 = "D41D8CD98F00B204E9800998ECF8427E"

#: (OTX type, value, expected (kind, normalised value, original type) or None if left out)
EVERY_TYPE: list[tuple[str, str, tuple[Kind, str, str | None] | None]] = [
    ("IPv4", "198.51.100.7", (Kind.IPV4, "198.51.100.7", None)),
    ("IPv6", "2001:DB8:0:0::1", (Kind.IPV6, "2001:db8::1", None)),
    ("domain", "Evil.Example.COM", (Kind.DOMAIN, "evil.example.com", None)),
    ("hostname", "www.evil.example.net", (Kind.DOMAIN, "www.evil.example.net", None)),
    ("email", "Phish@Evil.Example.ORG", (Kind.EMAIL, "Phish@evil.example.org", None)),
    ("URL", "http://evil.example.com/a/b.php", (Kind.URL, "http://evil.example.com/a/b.php", None)),
    ("URI", "https://evil.example.com/c", (Kind.URL, "https://evil.example.com/c", None)),
    ("FileHash-MD5", MD5, (Kind.MD5, MD5.lower(), None)),
    ("FileHash-SHA1", SHA1, (Kind.SHA1, SHA1.lower(), None)),
    ("FileHash-SHA256", SHA256, (Kind.SHA256, SHA256.lower(), None)),
    ("CIDR", "203.0.113.0/24", (Kind.CIDR, "203.0.113.0/24", None)),
    ("CIDR", "2001:db8:1::/48", (Kind.CIDR, "2001:db8:1::/48", None)),
    ("Mutex", "Global\\evil-mutex", (Kind.OTHER, "Global\\evil-mutex", "MutexObjectType")),
    ("FileHash-PEHASH", "ffb7a38174aab4744cc4a509e34800fee9be8e57", None),
    ("FileHash-IMPHASH", "f34d5f2d4577ed6d9ceec516c1f5a744", None),
    ("FilePath", "C:\\Windows\\evil.exe", None),
    ("CVE", "CVE-2017-0144", None),
    ("YARA", "rule evil { condition: true }", None),
    ("JA3", "72a589da586844d7f0818ce684948eea", None),
    ("osquery", "SELECT * FROM processes;", None),
    ("SSLCertFingerprint", "a" * 40, None),
    ("BitcoinAddress", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", None),
]


def ind(
    ident: int,
    value: str,
    kind: str,
    *,
    description: str = "",
    expiration: dt.datetime | None = None,
    is_active: bool = True,
) -> IndicatorDoc:
    return IndicatorDoc(
        id=ident,
        indicator=value,
        type=kind,
        title="",
        description=description,
        created=CREATED,
        expiration=expiration,
        is_active=is_active,
        role=None,
    )


def pulse(
    indicators: tuple[IndicatorDoc, ...],
    *,
    name: str = "Emotet wave",
    description: str = "Malspam with macro documents.",
    tlp: str = "green",
    modified: dt.datetime = CREATED,
    revision: int | None = None,
) -> PulseDoc:
    return PulseDoc(
        id=PULSE_ID,
        name=name,
        description=description,
        author_name="AlienVault",
        created=CREATED,
        modified=modified,
        tlp=tlp,
        references=("https://example.com/report",),
        tags=("emotet",),
        indicators=indicators,
        revision=revision,
    )


def read(data: bytes, stats: ReadStats | None = None) -> list[Observable]:
    return list(read_observables(io.BytesIO(data), stats=stats))


def elements(root: etree._Element, path: str, ns: dict[str, str] | None = None) -> list[Any]:
    """``root.xpath(path)`` for a path that selects elements (typed loosely: lxml's stubs do not
    know an element path from a text one)."""
    found = root.xpath(path, namespaces=ns or {})
    assert isinstance(found, list)
    assert all(isinstance(item, etree._Element) for item in found)
    return found


def every_type_pulse() -> PulseDoc:
    return pulse(tuple(ind(1000 + i, value, kind) for i, (kind, value, _) in enumerate(EVERY_TYPE)))


# --- what our reader sees ---------------------------------------------------------------------


def test_every_otx_type_reads_back_as_the_expected_observables() -> None:
    assert {kind for kind, _, _ in EVERY_TYPE} == OTX_TYPES  # the table covers every type
    doc = every_type_pulse()
    stats = ReadStats()
    observables = read(package_xml(doc, now=NOW), stats)
    got = [(o.kind, o.value, o.original_type) for o in observables]
    assert got == [expected for _, _, expected in EVERY_TYPE if expected is not None]
    assert stats.indicators == indicator_count(doc, NOW) == 13
    assert not stats.skipped
    for obs, (_, value, _) in zip(
        observables, [row for row in EVERY_TYPE if row[2] is not None], strict=True
    ):
        ctx = obs.context
        assert ctx["package_title"] == "Emotet wave"
        assert ctx["package_description"] == "Malspam with macro documents."
        assert ctx["package_short_description"] == URL
        assert ctx["indicator_title"] == f"{value} from {URL}"
        assert ctx["tlp"] == "green"
        assert ctx["produced"] == "2024-05-01T08:30:15.264000+00:00"
        assert ctx["package_id"] == package_id(doc)
        assert ctx["indicator_id"].startswith("alienvault-otx:indicator-")
        assert "indicator_type" not in ctx  # OTX sets no indicator:Type


def test_the_shape_is_otxs() -> None:
    """Element by element what design.md says OTX serves (python-stix-like prefixes, 1.1.1)."""
    data = package_xml(every_type_pulse(), now=NOW)
    assert not data.startswith(b"<?xml")
    root = etree.fromstring(data)
    ns = {k: v for k, v in root.nsmap.items() if k}
    assert ns["alienvault-otx"] == "https://otx.alienvault.com"
    expected_ns = {
        "stix": "http://stix.mitre.org/stix-1",
        "stixCommon": "http://stix.mitre.org/common-1",
        "indicator": "http://stix.mitre.org/Indicator-2",
        "cybox": "http://cybox.mitre.org/cybox-2",
        "cyboxCommon": "http://cybox.mitre.org/common-2",
        "AddressObj": "http://cybox.mitre.org/objects#AddressObject-2",
        "DomainNameObj": "http://cybox.mitre.org/objects#DomainNameObject-1",
        "URIObj": "http://cybox.mitre.org/objects#URIObject-2",
        "FileObj": "http://cybox.mitre.org/objects#FileObject-2",
        "MutexObj": "http://cybox.mitre.org/objects#MutexObject-2",
        "marking": "http://data-marking.mitre.org/Marking-1",
        "tlpMarking": "http://data-marking.mitre.org/extensions/MarkingStructure#TLP-1",
        "stixVocabs": "http://stix.mitre.org/default_vocabularies-1",
        "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    }
    assert expected_ns.items() <= ns.items()
    # Every namespace is declared on the root, so the element embeds as is.
    assert data.count(b"xmlns:") == len(ns)
    assert all(el.nsmap == root.nsmap for el in root.iter())
    assert root.tag == "{http://stix.mitre.org/stix-1}STIX_Package"
    assert root.get("version") == "1.1.1"
    assert root.get("id", "").startswith("alienvault-otx:Package-")
    xsi_type = "{http://www.w3.org/2001/XMLSchema-instance}type"

    def one(path: str) -> Any:
        found = elements(root, path, ns)
        assert len(found) == 1, path
        return found[0]

    header = one("stix:STIX_Header")
    assert [etree.QName(child).localname for child in header] == [
        "Title",
        "Package_Intent",
        "Description",
        "Short_Description",
        "Handling",
        "Information_Source",
    ]  # the schema's order
    intent = one("stix:STIX_Header/stix:Package_Intent")
    assert intent.text == "Indicators"
    assert intent.get(xsi_type) == "stixVocabs:PackageIntentVocab-1.0"
    source = "stix:STIX_Header/stix:Information_Source"
    assert one(f"{source}/stixCommon:Identity/stixCommon:Name").text == "Alienvault OTX"
    produced = one(f"{source}/stixCommon:Time/cyboxCommon:Produced_Time").text
    assert produced == "2024-05-01T08:30:15.264000+00:00"
    marking = one("stix:STIX_Header/stix:Handling/marking:Marking/marking:Marking_Structure")
    assert marking.get(xsi_type) == "tlpMarking:TLPMarkingStructureType"
    assert marking.get("color") == "GREEN"

    assert len(elements(root, "stix:Indicators/stix:Indicator", ns)) == 13
    titles = [t.text for t in elements(root, "//indicator:Observable/cybox:Title", ns)]
    assert titles == [f"{k} - {v}" for k, v, expected in EVERY_TYPE if expected is not None]
    assert not root.xpath("//indicator:Type", namespaces=ns)
    ids = [i.get("id") for i in root.iter()]
    ids = [i for i in ids if i]
    assert len(ids) == len(set(ids)) == 1 + 3 * 13  # package; indicator, observable, object each

    md5 = one("//FileObj:Hashes/cyboxCommon:Hash[cyboxCommon:Type='MD5']")
    hash_type = md5.find("cyboxCommon:Type", ns)
    assert hash_type is not None and hash_type.get("condition") == "Equals"
    value = md5.find("cyboxCommon:Simple_Hash_Value", ns)
    assert value is not None and value.get("condition") == "Equals" and value.text == MD5
    cidr = elements(root, "//AddressObj:Address_Value[@condition='InclusiveBetween']", ns)
    assert [(c.text, c.get("apply_condition")) for c in cidr] == [
        ("203.0.113.0,203.0.113.255", "ANY"),
        ("2001:db8:1::,2001:db8:1:ffff:ffff:ffff:ffff:ffff", "ANY"),
    ]
    assert [c.getparent().get("category") for c in cidr] == ["ipv4-addr", "ipv6-addr"]
    domain = one("//DomainNameObj:Value[.='Evil.Example.COM']")
    assert domain.get("condition") == "Equals" and domain.getparent().get("type") == "FQDN"
    uri = one("//URIObj:Value[.='https://evil.example.com/c']")
    assert uri.get("condition") == "Equals" and uri.getparent().get("type") == "URL"
    email = one("//AddressObj:Address_Value[.='Phish@Evil.Example.ORG']")
    assert email.getparent().get("category") == "e-mail"
    assert one("//MutexObj:Name").text == "Global\\evil-mutex"


def test_only_usable_indicators_are_written() -> None:
    later = NOW + dt.timedelta(days=30)
    doc = pulse(
        (
            ind(1, "198.51.100.1", "IPv4", expiration=later),  # unexpired
            ind(2, "198.51.100.2", "IPv4", expiration=NOW),  # expires now: expired
            ind(3, "198.51.100.3", "IPv4", expiration=NOW - dt.timedelta(seconds=1)),
            ind(4, "198.51.100.4", "IPv4", is_active=False),
            ind(5, "inactive.example.com", "domain", is_active=False, expiration=later),
            ind(6, "kept.example.com", "domain"),  # no expiration: never expires
            ind(7, "CVE-2017-0144", "CVE"),
            ind(8, "not a network", "CIDR"),
            ind(9, "  \x00 ", "domain"),  # nothing left once cleaned
            ind(10, "x", "NoSuchType"),
        )
    )
    stats: Counter[str] = Counter()
    data = package_xml(doc, now=NOW, stats=stats)
    assert [o.value for o in read(data)] == ["198.51.100.1", "kept.example.com"]
    assert indicator_count(doc, NOW) == 2
    assert stats == {
        "written": 2,
        "expired": 2,
        "inactive": 2,
        "type CVE not exported": 1,
        "CIDR that is not a network": 1,
        "empty value": 1,
        "unknown type": 1,
    }
    # A naive `now` is UTC; what is usable depends on it.
    assert indicator_count(doc, dt.datetime(2024, 1, 1)) == 4


def test_a_pulse_without_usable_indicators_is_still_a_package() -> None:
    doc = pulse((ind(1, "198.51.100.4", "IPv4", is_active=False),))
    data = package_xml(doc, now=NOW)
    assert b"<stix:Indicators" not in data  # IndicatorsType needs at least one Indicator
    stats = ReadStats()
    assert read(data, stats) == [] and stats.packages == 1
    assert indicator_count(doc, NOW) == 0


def test_xml_special_characters_round_trip() -> None:
    url = "http://evil.example.com/p?a=1&b=<2>&c=\"3\"&d='4']]>"
    doc = pulse(
        (ind(1, url, "URL", description="a & b <c> ]]> 'd' \"e\"\r\nline two"),),
        name="Tom & Jerry <script>alert(1)</script> ]]>",
        description="<b>bold</b> & co",
    )
    data = package_xml(doc, now=NOW)
    (obs,) = read(data)
    assert obs.kind is Kind.URL
    assert obs.value == url  # (the URL normaliser keeps the path and query byte-exact)
    assert obs.context["package_title"] == "Tom & Jerry <script>alert(1)</script> ]]>"
    assert obs.context["package_description"] == "<b>bold</b> & co"
    assert obs.context["indicator_title"] == f"{url} from {URL}"
    assert obs.context["description"] == "a & b <c> ]]> 'd' \"e\"\r\nline two"  # CR kept
    # The value itself, byte-exact in the document.
    root = etree.fromstring(data)
    assert [v.text for v in elements(root, "//*[local-name()='Value']")] == [url]


def test_characters_xml_cannot_hold_are_stripped() -> None:
    doc = pulse(
        (ind(1, "evil\x00.example\x1f.com", "domain", description="\x0bbad\ufffe\ud800 text"),),
        name="a\x01b\x08c\tname\x7f",
        description="\x0c",
    )
    data = package_xml(doc, now=NOW)
    (obs,) = read(data)
    assert obs.value == "evil.example.com"
    assert obs.context["package_title"] == "abc\tname\x7f"  # tab and DEL are legal XML
    assert "package_description" not in obs.context  # nothing left: omitted
    assert obs.context["description"] == "bad text"


def test_empty_descriptions_are_omitted() -> None:
    doc = pulse((ind(1, "198.51.100.1", "IPv4", description="  "),), description="")
    data = package_xml(doc, now=NOW)
    assert b"Description>" not in data.replace(b"Short_Description>", b"")


@pytest.mark.parametrize(
    ("tlp", "color"),
    [
        ("white", "WHITE"),
        ("GREEN", "GREEN"),
        ("amber", "AMBER"),
        ("red", "RED"),
        ("clear", "WHITE"),
    ],
)
def test_tlp_marking_is_upper_case(tlp: str, color: str) -> None:
    data = package_xml(pulse((), tlp=tlp), now=NOW)
    assert f'color="{color}"'.encode() in data
    (obs,) = read(package_xml(pulse((ind(1, "198.51.100.1", "IPv4"),), tlp=tlp), now=NOW))
    assert obs.context["tlp"] == color.lower()


@pytest.mark.parametrize("tlp", ["", "purple", "white\"/><x a='"])
def test_an_unknown_tlp_writes_no_marking(tlp: str) -> None:
    data = package_xml(pulse((), tlp=tlp), now=NOW)
    assert b"Handling" not in data
    etree.fromstring(data)


def test_output_is_deterministic() -> None:
    doc = every_type_pulse()
    first = package_xml(doc, now=NOW)
    assert package_xml(every_type_pulse(), now=NOW) == first
    # `now` only selects indicators; it changes nothing else.
    assert package_xml(doc, now=NOW + dt.timedelta(days=1)) == first


def test_ids_follow_revisions() -> None:
    """A new revision is a new package id; an IOC keeps its indicator id across revisions."""
    one = pulse((ind(1, "198.51.100.1", "IPv4"),))
    two = pulse((ind(1, "198.51.100.1", "IPv4"),), modified=CREATED + dt.timedelta(hours=1))
    assert package_id(one) != package_id(two)
    assert package_id(pulse((), revision=2)) != package_id(pulse((), revision=3))
    assert package_id(pulse((), revision=2)) == package_id(
        pulse((), revision=2, modified=NOW)
    )  # the revision, when known, names the version
    (a,) = read(package_xml(one, now=NOW))
    (b,) = read(package_xml(two, now=NOW))
    assert a.context["indicator_id"] == b.context["indicator_id"]
    assert a.context["package_id"] != b.context["package_id"]


def test_naive_datetimes_are_utc() -> None:
    naive = pulse((), modified=dt.datetime(2016, 11, 3, 20, 15, 43, 264000))
    plus_one = dt.timezone(dt.timedelta(hours=1))
    other_zone = pulse((), modified=dt.datetime(2016, 11, 3, 21, 15, 43, 264000, tzinfo=plus_one))
    assert package_xml(naive, now=NOW) == package_xml(other_zone, now=NOW)
    assert b"<cyboxCommon:Produced_Time>2016-11-03T20:15:43.264000+00:00<" in package_xml(
        naive, now=NOW
    )


def test_embeds_in_a_taxii_content_block() -> None:
    """The package element cut out as is, inside a TAXII 1.1 Poll_Response."""
    pkg = package_xml(every_type_pulse(), now=NOW)
    response = (
        b'<taxii_11:Poll_Response xmlns:taxii_11="http://taxii.mitre.org/messages/taxii_xml_'
        b'binding-1.1" message_id="1" in_response_to="1" collection_name="user_AlienVault" '
        b'more="false" result_part_number="1"><taxii_11:Content_Block>'
        b'<taxii_11:Content_Binding binding_id="urn:stix.mitre.org:xml:1.1.1"/>'
        b"<taxii_11:Content>" + pkg + b"</taxii_11:Content>"
        b"<taxii_11:Timestamp_Label>2024-05-01T08:30:15.264000+00:00</taxii_11:Timestamp_Label>"
        b"</taxii_11:Content_Block></taxii_11:Poll_Response>"
    )
    stats = ReadStats()
    assert len(read(response, stats)) == 13
    assert stats.content_blocks == 1 and stats.packages == 1


def test_exported_types_are_otx_types() -> None:
    assert EXPORTED_TYPES <= OTX_TYPES
    assert pulse_url(PULSE_ID) == URL


# --- python-stix (the peers venv) -------------------------------------------------------------

_PYTHON_STIX_SCRIPT = textwrap.dedent(
    """
    import io, json, sys
    from stix.core import STIXPackage
    pkg = STIXPackage.from_xml(io.BytesIO(sys.stdin.buffer.read()))
    out = {
        "id": pkg.id_,
        "version": pkg.version,
        "title": pkg.stix_header.title,
        "short_description": str(pkg.stix_header.short_description),
        "intents": [str(i) for i in pkg.stix_header.package_intents],
        "source": pkg.stix_header.information_source.identity.name,
        "tlp": [m.color for h in pkg.stix_header.handling for m in h.marking_structures],
        "indicators": [],
    }
    for ind in pkg.indicators:
        obs = ind.observable
        props = obs.object_.properties
        d = props.to_dict()
        out["indicators"].append({
            "title": ind.title,
            "observable_title": obs.title,
            "xsi_type": d.get("xsi:type"),
            "props": d,
        })
    json.dump(out, sys.stdout)
    """
)


def test_python_stix_reads_the_package(peers_venv: Any) -> None:
    doc = every_type_pulse()
    data = package_xml(doc, now=NOW)
    proc = peers_venv.run(["-c", _PYTHON_STIX_SCRIPT], input=data.decode(), check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["id"] == package_id(doc)
    assert out["version"] == "1.1.1"
    assert out["title"] == "Emotet wave"
    assert out["short_description"] == URL
    assert out["intents"] == ["Indicators"]
    assert out["source"] == "Alienvault OTX"
    assert out["tlp"] == ["GREEN"]
    inds = out["indicators"]
    assert len(inds) == indicator_count(doc, NOW) == 13
    assert inds[0]["title"] == f"198.51.100.7 from {URL}"
    assert inds[0]["observable_title"] == "IPv4 - 198.51.100.7"
    ip = inds[0]["props"]
    assert ip["xsi:type"] == "AddressObjectType" and ip["category"] == "ipv4-addr"
    assert ip["address_value"] == {"value": "198.51.100.7", "condition": "Equals"}
    sha256 = inds[9]["props"]
    assert sha256["hashes"][0]["simple_hash_value"]["value"] == SHA256
    # (python-stix keeps apply_condition only for ##comma## lists; OTX's plain comma is one value)
    cidr = inds[10]["props"]["address_value"]
    assert cidr == {"value": "203.0.113.0,203.0.113.255", "condition": "InclusiveBetween"}
    assert inds[12]["props"]["name"] == {"value": "Global\\evil-mutex", "condition": "Equals"}


# --- properties (hypothesis) ------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

#: Any code point, surrogates and C0/C1 controls included.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@st.composite
def indicators(draw: st.DrawFn, ident: int) -> IndicatorDoc:
    kind = draw(st.sampled_from(sorted(OTX_TYPES)))
    if kind == "CIDR":
        value = str(draw(st.ip_addresses())) + "/" + draw(st.sampled_from(["8", "24", "64", "x"]))
    else:
        value = draw(any_text)
    expiration = draw(
        st.none() | st.datetimes(timezones=st.just(UTC), min_value=dt.datetime(2020, 1, 1))
    )
    return IndicatorDoc(
        id=ident,
        indicator=value,
        type=kind,
        title=draw(any_text),
        description=draw(any_text),
        created=draw(st.datetimes(timezones=st.just(UTC))),
        expiration=expiration,
        is_active=draw(st.booleans()),
        role=None,
    )


@st.composite
def pulses(draw: st.DrawFn) -> PulseDoc:
    count = draw(st.integers(min_value=0, max_value=8))
    return PulseDoc(
        id=draw(st.from_regex(r"[0-9a-f]{24}", fullmatch=True)),
        name=draw(any_text),
        description=draw(any_text),
        author_name=draw(any_text),
        created=draw(st.datetimes(timezones=st.just(UTC))),
        modified=draw(st.datetimes(timezones=st.just(UTC))),
        tlp=draw(st.sampled_from(["white", "green", "amber", "red", "", "bogus"])),
        indicators=tuple(draw(indicators(i)) for i in range(count)),
    )


@PROPERTY
@given(doc=pulses())
def test_any_pulse_is_well_formed_and_reads_back(doc: PulseDoc) -> None:
    data = package_xml(doc, now=NOW)
    root = etree.fromstring(data)  # well-formed, with every namespace bound
    assert root.tag == "{http://stix.mitre.org/stix-1}STIX_Package"
    stats = ReadStats()
    list(read_observables(io.BytesIO(data), stats=stats))
    assert stats.packages == 1
    assert stats.indicators == indicator_count(doc, NOW)
    assert package_xml(doc, now=NOW) == data
