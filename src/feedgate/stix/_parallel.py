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
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import IO, Any, Final, NamedTuple

from feedgate import xml
from feedgate.observables import Kind, Observable

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


class _Columns(NamedTuple):
    """A chunk's observables as columns: far cheaper to pickle than one tuple per observable.

    Observables of one indicator share one context dict; ``contexts`` holds each once.
    """

    kinds: list[Kind]
    values: list[str]
    original_types: list[str | None]
    context_ids: list[int]
    contexts: list[Mapping[str, Any]]

    def observables(self) -> Iterator[Observable]:
        contexts = self.contexts
        for kind, value, original, ctx in zip(
            self.kinds, self.values, self.original_types, self.context_ids, strict=True
        ):
            yield Observable(kind, value, original, contexts[ctx])


def _read_chunk(mode: str, xmlns: bytes, data: bytes) -> tuple[_Columns, ReadStats]:
    """Worker: read one chunk with the ordinary reader."""
    stats = ReadStats()
    if mode == "blocks":
        # Content_Blocks cut from a Poll_Response: one element around them makes a document.
        data = b"<feedgate-chunk" + xmlns + b">" + data + b"</feedgate-chunk>"
        found = read_stix1(io.BytesIO(data), stats, concatenated=False)
    else:
        found = read_stix1(io.BytesIO(data), stats)
    columns = _Columns([], [], [], [], [])
    index: dict[int, int] = {}
    for obs in found:
        columns.kinds.append(obs.kind)
        columns.values.append(obs.value)
        columns.original_types.append(obs.original_type)
        ctx_id = index.get(id(obs.context))
        if ctx_id is None:
            ctx_id = index[id(obs.context)] = len(columns.contexts)
            columns.contexts.append(obs.context)
        columns.context_ids.append(ctx_id)
    return columns, stats


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


def _read_file_range(
    path: str, mode: str, xmlns: bytes, start: int, end: int
) -> tuple[_Columns, ReadStats]:
    """Worker: read bytes [start, end) of a file; the parent never touches the bulk of it."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    return _read_chunk(mode, xmlns, data)


_PROBE: Final = 64 * 1024


def _cut_after(f: IO[bytes], offset: int, floor: int, pattern: re.Pattern[bytes]) -> int | None:
    """End of the first unit end tag that ends after ``offset`` (None past the last one).

    The search starts a little before ``offset`` so a tag straddling it is found whole.
    """
    pos = max(floor, offset - 64)
    while True:
        f.seek(pos)
        data = f.read(_PROBE)
        if not data:
            return None
        for m in pattern.finditer(data):
            if pos + m.end() > offset:
                return pos + m.end()
        if len(data) < _PROBE:
            return None
        pos += len(data) - 64


def _last_cut(f: IO[bytes], size: int, floor: int, pattern: re.Pattern[bytes]) -> int:
    """End of the last unit end tag in the file (the root's end tag follows it)."""
    window = _PROBE
    while True:
        start = max(floor, size - window)
        f.seek(start)
        last = _last_end(pattern, f.read(size - start))
        if last >= 0:
            return start + last
        if start == floor:
            return floor
        window *= 4


def _file_ranges(path: str, mode: str, body_at: int, max_bytes: int) -> Iterator[tuple[int, int]]:
    """Byte ranges of about CHUNK_BYTES that start and end on unit boundaries."""
    pattern = _UNIT_END[mode]
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        if size > max_bytes:
            raise xml.XMLLimitError(f"refused: the input exceeds the {max_bytes}-byte limit")
        start = body_at if mode == "blocks" else 0
        final = _last_cut(f, size, start, pattern) if mode == "blocks" else size
        while start < final:
            cut = _cut_after(f, start + CHUNK_BYTES, start, pattern)
            end = final if cut is None or cut >= final else cut
            yield start, end
            start = end


def read_parallel(
    stream: IO[bytes] | io.RawIOBase,
    stats: ReadStats,
    mode: str,
    body_at: int,
    xmlns: bytes,
    workers: int,
    max_bytes: int,
    path: str | None = None,
) -> Iterator[Observable]:
    """Observables of ``stream`` read by ``workers`` processes, in input order.

    Given the ``path`` of a regular file, workers read their own ranges of it and the parent
    only looks for cut points; otherwise the parent reads the stream and sends the chunks.
    """
    context = multiprocessing.get_context("fork")
    pending: deque[Future[tuple[_Columns, ReadStats]]] = deque()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        tasks: Iterator[Future[tuple[_Columns, ReadStats]]]
        if path is not None:
            tasks = (
                pool.submit(_read_file_range, path, mode, xmlns, start, end)
                for start, end in _file_ranges(path, mode, body_at, max_bytes)
            )
        else:
            tasks = (
                pool.submit(_read_chunk, mode, xmlns, chunk)
                for chunk in _chunks(stream, mode, body_at, max_bytes)
            )
        try:
            for future in tasks:
                pending.append(future)
                if len(pending) > workers * 2:
                    yield from _collect(pending.popleft(), stats)
            while pending:
                yield from _collect(pending.popleft(), stats)
        finally:
            for future in pending:
                future.cancel()


def _collect(future: Future[tuple[_Columns, ReadStats]], stats: ReadStats) -> Iterator[Observable]:
    columns, chunk_stats = future.result()  # a reader error in the worker is raised here
    stats.merge(chunk_stats)
    yield from columns.observables()
