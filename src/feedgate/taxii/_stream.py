"""Poll_Response as a stream, both ways, so that neither end holds a whole response in memory.

A poll of a busy collection can return gigabytes. The server side writes the response as an
iterator of byte chunks (the opening, one chunk per content block, the closing), which an ASGI
framework can send as it goes. The client side reads with :func:`feedgate.xml.iterparse`,
converts each Content_Block as it ends and discards it, so memory stays flat.

Both schemas put every header element (Record_Count, Message, timestamps, ...) before the first
Content_Block, which is what lets a reader offer the header before the blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO

from lxml import etree

from ..xml import DEFAULT_MAX_BYTES, iterparse
from ._constants import PREFIXES
from ._errors import TAXIIMessageError
from ._model import PollResponse, StatusMessage
from ._parts import ContentBlock
from ._reader import Reader, identify, read_message
from ._writer import Writer, lxml_value_errors

_Element = etree._Element


def iter_poll_response_xml(header: PollResponse, blocks: Iterable[ContentBlock]) -> Iterator[bytes]:
    """Serialise a Poll_Response as chunks: the opening part, each block, the closing part.

    ``header`` carries every field but the blocks (its ``content_blocks`` must be empty); the
    blocks come from ``blocks``, which is consumed lazily, one block per chunk. Joined, the
    chunks are the same document as ``to_xml()`` of the whole response.
    """
    if header.content_blocks:
        raise TAXIIMessageError(
            "iter_poll_response_xml: pass the content blocks as `blocks`, not in the header"
        )
    writer = Writer(header.version)
    marker = f"<{PREFIXES[header.version]}:Content_Block/>".encode()
    with lxml_value_errors("Poll_Response"):
        root = writer.poll_response_head(header)
    opening, closing = _split_at_marker(root, writer, marker)
    yield opening
    # Each block is serialised inside an attribute-less copy of the root, so that it is written
    # with the namespace prefix already in scope and no redundant declarations; the copy's own
    # tags are then cut off.
    wrapper = etree.Element(root.tag, nsmap=writer.nsmap)
    wrap_open, wrap_close = _split_at_marker(wrapper, writer, marker)
    for block in blocks:
        with lxml_value_errors("Poll_Response/Content_Block"):
            elem = writer.content_block(wrapper, block)
        data = etree.tostring(wrapper, encoding="utf-8")
        wrapper.remove(elem)
        if not (data.startswith(wrap_open) and data.endswith(wrap_close)):  # pragma: no cover
            raise AssertionError("unexpected serialisation of a content block")
        yield data[len(wrap_open) : len(data) - len(wrap_close)]
    yield closing


def _split_at_marker(root: _Element, writer: Writer, marker: bytes) -> tuple[bytes, bytes]:
    """Serialise ``root`` with an empty last child and split the text around that child."""
    child = etree.SubElement(root, writer.q("Content_Block"))
    data = etree.tostring(root, encoding="utf-8")
    root.remove(child)
    head, found, tail = data.rpartition(marker)
    if not found:  # pragma: no cover - lxml always writes an empty element this way
        raise AssertionError("marker element not found in serialised Poll_Response")
    return head, tail


def iter_poll_response(
    stream: IO[bytes], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> PollResponseReader | StatusMessage:
    """Start reading a poll's answer from ``stream``.

    Returns a :class:`PollResponseReader` (iterate it for the content blocks) or, when the
    server answered with a Status_Message (an error, or PENDING for an asynchronous poll), that
    message, read whole. Anything else raises :class:`TAXIIMessageError`; XML that is not
    well-formed or is hostile raises :class:`feedgate.xml.XMLParseError` (here or while
    iterating).
    """
    events = iterparse(stream, events=("start", "end"), max_bytes=max_bytes)
    _, root = next(events)  # iterparse raises on empty input, so there is a first event
    version, name = identify(root.tag)
    if name == "Status_Message":
        for _ in events:  # small by nature: build it whole
            pass
        status = read_message(root)
        assert isinstance(status, StatusMessage)
        return status
    if name != "Poll_Response":
        raise TAXIIMessageError(f"expected a Poll_Response or a Status_Message, got {name}")
    return PollResponseReader(root, events, Reader(version))


class PollResponseReader:
    """A Poll_Response being read from a stream: ``header`` and, by iterating, its blocks.

    Iterating yields each :class:`ContentBlock` as soon as its element is complete and then
    drops the element, so memory does not grow with the response. The reader is a one-shot
    iterator, like a file. Reading ``header`` before iterating consumes the stream up to the
    first block; after iteration it also includes anything a non-conforming server sent after
    the blocks. ``header.content_blocks`` is always empty.
    """

    def __init__(
        self, root: _Element, events: Iterator[tuple[str, _Element]], reader: Reader
    ) -> None:
        self._root = root
        self._events = events
        self._reader = reader
        self._head = reader.poll_response_head(root)
        self._depth = 1  # the root's start event has been consumed
        self._reached_blocks = False
        self._finished = False
        #: Content blocks yielded so far.
        self.blocks_read = 0

    @property
    def version(self) -> str:
        """The message binding id of the response (``VID_TAXII_XML_11`` or ``_10``)."""
        return self._reader.version

    @property
    def header(self) -> PollResponse:
        if not self._reached_blocks and not self._finished:
            self._advance(stop_at_first_block=True)
        return self._head

    def __iter__(self) -> Iterator[ContentBlock]:
        while (block := self._advance(stop_at_first_block=False)) is not None:
            yield block

    def _advance(self, *, stop_at_first_block: bool) -> ContentBlock | None:
        """Consume events until a block is complete (return it) or the document ends (None)."""
        reader = self._reader
        for event, elem in self._events:
            if event == "start":
                self._depth += 1
                if self._depth == 2 and reader.is_(elem, "Content_Block"):
                    self._reached_blocks = True
                    if stop_at_first_block:
                        return None
                continue
            self._depth -= 1
            if self._depth == 1:  # a child of Poll_Response is complete
                if reader.is_(elem, "Content_Block"):
                    block = reader.content_block(elem)
                    self._discard(elem)
                    self.blocks_read += 1
                    return block
                self._head = reader.poll_response_child(self._head, elem)
                self._discard(elem)
            elif self._depth == 0:  # Poll_Response itself is complete
                self._finish()
                return None
        self._finished = True
        return None

    def _finish(self) -> None:
        self._finished = True
        self._head = self._reader.poll_response_finish(self._head, self._root)
        for _ in self._events:  # let the parser see the end: trailing garbage is an error
            pass

    @staticmethod
    def _discard(elem: _Element) -> None:
        """Free a consumed child of the root, and any earlier siblings still attached."""
        elem.clear()
        parent = elem.getparent()
        if parent is not None:
            while elem.getprevious() is not None:
                del parent[0]
