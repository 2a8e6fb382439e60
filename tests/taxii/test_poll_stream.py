"""Streaming Poll_Response: the chunked writer, the incremental reader, and flat memory."""

from __future__ import annotations

import dataclasses
import io
import sys
import tracemalloc
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from taxii_helpers import DATA, V10, canonical, examples_10, examples_11

from feedgate.taxii import messages as tm
from feedgate.xml import HostileXMLError, XMLParseError


class ChunkStream(io.RawIOBase):
    """A readable byte stream over an iterator of chunks, pulled only as the reader asks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._buffer))
        buffer[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def stream(data: bytes | Iterable[bytes]) -> io.BufferedReader:
    chunks = [data] if isinstance(data, bytes) else data
    return io.BufferedReader(ChunkStream(chunks))


def poll_responses() -> list[tm.PollResponse]:
    found = [m for m in (*examples_11(), *examples_10()) if isinstance(m, tm.PollResponse)]
    return [m for m in found if m.content_blocks]


def without_blocks(msg: tm.PollResponse) -> tm.PollResponse:
    return dataclasses.replace(msg, content_blocks=())


def open_reader(data: bytes | Iterable[bytes]) -> tm.PollResponseReader:
    reader = tm.iter_poll_response(stream(data))
    assert isinstance(reader, tm.PollResponseReader)
    return reader


# --- writer -----------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", poll_responses(), ids=lambda m: m.version[-3:])
def test_streamed_chunks_join_to_the_whole_message(msg: tm.PollResponse) -> None:
    chunks = list(tm.iter_poll_response_xml(without_blocks(msg), msg.content_blocks))
    assert len(chunks) == len(msg.content_blocks) + 2
    assert b"".join(chunks) == msg.to_xml()
    assert chunks[-1] == b"</" + chunks[0][1 : chunks[0].index(b" ")] + b">"
    for chunk in chunks[1:-1]:
        assert chunk.startswith(b"<taxii") and b":Content_Block>" in chunk
        assert b"xmlns:taxii" not in chunk  # the envelope's prefix is reused, not redeclared


def test_blocks_are_pulled_one_at_a_time() -> None:
    pulled: list[int] = []

    def blocks() -> Iterator[tm.ContentBlock]:
        for i in range(3):
            pulled.append(i)
            yield tm.ContentBlock(content_binding=tm.ContentBinding(binding_id="b"), content=f"{i}")

    header = tm.PollResponse(message_id="1", in_response_to="2", collection_name="c")
    chunks = tm.iter_poll_response_xml(header, blocks())
    next(chunks)
    assert pulled == []
    next(chunks)
    assert pulled == [0]


def test_the_stream_writer_wants_the_blocks_separately() -> None:
    msg = poll_responses()[0]
    with pytest.raises(tm.TAXIIMessageError, match="not in the header"):
        list(tm.iter_poll_response_xml(msg, ()))


def test_the_stream_writer_checks_the_version_rules() -> None:
    header = tm.PollResponse(message_id="1", in_response_to="2", collection_name="c", version=V10)
    with pytest.raises(tm.TAXIIMessageError, match="inclusive_end_timestamp"):
        list(tm.iter_poll_response_xml(header, ()))
    bad_block = tm.ContentBlock(
        content_binding=tm.ContentBinding(binding_id="b"), content="x", message="1.1 only"
    )
    ok_header = dataclasses.replace(
        header, inclusive_end_timestamp=datetime(2020, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(tm.TAXIIMessageError, match="Content_Block/Message"):
        list(tm.iter_poll_response_xml(ok_header, [bad_block]))


# --- reader -----------------------------------------------------------------------------------


@pytest.mark.parametrize("msg", poll_responses(), ids=lambda m: m.version[-3:])
def test_reader_gives_the_header_first_then_the_blocks(msg: tm.PollResponse) -> None:
    reader = open_reader(msg.to_xml())
    assert reader.version == msg.version
    assert reader.header == without_blocks(msg)
    blocks = tuple(reader)
    assert canonical(blocks) == canonical(msg.content_blocks)
    assert reader.blocks_read == len(msg.content_blocks)
    assert reader.header == without_blocks(msg)
    assert list(reader) == []  # one-shot, like a file


def test_reader_matches_the_tree_parser_on_a_real_response() -> None:
    data = (DATA / "taxiiproject/file-hash-rep-poll-response.xml").read_bytes()
    whole = tm.parse(data)
    assert isinstance(whole, tm.PollResponse)
    reader = open_reader([data[i : i + 100] for i in range(0, len(data), 100)])
    assert list(reader) == list(whole.content_blocks)
    assert reader.header == without_blocks(whole)


def test_reader_without_blocks() -> None:
    data = (DATA / "java-taxii/schematron/1.1/poll-responses/record-count6-valid.xml").read_bytes()
    reader = open_reader(data)
    assert reader.header.record_count == tm.RecordCount(count=0)
    assert reader.header.message is not None
    assert list(reader) == []


def test_header_elements_after_the_blocks_are_picked_up_at_the_end() -> None:
    ns = tm.NS_TAXII_XML_11
    data = (
        f'<Poll_Response xmlns="{ns}" message_id="1" in_response_to="2" collection_name="c">'
        '<Content_Block><Content_Binding binding_id="b"/><Content>x</Content></Content_Block>'
        "<Message>late</Message></Poll_Response>"
    ).encode()
    reader = open_reader(data)
    assert reader.header.message is None
    assert [b.content for b in reader] == [b"x"]
    assert reader.header.message == "late"


def test_a_status_message_on_the_poll_stream_is_returned_as_such() -> None:
    data = (DATA / "java-taxii/schematron/1.1/status-messages/Pending-valid.xml").read_bytes()
    status = tm.iter_poll_response(stream(data))
    assert isinstance(status, tm.StatusMessage)
    assert status.status_type == tm.ST_PENDING and status.estimated_wait == 5
    unauthorized = tm.StatusMessage(
        message_id="1", in_response_to="2", status_type=tm.ST_UNAUTHORIZED, message="bad key"
    )
    assert tm.iter_poll_response(stream(unauthorized.to_xml())) == unauthorized


def test_another_message_on_the_poll_stream_is_an_error() -> None:
    data = (DATA / "libtaxii/Discovery_Response.xml").read_bytes()
    with pytest.raises(tm.TAXIIMessageError, match="expected a Poll_Response or a Status_Message"):
        tm.iter_poll_response(stream(data))
    with pytest.raises(tm.TAXIIMessageError, match="not a TAXII"):
        tm.iter_poll_response(stream(b"<html><body>502 Bad Gateway</body></html>"))


def test_broken_and_hostile_streams_raise_xml_errors() -> None:
    msg = poll_responses()[0]
    truncated = msg.to_xml()[:-40]
    reader = open_reader(truncated)
    with pytest.raises(XMLParseError):
        list(reader)
    with pytest.raises(XMLParseError):
        list(open_reader(msg.to_xml() + b"<trailing/>"))
    with pytest.raises(HostileXMLError):
        tm.iter_poll_response(
            stream((DATA / "java-taxii/python_output/1.1/Doctype_Local-invalid.xml").read_bytes())
        )
    with pytest.raises(XMLParseError):
        tm.iter_poll_response(stream(b""))


def test_a_bad_block_is_reported_with_its_place() -> None:
    ns = tm.NS_TAXII_XML_11
    data = (
        f'<Poll_Response xmlns="{ns}" message_id="1" in_response_to="2" collection_name="c">'
        "<Content_Block><Content>x</Content></Content_Block></Poll_Response>"
    ).encode()
    with pytest.raises(tm.TAXIIMessageError, match="Content_Block: missing required element"):
        list(open_reader(data))


def test_a_1_0_response_without_its_end_timestamp_is_reported_at_the_end() -> None:
    ns = tm.NS_TAXII_XML_10
    data = f'<Poll_Response xmlns="{ns}" message_id="1" in_response_to="2" feed_name="f"/>'.encode()
    reader = open_reader(data)
    with pytest.raises(tm.TAXIIMessageError, match="Inclusive_End_Timestamp"):
        list(reader)


# --- memory -----------------------------------------------------------------------------------

BLOCKS = 20_000
FILLER = b"x" * 2000


def generated_blocks() -> Iterator[tm.ContentBlock]:
    for i in range(BLOCKS):
        package = (
            b'<stix:STIX_Package xmlns:stix="http://stix.mitre.org/stix-1" id="example:Package-%d">'
            b"<stix:STIX_Header><stix:Title>%s</stix:Title></stix:STIX_Header>"
            b"</stix:STIX_Package>" % (i, FILLER)
        )
        yield tm.ContentBlock(
            content_binding=tm.ContentBinding(binding_id=tm.CB_STIX_XML_111), content=package
        )


def resident_megabytes() -> float | None:
    statm = Path("/proc/self/statm")
    if not sys.platform.startswith("linux") or not statm.exists():
        return None
    return int(statm.read_text().split()[1]) * 4096 / 1e6


def test_a_20000_block_response_streams_through_in_flat_memory() -> None:
    header = tm.PollResponse(
        message_id="1",
        in_response_to="2",
        collection_name="c",
        record_count=tm.RecordCount(count=BLOCKS),
    )
    rss_before = resident_megabytes()
    tracemalloc.start()
    try:
        # Writer and reader joined by a pipe of chunks: ~45 MB of XML that never exists whole.
        reader = open_reader(tm.iter_poll_response_xml(header, generated_blocks()))
        assert reader.header == header
        count = 0
        for block in reader:
            assert block.content.endswith(b"</stix:STIX_Package>")
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_after = resident_megabytes()
    assert count == BLOCKS == reader.blocks_read
    assert peak < 20e6, f"Python allocations peaked at {peak / 1e6:.1f} MB"
    # tracemalloc does not see libxml2's own allocations: a tree kept whole would add ~70 MB.
    if rss_before is not None and rss_after is not None:
        assert rss_after - rss_before < 30, f"resident memory grew by {rss_after - rss_before} MB"
