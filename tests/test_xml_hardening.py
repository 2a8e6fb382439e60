"""feedgate.xml refuses hostile documents clearly and keeps memory flat on large ones."""

from __future__ import annotations

import io
import tracemalloc
from collections.abc import Iterator

import pytest

from feedgate import xml
from feedgate.stix import StixReadError
from stix_helpers import DATA, read

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1">&lol3;</stix:STIX_Package>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1">&xxe;</stix:STIX_Package>"""

PLAIN_DOCTYPE = b"""<?xml version="1.0"?>
<!DOCTYPE STIX_Package SYSTEM "http://127.0.0.1:1/stix.dtd">
<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1"/>"""


@pytest.mark.parametrize(
    ("doc", "cause"),
    [(BILLION_LAUGHS, "ENTITY"), (EXTERNAL_ENTITY, "ENTITY"), (PLAIN_DOCTYPE, "DOCTYPE")],
)
def test_hostile_documents_are_refused_with_the_cause(doc: bytes, cause: str) -> None:
    with pytest.raises(xml.HostileXMLError, match=cause):
        read(doc)
    with pytest.raises(xml.HostileXMLError, match=cause):
        xml.parse_bytes(doc)


def test_doctype_in_a_later_concatenated_document_is_refused() -> None:
    first = b'<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1"/>\n'
    with pytest.raises(xml.HostileXMLError):
        read(first + PLAIN_DOCTYPE)


@pytest.mark.parametrize("name", ["Doctype_Local-invalid.xml", "Doctype_Remote-invalid.xml"])
def test_java_taxii_doctype_cases(name: str) -> None:
    data = (DATA / "taxii1" / "java-taxii" / "python_output" / "1.1" / name).read_bytes()
    with pytest.raises(xml.HostileXMLError):
        xml.parse_bytes(data)


def test_depth_limit() -> None:
    deep = b"<a>" * (xml.MAX_DEPTH + 50) + b"</a>" * (xml.MAX_DEPTH + 50)
    with pytest.raises(xml.XMLLimitError, match="deeper"):
        xml.parse_bytes(deep)
    with pytest.raises(xml.XMLParseError):
        list(xml.iterparse(io.BytesIO(deep)))


def test_size_limit() -> None:
    doc = b"<a>" + b"x" * 10_000 + b"</a>"
    with pytest.raises(xml.XMLLimitError, match="limit"):
        list(xml.iterparse(io.BytesIO(doc), max_bytes=1000))
    with pytest.raises(xml.XMLLimitError):
        xml.parse_bytes(doc, max_bytes=1000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"   \n  ", "whitespace"),
        (b"<html><body>502 Bad Gateway</body></html>", "root element is <html>"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "starts with"),
        (b"hello world", "starts with"),
    ],
)
def test_other_formats_get_one_clear_line(data: bytes, message: str) -> None:
    with pytest.raises(StixReadError, match=message):
        read(data)


def test_truncated_xml_is_a_parse_error_naming_the_problem() -> None:
    doc = (DATA / "stix1" / "stixschemas-1.1.1_STIX_IP_Watchlist.xml").read_bytes()
    with pytest.raises(xml.XMLParseError, match="not well-formed"):
        read(doc[: len(doc) // 2])


def test_no_network_access_for_external_dtd() -> None:
    # If the parser fetched the DTD it would hang on 127.0.0.1:1 or fail differently.
    with pytest.raises(xml.HostileXMLError):
        read(PLAIN_DOCTYPE)


class _Stream(io.RawIOBase):
    """A large poll-response-like stream generated on the fly (never held in memory)."""

    def __init__(self, blocks: int) -> None:
        self._parts: Iterator[bytes] = self._generate(blocks)
        self._buffer = b""

    @staticmethod
    def _generate(blocks: int) -> Iterator[bytes]:
        yield (
            b'<t:Poll_Response xmlns:t="http://taxii.mitre.org/messages/taxii_xml_binding-1.1"'
            b' message_id="1" in_response_to="1" collection_name="c" more="false">'
        )
        for i in range(blocks):
            yield (
                b"<t:Content_Block><t:Content_Binding binding_id='urn:stix.mitre.org:xml:1.1.1'/>"
                b"<t:Content><stix:STIX_Package xmlns:stix='http://stix.mitre.org/stix-1' "
                b"xmlns:indicator='http://stix.mitre.org/Indicator-2' "
                b"xmlns:cybox='http://cybox.mitre.org/cybox-2' "
                b"xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' "
                b"xmlns:A='http://cybox.mitre.org/objects#AddressObject-2'><stix:Indicators>"
                b"<stix:Indicator id='i%d'><indicator:Observable><cybox:Object>"
                b"<cybox:Properties xsi:type='A:AddressObjectType' category='ipv4-addr'>"
                b"<A:Address_Value>10.%d.%d.%d</A:Address_Value></cybox:Properties>"
                b"</cybox:Object></indicator:Observable></stix:Indicator></stix:Indicators>"
                b"<!-- %s --></stix:STIX_Package></t:Content></t:Content_Block>"
                % (i, (i >> 16) & 255, (i >> 8) & 255, i & 255, b"x" * 400)
            )
        yield b"</t:Poll_Response>"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while len(self._buffer) < len(buffer):
            part = next(self._parts, None)
            if part is None:
                break
            self._buffer += part
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def test_memory_stays_flat_on_a_large_stream() -> None:
    from feedgate.stix import ReadStats, read_observables

    blocks = 60_000  # about 60 MB of XML
    tracemalloc.start()
    stats = ReadStats()
    count = 0
    for _ in read_observables(io.BufferedReader(_Stream(blocks)), stats=stats):
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == blocks
    # lxml's own tree memory is not traced; what we hold in Python must not grow with input.
    assert peak < 16 * 1024**2, f"peak {peak / 1e6:.1f} MB"


def test_one_unit_or_junk_run_over_the_unit_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from feedgate.stix import _stix1

    monkeypatch.setattr(_stix1, "MAX_UNIT_BYTES", 1024**2)
    junk = (
        b'<t:Poll_Response xmlns:t="http://taxii.mitre.org/messages/taxii_xml_binding-1.1">'
        + b"<x/>" * (2 * 1024**2 // 4)
        + b"</t:Poll_Response>"
    )
    with pytest.raises(xml.XMLLimitError, match="without a complete element"):
        read(junk)


@pytest.mark.parametrize(
    ("doc", "cause"),
    [(BILLION_LAUGHS, "ENTITY"), (EXTERNAL_ENTITY, "ENTITY"), (PLAIN_DOCTYPE, "DOCTYPE")],
)
def test_walking_a_whole_document_refuses_what_streaming_refuses(doc: bytes, cause: str) -> None:
    with pytest.raises(xml.HostileXMLError, match=cause):
        list(xml.walk(doc))


def test_walk_gives_the_events_iterparse_gives() -> None:
    doc = (
        b'<r xmlns:a="urn:a"><a:x id="1"><a:y/></a:x><!-- c --><a:x id="2"/>'
        b"<?pi x?><a:y><a:x id='3'/></a:y></r>"
    )
    tags = ("{urn:a}x", "{urn:a}y")
    streamed = [(e, el.tag, el.get("id")) for e, el in xml.iterparse(io.BytesIO(doc), tag=tags)]
    walked = [(e, el.tag, el.get("id")) for e, el in xml.walk(doc, tag=tags)]
    assert walked == streamed and len(walked) == 5
    with pytest.raises(xml.XMLLimitError):
        list(xml.walk(doc, max_bytes=10))
    with pytest.raises(xml.XMLParseError, match="empty"):
        list(xml.walk(b"  "))
    with pytest.raises(xml.XMLParseError):
        list(xml.walk(doc[:-3]))  # truncated
