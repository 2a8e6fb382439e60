"""`read_data` reads a DATA block as RFC 5321 says, however the bytes arrive.

The reference is the RFC's own rule, line by line: a line holding a single dot ends the data,
and a line beginning with a dot loses that dot. Hypothesis draws messages rich in dots and line
ends, splits the bytes at random, and runs them through a small stream buffer so every path
(a read that stops mid-line, a mark split across reads, long lines) is taken.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from feedgate.mail.smtp_data import DataBlock, read_data

PIPELINED = b"QUIT\r\n"


def reference(wire: bytes) -> tuple[bytes, int]:
    """The message and its wire size, the RFC's way (``wire`` holds the final dot)."""
    lines, size = [], 0
    for line in wire.split(b"\r\n")[:-1]:
        if line == b".":
            return b"".join(lines), size
        size += len(line) + 2
        lines.append((line[1:] if line.startswith(b".") else line) + b"\r\n")
    raise AssertionError("no final dot")


def stuffed(message_lines: list[bytes]) -> bytes:
    """What a client sends for these lines: each beginning dot doubled, then the final dot."""
    return b"".join((b"." + x if x.startswith(b".") else x) + b"\r\n" for x in message_lines) + (
        b".\r\n"
    )


def run(chunks: list[bytes], limit: int | None, buffer: int) -> tuple[DataBlock, bytes]:
    async def go() -> tuple[DataBlock, bytes]:
        reader = asyncio.StreamReader(limit=buffer)
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        block = await read_data(reader, limit)
        return block, await reader.read()

    return asyncio.run(go())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _no_crlf(parts: list[bytes]) -> bytes:
    """The parts as one line's text: bare CRs and LFs stay, a CRLF (a line end) may not."""
    text = b"".join(parts)
    while b"\r\n" in text:
        text = text.replace(b"\r\n", b"\r")
    return text


line = st.lists(st.sampled_from([b".", b"x", b"\r", b"\n", b"..", b"a" * 40]), max_size=6).map(
    _no_crlf
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(line, max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6),
    buffer=st.sampled_from([8, 16, 64, 2**16]),
)
def test_it_reads_what_the_rfc_says_however_the_bytes_are_split(
    lines: list[bytes], cuts: list[int], buffer: int
) -> None:
    wire = stuffed(lines)
    block, left = run(split(wire + PIPELINED, cuts), None, buffer)
    assert (block.content, block.size) == reference(wire)
    assert block.content == b"".join(x + b"\r\n" for x in lines)
    assert left == PIPELINED  # the next command is still there for the session


@given(lines=st.lists(line, min_size=1, max_size=12), limit=st.integers(min_value=0, max_value=80))
def test_over_the_limit_it_reads_to_the_end_and_keeps_nothing(
    lines: list[bytes], limit: int
) -> None:
    wire = stuffed(lines)
    content, size = reference(wire)
    block, left = run([wire + PIPELINED], limit, 16)
    assert block.size == size
    assert block.content == (content if size <= limit else None)
    assert left == PIPELINED


def test_an_empty_message_and_a_message_of_dots() -> None:
    assert run([b".\r\n"], None, 16)[0] == DataBlock(b"", 0)
    dots = [b".", b"..", b".x", b"."]
    assert run([stuffed(dots)], None, 16)[0].content == b".\r\n..\r\n.x\r\n.\r\n"


def test_a_line_far_longer_than_the_buffer_is_kept_whole() -> None:
    long = b"y" * 300_000
    block, _ = run([stuffed([long, b"." + long, b"end"])], None, 2**16)
    assert block.content == long + b"\r\n." + long + b"\r\nend\r\n"


def test_a_stream_that_ends_before_the_final_dot_is_no_message() -> None:
    import pytest

    for cut in (b"", b"abc\r\n", b"abc\r\n.", b".x\r\n"):
        with pytest.raises(asyncio.IncompleteReadError):
            run([cut], None, 16)
