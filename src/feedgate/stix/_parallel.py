"""Read a large STIX 1.x file on several cores.

A poll response is a long run of independent units (TAXII Content_Blocks, or whole STIX_Package
documents when the input is what ``taxii-poll`` prints). The parent maps the file, finds cut
points after the end tag of a unit every CHUNK_BYTES or so, and worker processes read the byte
ranges between cuts with the ordinary reader (:func:`._stix1.read_stix1`). Results come back in
input order, with at most a few ranges in flight, so memory stays flat.

A range of Content_Blocks is not a document on its own: the namespace prefixes it uses are
declared on the Poll_Response root. The worker wraps each range in an element that repeats the
root's ``xmlns`` declarations, which makes it well-formed without rewriting a byte of content.

Cutting is safe only outside CDATA sections, comments and processing instructions, so the cut
finder tracks those. And the parallel read must say exactly what the sequential one says: if
anything is unusual (a range that does not parse, bytes after the last block other than the
root's end tag, a non-UTF-8 encoding), the file is read again in one process, skipping what was
already handed out, so the caller sees the sequential result, errors included.
"""

from __future__ import annotations

import io
import mmap
import multiprocessing
import re
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Final, NamedTuple

from feedgate import xml
from feedgate.observables import Kind, Observable

from ._stats import ReadStats
from ._stix1 import read_stix1

#: Target range size; big enough to amortise a round trip, small enough to balance the cores.
CHUNK_BYTES = 2 * 1024**2
_NAME: Final = rb"(?:[A-Za-z_][\w.-]*:)?"
#: Markers the cut finder must see: unit end tags, and what may hide them.
_HIDERS: Final = rb"|<!\[CDATA\[|\]\]>|<!--|-->"
_MARKERS: Final = {
    "blocks": re.compile(rb"</" + _NAME + rb"Content_Block\s*>" + _HIDERS),
    "packages": re.compile(rb"</" + _NAME + rb"STIX_Package\s*>" + _HIDERS),
}
_CLOSERS: Final = {b"<![CDATA[": b"]]>", b"<!--": b"-->"}
_ROOT_END: Final = re.compile(rb"\s*</" + _NAME + rb"(?:Poll_Response|Inbox_Message)\s*>\s*\Z")
_START_TAG_RE: Final = re.compile(
    rb"<([A-Za-z_][\w.:-]*)((?:\s+[^\s=>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*>"
)
_XMLNS_RE: Final = re.compile(rb"\sxmlns(?::[\w.-]+)?\s*=\s*(?:\"[^\"]*\"|'[^']*')")
_ENCODING_RE: Final = re.compile(rb"<\?xml[^>]*encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")


class Plan(NamedTuple):
    """How to split a file: the kind of unit, where the body starts, the root's namespaces."""

    mode: str
    body_at: int
    xmlns: bytes


def plan(head: bytes) -> Plan | None:
    """How to split a file that starts with ``head``, or None to read it in one process.

    Only plain UTF-8 Poll_Responses, Inbox_Messages and runs of STIX_Packages are split; a
    single package, a CybOX document or another encoding is read in one process.
    """
    if head.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return None
    encoding = _ENCODING_RE.match(head)
    if encoding and encoding.group(1).lower() not in (b"utf-8", b"utf8", b"us-ascii", b"ascii"):
        return None
    start = xml._root_start(head)
    if start < 0 or start >= len(head):
        return None
    m = _START_TAG_RE.match(head, start)
    if m is None:
        return None
    name = m.group(1).rpartition(b":")[2]
    if name in (b"Poll_Response", b"Inbox_Message"):
        return Plan("blocks", m.end(), b"".join(_XMLNS_RE.findall(m.group(2))))
    if name == b"STIX_Package":
        return Plan("packages", 0, b"")
    return None


class _Columns(NamedTuple):
    """A range's observables as columns: far cheaper to pickle than one tuple per observable.

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


def _read_range(path: str, split: Plan, start: int, end: int) -> tuple[_Columns, ReadStats]:
    """Worker: read bytes [start, end) of the file with the ordinary reader."""
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    stats = ReadStats()
    if split.mode == "blocks":
        # Content_Blocks cut from a Poll_Response: one element around them makes a document.
        data = b"<feedgate-chunk" + split.xmlns + b">" + data + b"</feedgate-chunk>"
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


class _Unsafe(Exception):
    """The file cannot be split safely; read it in one process."""


def ranges(data: mmap.mmap | bytes, split: Plan) -> Iterator[tuple[int, int]]:
    """Byte ranges of about CHUNK_BYTES that start and end on unit boundaries.

    Raises :class:`_Unsafe` when the bytes after the last unit are not just the root's end tag
    (a truncated download, a second document) or a CDATA section or comment never closes.
    """
    start = split.body_at if split.mode == "blocks" else 0
    # Most files have no CDATA or comment: then end tags are all there is to look for, and
    # bytes.find is many times faster than a regular expression over the whole file.
    hidden = data.find(b"<![CDATA[", start) >= 0 or data.find(b"<!--", start) >= 0
    ends = _tracked_ends(data, split.mode, start) if hidden else _unit_ends(data, split.mode, start)
    last_end = -1
    for last_end in ends:
        if last_end - start >= CHUNK_BYTES:
            yield start, last_end
            start = last_end
    if split.mode == "blocks":
        if last_end < 0 or not _ROOT_END.match(data, last_end):
            raise _Unsafe
        if start < last_end:
            yield start, last_end
    elif start < len(data):
        yield start, len(data)


_UNIT_NAMES: Final = {"blocks": b"Content_Block", "packages": b"STIX_Package"}
_END_TAG_TAIL: Final = re.compile(rb"\s*>")
_END_TAG_HEAD: Final = re.compile(rb"</" + _NAME + rb"\Z")


def _unit_ends(data: mmap.mmap | bytes, mode: str, start: int) -> Iterator[int]:
    """Offsets just after each unit end tag, found with bytes.find."""
    name = _UNIT_NAMES[mode]
    pos = start
    while True:
        hit = data.find(name, pos)
        if hit < 0:
            return
        pos = hit + len(name)
        head = data[max(start, hit - 64) : hit]
        tail = _END_TAG_TAIL.match(data, pos)
        if tail is not None and _END_TAG_HEAD.search(head):
            pos = tail.end()
            yield pos


def _tracked_ends(data: mmap.mmap | bytes, mode: str, start: int) -> Iterator[int]:
    """Offsets just after each unit end tag that is not inside CDATA or a comment."""
    closer: bytes | None = None
    for m in _MARKERS[mode].finditer(data, start):
        token = m.group(0)
        if closer is not None:
            if token == closer:
                closer = None
            continue
        opener = _CLOSERS.get(token)
        if opener is not None:
            closer = opener
        elif token.startswith(b"</"):
            yield m.end()
    if closer is not None:
        raise _Unsafe


def read_parallel(
    path: str, split: Plan, stats: ReadStats, workers: int, max_bytes: int
) -> Iterator[Observable]:
    """Observables of the file at ``path`` read by ``workers`` processes, in input order."""
    yielded = 0
    try:
        for obs in _read_split(path, split, stats, workers, max_bytes):
            yield obs
            yielded += 1
        return
    except Exception:
        pass
    # Say exactly what the sequential reader says: read again, skip what was handed out.
    fresh = ReadStats()
    try:
        with open(path, "rb") as f:
            for i, obs in enumerate(read_stix1(f, fresh, max_bytes=max_bytes)):
                if i >= yielded:
                    yield obs
    finally:
        stats.clear()
        stats.merge(fresh)


def _read_split(
    path: str, split: Plan, stats: ReadStats, workers: int, max_bytes: int
) -> Iterator[Observable]:
    context = multiprocessing.get_context("fork")
    pending: deque[Future[tuple[_Columns, ReadStats]]] = deque()
    with open(path, "rb") as f:
        size = f.seek(0, io.SEEK_END)
        if size > max_bytes:
            raise xml.XMLLimitError(f"refused: the input exceeds the {max_bytes}-byte limit")
        if size == 0:
            return
        with (
            mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data,
            ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool,
        ):
            try:
                for start, end in ranges(data, split):
                    pending.append(pool.submit(_read_range, path, split, start, end))
                    if len(pending) > workers * 2:
                        yield from _collect(pending.popleft(), stats)
                while pending:
                    yield from _collect(pending.popleft(), stats)
            finally:
                for future in pending:
                    future.cancel()


def _collect(future: Future[tuple[_Columns, ReadStats]], stats: ReadStats) -> Iterator[Observable]:
    columns, range_stats = future.result()  # a reader error in the worker is raised here
    stats.merge(range_stats)
    yield from columns.observables()
