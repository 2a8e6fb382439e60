"""Hardened XML parsing: the only module in feedgate that builds lxml parsers.

Threat feeds are untrusted input fetched from the network, so every parser here is built the same
way: entities are never resolved, DTDs are never loaded, the network is never touched, and a
document that carries a DOCTYPE at all is refused (there is no legitimate reason for a STIX or
TAXII message to have one, and refusing is simpler to reason about than defusing). Every parse is
bounded in size (bytes read) and depth (libxml2's own nesting limit, kept on by never enabling
``huge_tree``).

Streaming (:func:`iterparse`) is the normal path: callers receive elements as they end and clear
them, so memory stays flat whatever the document size. :func:`parse_bytes` is for small messages
(TAXII requests, status messages) where a whole tree is convenient.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any, Final, cast

from lxml import etree

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MAX_DEPTH",
    "HostileXMLError",
    "XMLLimitError",
    "XMLParseError",
    "concatenated_documents",
    "iterparse",
    "parse_bytes",
]

#: Default cap on the bytes one document (or one stream of concatenated documents) may have.
DEFAULT_MAX_BYTES: Final = 4 * 1024**3
#: libxml2 refuses deeper nesting unless huge_tree is on; we never turn it on.
MAX_DEPTH: Final = 256

_READ_CHUNK: Final = 256 * 1024


class XMLParseError(ValueError):
    """The input is not well-formed XML (or not XML at all)."""


class HostileXMLError(XMLParseError):
    """The input uses a feature we refuse outright: a DOCTYPE, entity declarations."""


class XMLLimitError(XMLParseError):
    """The input exceeds a size or depth limit."""


_DOCTYPE_RE: Final = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_ENTITY_RE: Final = re.compile(rb"<!ENTITY", re.IGNORECASE)


def _refuse_doctype(head: bytes) -> None:
    """Refuse a DOCTYPE or entity declaration seen in the bytes before the root element."""
    if _ENTITY_RE.search(head):
        raise HostileXMLError("refused: the document declares XML entities (<!ENTITY ...>)")
    if _DOCTYPE_RE.search(head):
        raise HostileXMLError("refused: the document has a DOCTYPE (DTDs are not allowed)")


def _classify(exc: etree.XMLSyntaxError) -> XMLParseError:
    """One clear line for a libxml2 error: the first fatal error, where it happened."""
    msg = ""
    log: Any = exc.error_log  # cleared before each parse, so these are this parse's own
    for entry in log:
        if entry.level_name == "FATAL":
            msg = f"{entry.message} (line {entry.line}, column {entry.column})"
            break
    if not msg:
        msg = str(exc).replace("(<string>, line 1)", "")
    # libxml2's messages may span lines: make them one line.
    msg = " ".join(msg.split()).replace(" ,", ",")
    lowered = msg.lower()
    if "excessive depth" in lowered or ("depth" in lowered and "exceed" in lowered):
        return XMLLimitError(f"refused: the document nests deeper than {MAX_DEPTH} levels")
    if "entity" in lowered and ("not defined" in lowered or "undeclared" in lowered):
        return XMLParseError(f"not well-formed XML: an undeclared entity: {msg}")
    return XMLParseError(f"not well-formed XML: {msg}")


def _parser_options() -> dict[str, Any]:
    return {
        "resolve_entities": False,
        "load_dtd": False,
        "no_network": True,
        "huge_tree": False,
        "dtd_validation": False,
        "remove_comments": True,
        "remove_pis": True,
    }


def make_parser(*, remove_blank_text: bool = False) -> etree.XMLParser:
    """Return a hardened tree parser (for callers that need ``etree.fromstring`` semantics)."""
    return etree.XMLParser(remove_blank_text=remove_blank_text, **_parser_options())


def parse_bytes(data: bytes, *, max_bytes: int = 64 * 1024**2) -> etree._Element:
    """Parse a small, whole document and return its root element."""
    if len(data) > max_bytes:
        raise XMLLimitError(
            f"refused: the document is {len(data)} bytes, over the {max_bytes} limit"
        )
    stripped = data.lstrip()
    if not stripped:
        raise XMLParseError("not XML: the input is empty")
    root_at = _root_start(stripped)
    _refuse_doctype(stripped[: root_at if root_at >= 0 else len(stripped)])
    try:
        etree.clear_error_log()
        root = etree.fromstring(stripped, make_parser())
    except etree.XMLSyntaxError as exc:
        raise _classify(exc) from None
    if _has_doctype(root):
        raise HostileXMLError("refused: the document has a DOCTYPE (DTDs are not allowed)")
    return root


_PROLOG_ITEM_RE: Final = re.compile(rb"\s*(<\?.*?\?>|<!--.*?-->)", re.DOTALL)


def _root_start(data: bytes) -> int:
    """Offset of the root element's ``<`` in ``data``, or -1 if the prolog runs past ``data``.

    Skips the XML declaration, processing instructions and comments; a DOCTYPE is left in the
    prolog so that the caller sees it.
    """
    pos = 0
    while True:
        m = _PROLOG_ITEM_RE.match(data, pos)
        if m is None:
            break
        pos = m.end()
    while pos < len(data) and data[pos : pos + 1].isspace():
        pos += 1
    if pos >= len(data):
        return -1
    if data.startswith(b"<!DOCTYPE", pos) or data.startswith(b"<!doctype", pos):
        return len(data)  # the whole head is prolog as far as _refuse_doctype is concerned
    return pos


class _BoundedReader(io.RawIOBase):
    """A read-only byte stream over ``source`` that refuses to go past ``max_bytes``.

    It also checks the document prolog for a DOCTYPE before lxml sees a byte, so a hostile
    document is refused with a clear reason rather than a parser error.
    """

    def __init__(self, source: IO[bytes], max_bytes: int, max_between: int | None) -> None:
        self._source = source
        self._max = max_bytes
        self._max_between = max_between
        self.consumed = 0
        #: bytes read since the caller last received an event (see iterparse's max_between)
        self.since_event = 0
        self._checked_head = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = _READ_CHUNK if size is None or size < 0 else size
        data = self._source.read(want)
        if not data:
            return b""
        self.consumed += len(data)
        self.since_event += len(data)
        if self.consumed > self._max:
            raise XMLLimitError(f"refused: the input exceeds the {self._max}-byte limit")
        if self._max_between is not None and self.since_event > self._max_between:
            raise XMLLimitError(
                f"refused: over {self._max_between} bytes without a complete element of"
                " interest (a single package or content block that large is not read)"
            )
        if not self._checked_head:
            self._checked_head = True
            root_at = _root_start(data)
            _refuse_doctype(data if root_at < 0 else data[:root_at])
        return bytes(data)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def iterparse(
    source: IO[bytes],
    *,
    tag: str | Iterable[str] | None = None,
    events: tuple[str, ...] = ("end",),
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_between: int | None = None,
) -> Iterator[tuple[str, etree._Element]]:
    """Stream ``(event, element)`` pairs from a byte stream, hardened and bounded.

    The caller clears elements it has consumed (``elem.clear()`` and dropping earlier
    siblings) to keep memory flat. That bounds memory by the largest element between two
    events, so ``max_between`` caps the bytes read without an event: with a ``tag`` filter it
    is the size limit of one element of interest (and of junk between them). Errors surface
    as :class:`XMLParseError` subclasses.
    """
    reader = _BoundedReader(source, max_bytes, max_between)
    etree.clear_error_log()
    context = etree.iterparse(
        reader,
        events=events,
        tag=tag,
        **_parser_options(),
    )
    first = True
    try:
        for event, elem in context:
            if first:
                first = False
                if _has_doctype(elem):
                    raise HostileXMLError(
                        "refused: the document has a DOCTYPE (DTDs are not allowed)"
                    )
            reader.since_event = 0
            yield event, elem
    except etree.XMLSyntaxError as exc:
        if reader.consumed == 0:
            raise XMLParseError("not XML: the input is empty") from None
        raise _classify(exc) from None


def walk(
    data: bytes, *, tag: str | Iterable[str] | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[tuple[str, etree._Element]]:
    """The ``end`` events :func:`iterparse` gives for ``data``, from a tree parsed in one call.

    For inputs small enough to hold whole (a parse worker's range of a poll response is half a
    megabyte): one call into libxml2 is a quarter cheaper than the streaming parser's
    per-event machinery. Same hardened parser, same refusals; the caller need not clear what
    it consumed (and must not change the tree while it walks).
    """
    if len(data) > max_bytes:
        raise XMLLimitError(f"refused: the input exceeds the {max_bytes}-byte limit")
    if not data.strip():
        raise XMLParseError("not XML: the input is empty")
    root_at = _root_start(data)
    _refuse_doctype(data if root_at < 0 else data[:root_at])  # before libxml2 sees it
    etree.clear_error_log()
    try:
        root = etree.fromstring(data, make_parser())
    except etree.XMLSyntaxError as exc:
        raise _classify(exc) from None
    if _has_doctype(root):
        raise HostileXMLError("refused: the document has a DOCTYPE (DTDs are not allowed)")
    yield from etree.iterwalk(root, events=("end",), tag=tag)


def _has_doctype(elem: etree._Element) -> bool:
    docinfo: Any = elem.getroottree().docinfo
    return bool(docinfo.doctype)


#: An XML declaration anywhere in a stream of concatenated documents.
_XML_DECL_RE: Final = re.compile(rb"<\?xml\s[^>]*\?>")

#: The longest tail held back between reads in case an XML declaration straddles them.
_HOLD_BACK: Final = 256

#: The synthetic root that :func:`concatenated_documents` wraps documents in.
WRAPPER_TAG: Final = "feedgate-documents"


class _ConcatenationReader(io.RawIOBase):
    """Present concatenated XML documents as one document under a synthetic root.

    Tools such as ``taxii-poll`` print one document per content block, each with its own XML
    declaration. We drop the declarations (they are only legal at the very start) and wrap the
    rest in ``<feedgate-documents>``, so one streaming parse reads them all. A DOCTYPE anywhere
    in the stream stays in place and makes libxml2 fail; the head check refuses it clearly.
    """

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._pending = b""
        self._pos = 0  # bytes of _pending already handed out (slicing by offset avoids copies)
        self._tail = b""  # bytes held back in case a declaration straddles two reads
        self._done = False
        self._started = False

    def _start(self, data: bytes) -> bytes:
        """Emit the first document's XML declaration (it names the encoding), then the root."""
        self._started = True
        open_tag = b"<" + WRAPPER_TAG.encode() + b">"
        stripped = data.lstrip()
        m = _XML_DECL_RE.match(stripped)
        if m is None:
            return open_tag + _XML_DECL_RE.sub(b"", data)
        return m.group(0) + open_tag + _XML_DECL_RE.sub(b"", stripped[m.end() :])

    def _refill(self) -> None:
        """Replace the exhausted buffer with the next transformed chunk of the source."""
        chunk = self._source.read(_READ_CHUNK)
        if not chunk:
            self._done = True
            head = b"" if self._started else self._start(b"")
            tail = _XML_DECL_RE.sub(b"", self._tail)
            self._pending = head + tail + b"</" + WRAPPER_TAG.encode() + b">"
            self._tail = b""
            return
        data = self._tail + bytes(chunk) if self._tail else bytes(chunk)
        cut = data.rfind(b"<")
        # Hold back a possibly split declaration ("<?xml ... ?>" is short); never more, or a
        # long comment or CDATA section would be copied again on every read.
        if cut >= 0 and len(data) - cut < _HOLD_BACK and b">" not in data[cut:]:
            self._tail, data = data[cut:], data[:cut]
        else:
            self._tail = b""
        # XML spells both keywords in upper case; a plain find is far cheaper than a regex.
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            _refuse_doctype(data)
        if not self._started:
            self._pending = self._start(data)
        else:
            self._pending = _XML_DECL_RE.sub(b"", data) if b"<?xml" in data else data

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        want = _READ_CHUNK if size is None or size < 0 else size
        while self._pos >= len(self._pending):
            if self._done:
                return b""
            self._pending, self._pos = b"", 0
            self._refill()
        out = self._pending[self._pos : self._pos + want]
        self._pos += len(out)
        return out

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def concatenated_documents(source: IO[bytes]) -> IO[bytes]:
    """Wrap a stream of zero or more concatenated XML documents as a single document.

    The result is a byte stream for :func:`iterparse`; its root element is ``WRAPPER_TAG`` and
    each original document's root is one of its children.
    """
    reader: Any = _ConcatenationReader(source)  # lxml only calls read(); no extra buffering
    return cast(IO[bytes], reader)
