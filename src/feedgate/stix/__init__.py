"""Read threat intelligence into normalised observables: STIX 1.0–1.2, CybOX, TAXII 1.x, STIX 2.x.

One entry point, :func:`read_observables`, takes a path or a byte stream, tells the format from
its first bytes and yields :class:`~feedgate.observables.Observable` records with their context.
It is pure protocol code: no database, no network.

    stats = ReadStats()
    for obs in read_observables("poll.xml", stats=stats):
        print(obs.kind, obs.value, obs.context.get("package_title"))
"""

from __future__ import annotations

import codecs
import io
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack
from typing import IO, cast

from feedgate import xml
from feedgate.observables import Observable

from ._errors import StixReadError, TaxiiStatusError
from ._parallel import (
    PartJob,
    batched,
    plan,
    read_bytes_parallel,
    read_parallel,
    start_workers,
)
from ._stats import ReadStats
from ._stix1 import check_root, read_stix1
from ._stix2 import pattern_comparisons, read_stix2

__all__ = [
    "PartJob",
    "ReadStats",
    "StixReadError",
    "TaxiiStatusError",
    "batched",
    "pattern_comparisons",
    "read_observables",
    "start_workers",
]

_HEAD = 64 * 1024
#: Bytes below which a part is read in-process even when workers are offered: sending it to a
#: worker and its observables back would cost more than reading it.
_PARALLEL_MIN = 1024 * 1024
#: STIX 2 JSON is read whole; this bounds it.
MAX_JSON_BYTES = 512 * 1024**2


class _Prefixed(io.RawIOBase):
    """A stream that first returns ``head`` (already read for sniffing), then the rest."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._head:
            if size is None or size < 0 or size >= len(self._head):
                out, self._head = self._head, b""
                return out
            out, self._head = self._head[:size], self._head[size:]
            return out
        return self._rest.read(-1 if size is None else size)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _utf16(head: bytes) -> str | None:
    """The UTF-16 codec an input is written in (by its BOM or its first '<'), or None."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    if head.startswith(b"<\x00"):
        return "utf-16-le"
    if head.startswith(b"\x00<"):
        return "utf-16-be"
    return None


_ENCODING_ATTR = re.compile(rb"""^(\s*<\?xml[^>]*?)\s+encoding\s*=\s*["'][^"']*["']""")


class _Utf8From(io.RawIOBase):
    """A UTF-16 stream re-encoded as UTF-8, its XML declaration's encoding dropped."""

    def __init__(self, source: IO[bytes] | io.RawIOBase, encoding: str) -> None:
        self._source = source
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self._pending = b""
        self._first = True
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = _HEAD if size is None or size < 0 else size
        while len(self._pending) < want and not self._done:
            raw = self._source.read(_HEAD) or b""
            try:
                text = self._decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                raise StixReadError(f"not valid UTF-16: {exc.reason}") from None
            data = text.encode("utf-8")
            if self._first and data:
                self._first = False
                data = _ENCODING_ATTR.sub(rb"\1", data.lstrip(b"\xef\xbb\xbf"), count=1)
            self._pending += data
            self._done = not raw
        out, self._pending = self._pending[:want], self._pending[want:]
        return out

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _strip_bom(head: bytes) -> bytes:
    return head[3:] if head.startswith(b"\xef\xbb\xbf") else head


def read_observables(
    source: str | os.PathLike[str] | IO[bytes] | bytes,
    *,
    stats: ReadStats | None = None,
    max_bytes: int = xml.DEFAULT_MAX_BYTES,
    workers: int = 1,
) -> Iterator[Observable]:
    """Yield the observables of one input, streaming.

    ``source`` is a path or a binary stream holding STIX 1.x XML, a bare CybOX document, a TAXII
    1.x Poll_Response or Inbox_Message, concatenated packages (what ``taxii-poll`` prints), or
    STIX 2.x JSON. Counts go to ``stats``. Raises :class:`StixReadError` (or a
    :class:`feedgate.xml.XMLParseError`) with a one-line reason when the input is not readable;
    observables already yielded stay valid.

    ``workers`` > 1 reads a TAXII poll response or a run of concatenated packages in a file, or
    given as ``bytes`` (a poll part), on that many processes (results and errors are those of
    the one-process read, in the same order); streams and other inputs are read in-process.
    """
    stats = stats if stats is not None else ReadStats()
    path: str | None = None
    if isinstance(source, bytes):
        if workers > 1 and len(source) > _PARALLEL_MIN:
            yield from read_bytes_parallel(source, stats, workers, max_bytes)
            return
        source = io.BytesIO(source)
    with ExitStack() as stack:
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            stream: IO[bytes] = stack.enter_context(open(path, "rb"))
        else:
            stream = source
            path = _regular_file_path(stream)
        head = stream.read(_HEAD) or b""
        utf16 = _utf16(head)
        if utf16 is not None:
            # What a PowerShell redirect writes: read it as the UTF-8 it stands for.
            stream = cast(IO[bytes], _Utf8From(_Prefixed(head, stream), utf16))
            path = None
            head = stream.read(_HEAD) or b""
        body = _strip_bom(head).lstrip()
        if not body:
            if not head:
                raise StixReadError("not STIX or TAXII: the input is empty")
            rest = stream.read(_HEAD)
            if not rest:
                raise StixReadError("not STIX or TAXII: the input is only whitespace")
            head += rest
            body = head.lstrip()
        first = body[:1]
        if first == b"<":
            check_root(body)
            split = plan(head) if workers > 1 and path is not None else None
            if split is not None and path is not None and os.path.isfile(path):
                yield from read_parallel(path, split, stats, workers, max_bytes)
                return
            yield from read_stix1(_buffered(_Prefixed(head, stream)), stats, max_bytes=max_bytes)
        elif first in (b"{", b"["):
            data = head + stream.read(MAX_JSON_BYTES + 1 - len(head))
            if len(data) > MAX_JSON_BYTES:
                raise StixReadError(f"STIX 2 JSON over the {MAX_JSON_BYTES}-byte limit")
            yield from read_stix2(data, stats)
        else:
            shown = body[:20].decode("utf-8", "replace")
            raise StixReadError(f"not STIX or TAXII: the input starts with {shown!r}")


def _regular_file_path(stream: IO[bytes]) -> str | None:
    """The path of ``stream`` if it is a regular file read from its start, else None.

    Workers of a parallel read can then open the file themselves instead of being sent it.
    """
    name = getattr(stream, "name", None)
    try:
        if isinstance(name, str) and os.path.isfile(name) and stream.tell() == 0:
            return name
    except (OSError, ValueError):
        pass
    return None


def _buffered(raw: io.RawIOBase) -> IO[bytes]:
    return io.BufferedReader(raw, buffer_size=256 * 1024)
