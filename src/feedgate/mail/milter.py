"""``feedgate milter``: the mail policy enforced inside Postfix (or Sendmail) before queue.

A thin adapter between the Sendmail milter protocol, spoken by ``kilter.service`` (chosen over
purepythonmilter and pymilter, see the commit that added it), and
:class:`~feedgate.mail.scanner.Scanner`, the same decision ``feedgate scan`` and the SMTP
gateway make. Per message it collects what the MTA tells a milter: the client's address
(connect), the HELO name, MAIL FROM, RCPT TO, the headers (with their leading white space, as
received) and the body (CRLF lines, as Postfix sends them). From these it rebuilds the message
(``Name:value`` CRLF per header, a blank line, the body bytes) and, at the end of the message,
scans it off the event loop, then answers. ``feedgate milter`` scans in worker processes (a
:class:`~feedgate.mail.scan_pool.ScanPool`, the gateway's, so every core scans); a filter
given a :class:`Scanner` instead (one process embedding it) scans in threads, bounded by
``workers``, for at most ``scan_timeout`` seconds:

======================  ================================================================
verdict                 answer to the MTA
======================  ================================================================
reject                  ``550 5.7.1 ...``: the verdict's reply (source names and kinds only)
drop                    discard: the MTA says 250 to the client and delivers nothing
quarantine              the injected ``quarantine(raw, envelope, verdict)`` keeps it, then
                        discard; when it fails (or none is configured): tempfail
tag / header            Subject prefixed / ``X-Feedgate-Threat`` added at the top (any the
                        sender put there removed), then accept
log / deliver           accept, unchanged
monitor-mode matches    no effect on the answer; the log line ends ``; would have: quarantine
                        [rule] (source NAME, monitor mode)``, what they would have done
larger than the limit   ``552 5.3.4``: :data:`~feedgate.mail.limits.MAX_MESSAGE_BYTES` is
                        what feedgate scans at all, as the gateway refuses past it (a 4xx
                        would have the sender retry, forever, a message that cannot pass)
anything that fails     tempfail (451 at Postfix): a scan that raises or overruns, a
                        quarantine that cannot keep the message; never accept unscanned
======================  ================================================================

Postfix itself answers 451 when the milter is down or does not answer in time, with
``milter_default_action = tempfail`` (its default); the README shows the ``main.cf`` lines.

Why the events are read from the session's broadcast and the edits sent as protocol messages,
rather than through kilter's ``Session.helo()``/``envelope_from()`` and header accessors: a
client need not say HELO, and ``helo()`` then swallows the MAIL event while it waits; and one
SMTP connection carries several messages, for which kilter restarts the filter with the HELO
already gone. Reading every event in one loop takes each one as it comes.

Rules, exceptions, polls and disabled sources reach a running milter without a restart: the
:class:`Scanner` reads the policy's and the store's counters again every ``check_every``
seconds (one by default).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias, TypeVar, cast

import anyio
import anyio.abc
import anyio.to_thread
from kilter.protocol.messages import (
    Accept,
    ActionFlags,
    ChangeHeader,
    Discard,
    EndOfMessage,
    EnvelopeFrom,
    EnvelopeRecipient,
    Header,
    Helo,
    InsertHeader,
    ProtocolFlags,
    ReplyCode,
    TemporaryFailure,
)
from kilter.protocol.messages import Body as BodyChunk
from kilter.service import Runner, Session
from kilter.service.options import (
    examine_body,
    examine_headers,
    examine_helo,
    examine_recipients,
    examine_sender,
    modify_flags,
)

from .limits import MAX_MESSAGE_BYTES
from .model import Action, Envelope
from .policy import HEADER_NAME, Verdict, would_have_summary
from .rewrite import prefixed_value
from .scan_pool import ScanPool

if TYPE_CHECKING:
    from kilter.service.session import Filter

    from .scanner import Scanner

__all__ = [
    "DEFAULT_LISTEN",
    "ListenAddress",
    "MilterFilter",
    "QuarantineFn",
    "QuarantineUnavailable",
    "no_quarantine",
    "open_listener",
    "parse_listen",
    "serve",
]

DEFAULT_LISTEN: Final = "inet:127.0.0.1:11332"
#: A scan that takes longer is abandoned and the message tempfailed (Postfix's own
#: ``milter_content_timeout`` is 300 s; answering well before it keeps the reply ours).
DEFAULT_SCAN_TIMEOUT: Final = 60.0
DEFAULT_WORKERS: Final = 4

#: ``quarantine(raw, envelope, verdict) -> id``: keeps a message out of delivery, for review and
#: release; returns the id it is kept under. Called in a worker thread. Raising means "not kept".
QuarantineFn: TypeAlias = Callable[[bytes, Envelope, Verdict], str]
Response: TypeAlias = Accept | Discard | ReplyCode | TemporaryFailure

log = logging.getLogger("feedgate.milter")
_T = TypeVar("_T")


class QuarantineUnavailable(RuntimeError):
    """There is nowhere to keep a quarantined message (the milter then tempfails it)."""


def no_quarantine(raw: bytes, envelope: Envelope, verdict: Verdict) -> str:
    """The quarantine of a milter that was given none: keeps nothing, so a quarantine verdict
    is tempfailed (the sender keeps the message and retries) rather than lost or let through."""
    raise QuarantineUnavailable(
        "no quarantine store is configured for the milter: the message is tempfailed"
    )


@dataclass
class _Message:
    """What the MTA told about one message so far."""

    client_ip: str | None
    helo: str | None
    queue_id: str | None = None
    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    max_bytes: int = MAX_MESSAGE_BYTES
    size: int = 0
    too_big: bool = False

    def add(self, data: bytes) -> bool:
        """Count ``data`` against the limit; False (and nothing kept any more) past it."""
        self.size += len(data)
        if self.size > self.max_bytes:
            self.too_big = True
            self.headers.clear()
            self.body.clear()
        return not self.too_big

    def raw(self) -> bytes:
        """The message rebuilt: each header as received (leading white space kept, CRLF line
        ends), a blank line, the body as the MTA sent it."""
        lines = [
            name.encode("ascii") + b":" + _crlf(value) + b"\r\n" for name, value in self.headers
        ]
        return b"".join(lines) + b"\r\n" + b"".join(self.body)

    def envelope(self) -> Envelope:
        return Envelope(
            mail_from=self.mail_from,
            rcpt_tos=tuple(self.rcpt_tos),
            client_ip=self.client_ip,
            helo=self.helo,
            queue_id=self.queue_id,
        )


def _crlf(value: bytes) -> bytes:
    """A header value's folds as CRLF (Postfix passes them to milters with bare LF)."""
    return value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _address(raw: bytes) -> str:
    """MAIL FROM / RCPT TO as the MTA passed it (``<a@b>``), without the angle brackets."""
    text = raw.decode("utf-8", "replace").strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return text


def prefixed_subject(value: bytes | None, prefix: str) -> bytes | None:
    """The Subject value (as a milter passes it, leading space included) with ``prefix``
    before it, or None when it already starts with the prefix; None ``value`` (no Subject):
    the prefix alone. The gateway's rule (:func:`feedgate.mail.rewrite.prefixed_value`)."""
    return prefixed_value(b"" if value is None else value, prefix.strip())


def _fold(value: str) -> bytes:
    """A header value we add, folded at spaces near 78 columns (Postfix takes LF folds)."""
    words = " ".join(value.split()).split(" ")
    lines: list[str] = []
    line = ""
    for word in words:
        if line and len(line) + 1 + len(word) > 76 - (len(HEADER_NAME) if not lines else 0):
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return (" " + "\n\t".join(lines)).encode("ascii", "replace")


class MilterFilter:
    """The filter kilter runs for each milter connection (``await filter(session)``).

    ``scanner`` decides: a started :class:`ScanPool` (worker processes, with its own limits)
    or a :class:`Scanner` run in threads, at most ``workers`` at once, each for at most
    ``scan_timeout`` seconds; ``quarantine`` keeps what it quarantines (:func:`no_quarantine`
    when none is wired, which tempfails); a message over ``max_bytes`` is refused unscanned
    (552)."""

    def __init__(
        self,
        scanner: Scanner | ScanPool,
        *,
        quarantine: QuarantineFn = no_quarantine,
        scan_timeout: float = DEFAULT_SCAN_TIMEOUT,
        workers: int = DEFAULT_WORKERS,
        max_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        # kilter names a filter in its log by __module__ and __qualname__, which an instance
        # does not have of its own.
        self.__qualname__ = type(self).__qualname__
        self.scanner = scanner
        self.quarantine = quarantine
        self.scan_timeout = scan_timeout
        self.max_bytes = max_bytes
        self._limiter = anyio.CapacityLimiter(workers)
        # The HELO name of each connection: said once, needed by every message on it.
        self._helo: weakref.WeakKeyDictionary[Session, str] = weakref.WeakKeyDictionary()
        for decorate in (
            examine_helo(),
            examine_sender(),
            examine_recipients(),
            examine_headers(can_add=True, can_modify=True, leading_space=True),
            examine_body(),
            # Without SKIP the MTA sends every body chunk: the filter reads them all itself.
            modify_flags(unset_options=ProtocolFlags.SKIP, set_actions=ActionFlags.NONE),
        ):
            decorate(cast("Filter", self))

    async def __call__(self, session: Session, /) -> Response:
        message = await self._collect(session)
        raw_env = message.envelope()
        if message.too_big:
            log.info("%s: refused: over %d bytes", _describe(raw_env), self.max_bytes)
            mib, rest = divmod(self.max_bytes, 2**20)
            limit = f"{mib} MiB" if not rest else f"{self.max_bytes} bytes"
            return ReplyCode(
                f"552 5.3.4 Message too big for the threat scan (limit {limit})\0".encode()
            )
        try:
            return await self._decide(session, message.raw(), raw_env, message.headers)
        except Exception:
            log.exception("%s: tempfailed: the milter failed", _describe(raw_env))
            return TemporaryFailure()

    async def _collect(self, session: Session) -> _Message:
        address = session.address
        client_ip = str(address) if isinstance(address, IPv4Address | IPv6Address) else None
        message = _Message(client_ip, self._helo.get(session), max_bytes=self.max_bytes)
        while True:
            event = await session.broadcast.receive()
            match event:
                case Helo():
                    self._helo[session] = message.helo = event.hostname
                case EnvelopeFrom():
                    message.mail_from = _address(bytes(event.sender))
                case EnvelopeRecipient():
                    message.rcpt_tos.append(_address(bytes(event.recipient)))
                case Header():
                    value = bytes(event.value)
                    if message.add(value) and message.add(event.name.encode()):
                        message.headers.append((event.name, value))
                case BodyChunk():
                    chunk = bytes(event.content)
                    if message.add(chunk):
                        message.body.append(chunk)
                case EndOfMessage():
                    chunk = bytes(event.content)
                    if chunk and message.add(chunk):
                        message.body.append(chunk)
                    message.queue_id = session.macros.get("i") or session.macros.get("{i}")
                    return message

    async def _decide(
        self, session: Session, raw: bytes, envelope: Envelope, headers: list[tuple[str, bytes]]
    ) -> Response:
        scanner = self.scanner
        if isinstance(scanner, ScanPool):
            verdict = await scanner.scan(raw, envelope)  # ScanFailed: tempfailed by __call__
        else:
            verdict = await self._in_thread(
                lambda: scanner.scan(
                    raw,
                    message=envelope.queue_id,
                    client_ip=envelope.client_ip,
                    envelope_from=envelope.mail_from,
                ),
                "scan",
            )
        what = _describe(envelope)
        rules = ",".join(verdict.rules) or "-"
        would = would_have_summary(verdict)  # monitor-mode sources: said, never acted on
        also = f"; would have: {would}" if would else ""
        match verdict.action:
            case Action.REJECT:
                reply = verdict.smtp_reply or "550 5.7.1 Message refused by the threat feeds"
                log.info("%s: reject [%s]%s", what, rules, also)
                return ReplyCode(reply.encode("ascii", "replace") + b"\0")
            case Action.DROP:
                log.info("%s: drop [%s]%s", what, rules, also)
                return Discard()
            case Action.QUARANTINE:
                try:
                    ident = await self._in_thread(
                        lambda: self.quarantine(raw, envelope, verdict), "quarantine"
                    )
                except Exception as exc:
                    log.error("%s: quarantine [%s] failed, tempfailed: %s", what, rules, exc)
                    return TemporaryFailure()
                log.info("%s: quarantine [%s]: kept as %s, discarded%s", what, rules, ident, also)
                return Discard()
            case Action.TAG | Action.HEADER:
                await self._edit(session, verdict, headers)
                log.info("%s: %s [%s]%s", what, verdict.action, rules, also)
                return Accept()
            case _:
                if verdict.matches:
                    log.info("%s: %s [%s]%s", what, verdict.action, rules, also)
                elif would:
                    log.info("%s: %s%s", what, verdict.action, also)
                return Accept()

    async def _in_thread(self, work: Callable[[], _T], what: str) -> _T:
        """``work()`` in a worker thread, within ``scan_timeout`` (``TimeoutError`` beyond;
        the thread is left to finish on its own, its result unused)."""
        with anyio.fail_after(self.scan_timeout):
            return await anyio.to_thread.run_sync(
                work, limiter=self._limiter, abandon_on_cancel=True
            )

    async def _edit(
        self, session: Session, verdict: Verdict, headers: list[tuple[str, bytes]]
    ) -> None:
        """Tag and header rules, as edits the MTA applies (the body is never touched)."""
        if verdict.header is not None:
            ours = [h for h in headers if h[0].lower() == HEADER_NAME.lower()]
            for index in range(len(ours), 0, -1):  # the sender's own, never passed on
                await session.sender.send(ChangeHeader(index, ours[index - 1][0], b""))
            await session.sender.send(InsertHeader(0, HEADER_NAME, _fold(verdict.header)))
        if verdict.subject_prefix is not None:
            subject = next((h for h in headers if h[0].lower() == "subject"), None)
            value = prefixed_subject(
                None if subject is None else subject[1], verdict.subject_prefix
            )
            if value is None:
                return
            if subject is None:
                await session.sender.send(InsertHeader(len(headers), "Subject", value))
            else:
                await session.sender.send(ChangeHeader(1, subject[0], value))


def _describe(envelope: Envelope) -> str:
    rcpts = ",".join(envelope.rcpt_tos)
    return (
        f"{envelope.queue_id or '-'}: client={envelope.client_ip or '-'}"
        f" from=<{envelope.mail_from}> to=<{rcpts}>"
    )


# --- listening ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListenAddress:
    """Where the milter listens: ``inet`` host and port, or a ``unix`` socket path."""

    family: str  # "inet" | "unix"
    host: str = ""
    port: int = 0
    path: Path | None = None

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"


def parse_listen(text: str) -> ListenAddress:
    """``inet:HOST:PORT`` (``inet:[::1]:PORT`` for IPv6) or ``unix:/path``, as Postfix's
    ``smtpd_milters`` names them; ``ValueError`` saying what is wrong otherwise."""
    kind, sep, rest = text.partition(":")
    if not sep or kind not in ("inet", "unix"):
        raise ValueError(
            f"{text!r}: give inet:HOST:PORT (e.g. {DEFAULT_LISTEN}) or unix:/path/to/socket"
        )
    if kind == "unix":
        if not rest.startswith("/"):
            raise ValueError(f"{text!r}: a unix socket needs an absolute path, unix:/path")
        return ListenAddress("unix", path=Path(rest))
    host, sep, port = rest.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: give inet:HOST:PORT with a port from 0 to 65535")
    return ListenAddress("inet", host=host, port=int(port))


async def open_listener(address: ListenAddress) -> anyio.abc.Listener[anyio.abc.ByteStream]:
    """A listening socket on ``address`` (``OSError`` when it cannot be had: a port in use, a
    folder that is not there); a socket file left by a milter that was killed is replaced."""
    if address.family == "unix":
        assert address.path is not None
        path = address.path
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()  # a socket left by a milter that was killed
        except FileNotFoundError:
            pass
        listener: anyio.abc.Listener[anyio.abc.ByteStream] = await anyio.create_unix_listener(path)
        return listener
    return await anyio.create_tcp_listener(local_host=address.host, local_port=address.port)


def bound_address(
    listener: anyio.abc.Listener[anyio.abc.ByteStream], address: ListenAddress
) -> ListenAddress:
    """``address`` with the port the system chose for port 0."""
    if address.family != "inet":
        return address
    port = listener.extra(anyio.abc.SocketAttribute.local_port, address.port)
    return ListenAddress("inet", host=address.host, port=int(port))


async def serve(
    milter: MilterFilter,
    address: ListenAddress,
    *,
    ready: Callable[[ListenAddress], Awaitable[None] | None] | None = None,
    listener: anyio.abc.Listener[anyio.abc.ByteStream] | None = None,
) -> None:
    """Serve ``milter`` on ``address`` until cancelled (on ``listener`` when given, already
    bound there by :func:`open_listener`); ``ready(bound)`` once listening (the port the
    system chose for port 0). A connection that fails (an MTA that offers too little, a
    protocol error) is logged and closed; the others go on."""
    runner = Runner(cast("Filter", milter))

    async def handle(client: anyio.abc.ByteStream) -> None:
        try:
            await runner(client)
        except Exception:
            log.exception("a milter connection failed; closed (the MTA tempfails its mail)")

    if listener is None:
        listener = await open_listener(address)
    try:
        bound = bound_address(listener, address)
        if ready is not None:
            result = ready(bound)
            if result is not None:
                await result
        await listener.serve(handle)
    finally:
        await listener.aclose()
        if address.family == "unix" and address.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(address.path)
