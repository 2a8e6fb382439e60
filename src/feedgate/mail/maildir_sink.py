"""A small SMTP delivery sink that files every message it accepts into a Maildir.

``feedgate up`` runs it as the gateway's next hop when there is no real MTA (``--relay``): a demo
machine then still shows what a mail system would deliver, one file per message under
``<data dir>/delivered/new/``, readable with ``mutt -f``, Dovecot or ``cat``. It depends on nothing
else in feedgate, so it also serves on its own (an aiosmtpd handler, :class:`MaildirHandler`, for
aiosmtpd's ``Controller``; or :class:`MaildirSink` on a socket of the caller's).

What a file holds, and why:

- ``Return-Path: <sender>`` and one ``Delivered-To: <recipient>`` per envelope recipient, then
  the message's bytes exactly as received (after SMTP's dot-unstuffing; line endings, 8-bit text
  and trailing spaces kept). Delivery agents that write Maildirs (Postfix's local(8), qmail-local,
  Dovecot's LDA) add the same two headers, because a Maildir file has no envelope: without them
  the sender that bounces go to and the recipients the message was for are lost. The added lines
  use the message's own line ending (CRLF as SMTP carries it, LF for a message sent with bare
  LFs), so the file is one consistent message and everything after them can be compared byte for
  byte with what was sent.
- One file per message, not one per recipient: the sink is a single catch-all mailbox, and one
  copy per transaction means that what is counted here is what was sent (a per-recipient copy in
  the same folder would look like duplicates).

**Nothing is lost** (maildir(5)): the message is written to ``tmp/<unique name>``, fsynced,
renamed into ``new/`` and ``new/`` is fsynced, and only then is ``250`` answered; a reader never
sees half a message, because a file appears in ``new/`` whole or not at all. A write that fails
(disk full, a folder that cannot be written) answers ``451 4.3.0`` and leaves nothing behind, so
the sender keeps the message and retries. Names follow the Maildir convention
(``<seconds>.M<µs>P<pid>Q<n>R<random>.<host>``) and are unique per process, so no rename ever
replaces another message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from aiosmtpd.smtp import SMTP, Envelope, Session

from .limits import MAX_MESSAGE_BYTES

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Maildir",
    "MaildirHandler",
    "MaildirSink",
    "delivery_headers",
]

log = logging.getLogger("feedgate.maildir_sink")

#: The largest message taken: the gateway's limit plus room for the header lines a ``tag`` or
#: ``header`` rule adds, so whatever the gateway accepts and passes on, the sink takes.
DEFAULT_MAX_MESSAGE_BYTES: Final = MAX_MESSAGE_BYTES + 1024 * 1024
#: Longest line taken in DATA, as the gateway's (real mail has lines longer than RFC 5321's 1000).
_LINE_LIMIT: Final = 64 * 1024
_SUBDIRS: Final = ("tmp", "new", "cur")
_counter = itertools.count(1)


def _header_value(text: str) -> bytes:
    """An envelope address as a header value: control characters (CR and LF above all, which
    would start a header of the sender's choosing) are dropped; UTF-8 as RFC 6532 allows."""
    return "".join(c for c in text if c.isprintable()).encode("utf-8")


def delivery_headers(mail_from: str, rcpt_tos: Iterable[str], eol: bytes = b"\r\n") -> bytes:
    """``Return-Path: <mail_from>`` (``<>`` for the null sender) and one ``Delivered-To:`` per
    recipient, each line ended with ``eol``: what a Maildir delivery agent puts first."""
    lines = [b"Return-Path: <" + _header_value(mail_from).strip(b"<>") + b">"]
    lines.extend(b"Delivered-To: " + _header_value(rcpt) for rcpt in rcpt_tos)
    return b"".join(line + eol for line in lines)


def _line_ending(raw: bytes) -> bytes:
    """The message's own line ending: that of its first line (CRLF when it has none)."""
    end = raw.find(b"\n")
    return b"\n" if end == 0 or (end > 0 and raw[end - 1] != 0x0D) else b"\r\n"


def _host_part() -> str:
    """This host's name as maildir(5) wants it in a file name ('/' and ':' escaped)."""
    return socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"


class Maildir:
    """A Maildir folder (``tmp/``, ``new/``, ``cur/`` under ``path``), made on first use with mode
    0700 (it holds people's mail). :meth:`deliver` is blocking and thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def new(self) -> Path:
        """Where delivered messages are (a mail reader moves what it has seen to ``cur/``)."""
        return self.path / "new"

    def create(self) -> None:
        """Make the folder and its three subfolders (nothing happens to what exists)."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        for sub in _SUBDIRS:
            (self.path / sub).mkdir(mode=0o700, exist_ok=True)

    def deliver(self, raw: bytes, mail_from: str, rcpt_tos: Iterable[str]) -> str:
        """File one message (module doc: tmp, fsync, rename into new, fsync new); its file name.
        Raises :class:`OSError` when it could not, leaving nothing in ``tmp/`` or ``new/``."""
        self.create()
        now = time.time()
        name = (
            f"{int(now)}.M{int(now % 1 * 1_000_000)}P{os.getpid()}Q{next(_counter)}"
            f"R{secrets.token_hex(4)}.{_host_part()}"
        )
        staged, final = self.path / "tmp" / name, self.new / name
        data = delivery_headers(mail_from, rcpt_tos, _line_ending(raw)) + raw
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(staged, final)
        except BaseException:
            with contextlib.suppress(OSError):
                staged.unlink()
            raise
        self._sync_new()
        return name

    def _sync_new(self) -> None:
        """fsync ``new/`` so the rename survives a crash (the file's data already has)."""
        fd = os.open(self.new, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class MaildirHandler:
    """aiosmtpd handler: every message accepted is filed into ``maildir`` before ``250``."""

    def __init__(self, maildir: Maildir) -> None:
        self.maildir = maildir
        #: How many messages were filed (for whoever runs the sink: a test, a status line).
        self.delivered = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail_from = str(envelope.mail_from or "")
        rcpt_tos = [str(r) for r in envelope.rcpt_tos]
        try:
            name = await asyncio.to_thread(self.maildir.deliver, raw, mail_from, rcpt_tos)
        except OSError as exc:
            log.error("cannot deliver into the Maildir %s: %s", self.maildir.path, exc)
            why = exc.strerror or type(exc).__name__
            return f"451 4.3.0 Maildir write failed ({why}); try again later"
        self.delivered += 1
        return f"250 2.0.0 Ok: delivered as {name}"


class _Session(SMTP):
    """aiosmtpd's SMTP protocol with long lines allowed, known to its :class:`MaildirSink` (so
    stopping the sink closes the connections still open)."""

    line_length_limit = _LINE_LIMIT

    def __init__(self, sink: MaildirSink, **kwargs: Any) -> None:
        self._sink = sink
        super().__init__(sink.handler, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sink.sessions.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._sink.sessions.discard(self)
        super().connection_lost(error)


class MaildirSink:
    """The sink as a server on an asyncio loop: :meth:`start` on a listening socket (bound by the
    caller, so port 0 works and a busy port is said before anything starts), :meth:`stop`."""

    def __init__(
        self,
        maildir: Maildir,
        *,
        hostname: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self.maildir = maildir
        self.handler = MaildirHandler(maildir)
        self.hostname = hostname or socket.gethostname()
        self.max_message_bytes = max_message_bytes
        self.sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        return _Session(
            self,
            data_size_limit=self.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.hostname,
            ident="feedgate Maildir sink",
            loop=asyncio.get_running_loop(),
        )

    async def start(self, sock: socket.socket) -> None:
        """Make the Maildir (a folder that cannot be made is said here, not per message), then
        serve on ``sock``."""
        await asyncio.to_thread(self.maildir.create)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, sock=sock)

    async def stop(self) -> None:
        """Stop listening and close the connections still open (a message whose DATA has not
        ended gets no reply, so its sender still has it)."""
        if self._server is None:
            return
        self._server.close()
        for session in list(self.sessions):
            if session.transport is not None:
                session.transport.close()
        await self._server.wait_closed()
        self._server = None
