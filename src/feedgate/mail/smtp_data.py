"""Reading an SMTP DATA block in large pieces instead of line by line.

aiosmtpd reads DATA one line at a time, a Python loop turn per line: about 4.5 ms of the event
loop for a 100 KB message. In the gateway that was as much CPU per message as the whole scan
(``bench/gateway.py``: 13.9 ms of loop per message of its corpus, 6.0 ms with this), all of it
on the one core the event loop has. Here :func:`read_data` asks the stream for the end-of-data
mark ``CRLF . CRLF`` itself, so asyncio's C search crosses up to a buffer's worth (the stream's
limit) per call.

The mark can hide from that search only where the previous read ended at a line start: the
message's first line (the DATA command's own CRLF is the mark's first half), and the line after
a line that begins with a dot or a CR (an empty line's CRLF may be the mark's). Such lines are
read one at a time until a line starts with anything else; from there on the whole mark is
ahead. Dot-stuffing is undone on the joined message (RFC 5321 4.5.2: the first dot of a line
that begins with one is deleted), so a "CRLF ." split across two reads is still seen.

No line length is enforced: a filter in front of a relay passes what its MTA took (refusing a
long line would bounce the mail); the size limit bounds the whole block.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

#: The end of the data: a line holding a single dot.
END_OF_DATA: Final = b"\r\n.\r\n"


@dataclass(frozen=True, slots=True)
class DataBlock:
    """What came between ``354`` and the final dot.

    ``content`` is the message with its dot-stuffing undone, or None when it was over the
    limit (everything was still read, so the session stays in step, and then dropped); ``size``
    counts the bytes received, as the SIZE limit does.
    """

    content: bytes | None
    size: int


class _Collected:
    """The pieces read so far, dropped as soon as they pass the limit."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.size = 0
        self.over = False
        self.pieces: list[bytes] = []

    def keep(self, piece: bytes, dropped: int = 0) -> None:
        """Add ``piece``, which came as ``dropped`` more bytes (a stuffed dot) than it holds."""
        self.size += len(piece) + dropped
        if self.over:
            return
        if self.limit is not None and self.size > self.limit:
            self.over = True
            self.pieces.clear()
        else:
            self.pieces.append(piece)


async def _line(reader: asyncio.StreamReader, start: bytes = b"") -> bytes:
    """The rest of the line that began with ``start``, CRLF included, however long (the
    stream's limit is only a buffer's size). Reads to each LF and looks back for its CR, so a
    CR that ``start`` ends with still counts."""
    parts = [start]
    while True:
        try:
            parts.append(await reader.readuntil(b"\n"))
        except asyncio.LimitOverrunError as exc:
            parts.append(await reader.readexactly(exc.consumed))
            continue
        if parts[-1].endswith(b"\r\n") or (parts[-1] == b"\n" and parts[-2].endswith(b"\r")):
            return b"".join(parts)


async def read_data(reader: asyncio.StreamReader, limit: int | None) -> DataBlock:
    """Read a DATA block from ``reader`` up to and including its final dot.

    Raises :class:`asyncio.IncompleteReadError` if the stream ends first (the client went away
    mid-DATA: there is no message).
    """
    head = _Collected(limit)
    while True:  # at a line start: the mark may be this very line, or begin with its CRLF
        first = await reader.readexactly(1)
        if first == b".":
            rest = await _line(reader)
            if rest == b"\r\n":
                return _block(head, b"")
            head.keep(rest, dropped=1)  # its stuffed dot dropped: this line is done with
        elif first == b"\r":  # maybe an empty line, whose CRLF starts the mark
            head.keep(await _line(reader, first))
        else:
            break
    # The current line starts with ``first``, neither a dot nor a CR: the whole mark is ahead.
    body = _Collected(None if limit is None else limit - head.size)
    body.keep(first)
    while True:
        try:
            piece = await reader.readuntil(END_OF_DATA)
        except asyncio.LimitOverrunError as exc:
            body.keep(await reader.readexactly(exc.consumed))
            continue
        body.keep(piece[: -len(b".\r\n")])  # the last line's CRLF is the message's
        break
    if body.over:
        return DataBlock(None, head.size + body.size)
    return _block(head, b"".join(body.pieces).replace(b"\r\n.", b"\r\n"), body.size)


def _block(head: _Collected, tail: bytes, tail_size: int = 0) -> DataBlock:
    size = head.size + tail_size
    if head.over:
        return DataBlock(None, size)
    return DataBlock(b"".join(head.pieces) + tail, size)
