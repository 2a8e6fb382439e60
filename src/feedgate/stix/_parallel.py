"""Read a large STIX 1.x input on several cores.

A poll response is a long run of independent units (TAXII Content_Blocks, or whole STIX_Package
documents when the input is what ``taxii-poll`` prints). This module cuts the byte stream after
the end tag of a unit, once a chunk is big enough, and hands the chunks to worker processes that
run the ordinary reader (:func:`._stix1.read_stix1`) on them. Results come back in input order,
with at most a few chunks in flight, so memory stays flat.

A chunk of Content_Blocks is not a document on its own: the namespace prefixes it uses are
declared on the Poll_Response root. The worker wraps each chunk in an element that repeats the
root's ``xmlns`` declarations, which makes it well-formed without rewriting a byte of content.
"""

from __future__ import annotations

import io
import multiprocessing
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO, Final

from feedgate import xml
from feedgate.observables import Observable

from ._errors import StixReadError
from ._stats import ReadStats
from ._stix1 import read_stix1

#: Target chunk size; big enough to amortise a round trip, small enough to balance the cores.
CHUNK_BYTES: Final = 2 * 1024**2
#: The end tag after which a cut is safe, by the kind of input.
_UNIT_END: Final = {
    "blocks": re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?Content_Block\s*>"),
    "packages": re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?STIX_Package\s*>"),
}
_START_TAG_RE: Final = re.compile(
    rb"<([A-Za-z_][\w.:-]*)((?:\s+[^\s=>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*>"
)
_XMLNS_RE: Final = re.compile(rb"\sxmlns(?::[\w.-]+)?\s*=\s*(?:\"[^\"]*\"|'[^']*')")


def plan(head: bytes) -> tuple[str, int, bytes] | None:
    """How to split an input that starts with ``head``: (mode, body offset, xmlns declarations).

    Returns None when the input is not worth or not safe to split (a single package, a CybOX
    document, an unusual prolog); the caller then reads it in one process.
    """
    start = xml._root_start(head)
    if start < 0 or start >= len(head):
        return None
    m = _START_TAG_RE.match(head, start)
    if m is None:
        return None
    name = m.group(1).rpartition(b":")[2]
    if name in (b"Poll_Response", b"Inbox_Message"):
        return "blocks", m.end(), b"".join(_XMLNS_RE.findall(m.group(2)))
    if name == b"STIX_Package":
        return "packages", 0, b""
    return None


def _read_chunk(mode: str, xmlns: bytes, data: bytes) -> tuple[list[Observable], ReadStats]:
    """Worker: read one chunk with the ordinary reader."""
    stats = ReadStats()
    if mode == "blocks":
        # Content_Blocks cut from a Poll_Response: one element around them makes a document.
        data = b"<feedgate-chunk" + xmlns + b">" + data + b"</feedgate-chunk>"
        found = read_stix1(io.BytesIO(data), stats, concatenated=False)
    else:
        found = read_stix1(io.BytesIO(data), stats)
    return list(found), stats


def _chunks(
    stream: IO[bytes] | io.RawIOBase, mode: str, body_at: int, max_bytes: int
) -> Iterator[bytes]:
    """Cut the stream after unit end tags into chunks of about CHUNK_BYTES.

    In ``blocks`` mode the root start tag (and prolog) is dropped from the first chunk and
    everything after the last block (the root's end tag) from the last one.
    """
    unit_end = _UNIT_END[mode]
    skip = body_at if mode == "blocks" else 0
    buffer = b""
    total = 0
    while True:
        data = stream.read(CHUNK_BYTES) or b""
        total += len(data)
        if total > max_bytes:
            raise xml.XMLLimitError(f"refused: the input exceeds the {max_bytes}-byte limit")
        buffer = buffer + data if buffer else data
        if skip:
            dropped = min(skip, len(buffer))
            buffer, skip = buffer[dropped:], skip - dropped
        if data and len(buffer) < CHUNK_BYTES:
            continue
        cut = _last_end(unit_end, buffer)
        if not data:  # end of input
            if mode == "blocks":
                buffer = buffer[:cut] if cut > 0 else b""
            if buffer.strip():
                yield buffer
            return
        if cut > 0:
            yield buffer[:cut]
            buffer = buffer[cut:]


def _last_end(pattern: re.Pattern[bytes], buffer: bytes) -> int:
    """Offset just after the last unit end tag in ``buffer``, or -1 if there is none."""
    window = 64 * 1024
    while True:
        start = max(0, len(buffer) - window)
        end = -1
        for m in pattern.finditer(buffer, start):
            end = m.end()
        if end >= 0 or start == 0:
            return end
        window *= 4


def read_parallel(
    stream: IO[bytes] | io.RawIOBase,
    stats: ReadStats,
    mode: str,
    body_at: int,
    xmlns: bytes,
    workers: int,
    max_bytes: int,
) -> Iterator[Observable]:
    """Observables of ``stream`` read by ``workers`` processes, in input order."""
    context = multiprocessing.get_context("fork")
    pending: deque[Future[tuple[list[Observable], ReadStats]]] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        try:
            for chunk in _chunks(stream, mode, body_at, max_bytes):
                pending.append(pool.submit(_read_chunk, mode, xmlns, chunk))
                if len(pending) > workers * 2:
                    yield from _collect(pending.popleft(), stats)
            while pending:
                yield from _collect(pending.popleft(), stats)
        finally:
            for future in pending:
                future.cancel()


def _collect(
    future: Future[tuple[list[Observable], ReadStats]], stats: ReadStats
) -> Iterator[Observable]:
    try:
        observables, chunk_stats = future.result()
    except (xml.XMLParseError, StixReadError):
        raise
    stats.merge(chunk_stats)
    yield from observables
