"""The SMTP filter: ``feedgate gateway``, an aiosmtpd server between a mail system and its relay.

A mail system hands a message over (Postfix's ``content_filter``, or a smart host setting); at
the end of DATA the message is scanned with the session's real peer IP and envelope
(:meth:`feedgate.mail.scanner.Scanner.scan`, the same decision as ``feedgate scan`` and the
milter) and the verdict acts:

- ``reject``: the verdict's ``550 5.7.1`` (source names and kinds only);
- ``drop``: 250, nothing relayed; ``quarantine``: 250 once the quarantine committed;
- ``tag``/``header``: the rewritten message relayed (:mod:`feedgate.mail.rewrite`: header block
  only); ``deliver``/``log``: the bytes relayed as received.

**Nothing is lost**: the reply to the final dot is sent only after the relay answered (aiosmtpd
awaits ``handle_DATA``), so 250 means the relay (or the quarantine) has the message; a relay that
refuses or is unreachable gives 451 (a 5xx from the relay is passed on), and so does a scan that
fails or passes its time limit, unless ``on_error="accept"`` (then the message is relayed as
received and the failure logged). A client that goes away before the final dot leaves nothing
behind: aiosmtpd calls ``handle_DATA`` only for a complete message. (A client that goes away
*after* the dot but before reading our 250 will send again: SMTP's own duplicate window.)

Scanning runs in worker processes (:class:`~feedgate.mail.scan_pool.ScanPool`, shared with
the milter), so every core scans while the event loop only moves bytes; a scan that fails or
passes its time limit gets the scan-failure answer. Connections beyond ``max_connections``
get ``421``.

**Behind Postfix's content_filter** the peer is Postfix itself, so the gateway speaks
XFORWARD (:mod:`feedgate.mail.xforward`) with the clients in ``xforward_from`` (loopback by
default; announced in EHLO to them only, ``550 5.7.0`` from anyone else): the scan then sees
the original client's address (a ``client-ip`` rule works) and HELO, and the message carries
Postfix's queue id (``IDENT``) in the mail log and the match log, so Postfix's log can be
grepped for it. The attributes hold for one mail transaction (aiosmtpd's envelope, renewed at
the final dot, RSET, HELO/EHLO and STARTTLS), and are passed on to a relay that announces
XFORWARD, so Postfix's reinjection smtpd logs the original client too; without XFORWARD the
gateway passes on its own client (peer address, port, HELO) and queue id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import secrets
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from aiosmtpd.smtp import SMTP, Session, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from . import relay as relaying
from .limits import MAX_MESSAGE_BYTES
from .maillog import MailLog, entry
from .model import Action, Envelope
from .policy import Verdict, would_have_summary
from .quarantine import QuarantineStore
from .rewrite import rewrite
from .scan_pool import ScanFailed, ScanPool
from .smtp_data import read_data
from .xforward import (
    DEFAULT_TRUSTED,
    EHLO_LINE,
    IN_TRANSACTION_REPLY,
    OK_REPLY,
    SYNTAX_REPLY,
    UNAUTHORIZED_REPLY,
    Forwarded,
    IPNetwork,
    XforwardError,
    parse,
    trusted,
    wire_address,
)

__all__ = ["DEFAULT_SCAN_TIMEOUT", "Gateway", "GatewayConfig", "OnError", "queue_id"]

log = logging.getLogger("feedgate.gateway")

OnError = Literal["tempfail", "accept"]
#: Seconds a scan may take before the message gets the scan-failure answer.
DEFAULT_SCAN_TIMEOUT: Final = 60.0
#: Seconds between quarantine expiries run by the gateway.
EXPIRE_EVERY: Final = 3600.0
#: Longest line taken in DATA: RFC 5321 says 1000, but real mail has longer lines and refusing
#: them would bounce it; the size limit still bounds the whole message.
_LINE_LIMIT: Final = 64 * 1024


def queue_id() -> str:
    """A new queue id: 12 hex characters, in the 250 reply and every log line of the message."""
    return secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """How a gateway runs (``feedgate gateway``'s options)."""

    relay: tuple[str, int]
    on_error: OnError = "tempfail"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_connections: int = 100
    scan_timeout: float = DEFAULT_SCAN_TIMEOUT
    relay_timeout: float = relaying.DEFAULT_TIMEOUT
    max_message_bytes: int = MAX_MESSAGE_BYTES
    hostname: str | None = None
    tls_context: ssl.SSLContext | None = None
    expire_every: float = EXPIRE_EVERY
    #: Who may tell the original client with XFORWARD (Postfix's content_filter: loopback).
    xforward_from: tuple[IPNetwork, ...] = DEFAULT_TRUSTED
    #: TLS towards the relay (``--relay-tls``); None: ``may``, STARTTLS when offered.
    relay_tls: relaying.RelayTls | None = None

    @property
    def relay_text(self) -> str:
        host, port = self.relay
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---- the SMTP side --------------------------------------------------------------------------


def _peer_ip(peer: Any) -> str | None:
    """The client's IP from aiosmtpd's ``session.peer`` (an IPv4-mapped IPv6 as IPv4)."""
    if not isinstance(peer, tuple) or not peer:
        return None
    try:
        ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class _Transaction(SmtpEnvelope):
    """aiosmtpd's envelope with the transaction's XFORWARD attributes: aiosmtpd makes a new
    one at the final dot, RSET, HELO/EHLO and STARTTLS, which is when XFORWARD's attributes
    end."""

    def __init__(self) -> None:
        super().__init__()
        self.forwarded: Forwarded | None = None


class _Session(SMTP):
    """aiosmtpd's SMTP protocol, counting connections (``421`` beyond the limit) and taking
    XFORWARD from trusted clients."""

    line_length_limit = _LINE_LIMIT

    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        self._gateway = gateway
        self._counted = False
        self._refused = False
        super().__init__(gateway, **kwargs)

    def _create_envelope(self) -> SmtpEnvelope:
        return _Transaction()

    @property
    def xforward_allowed(self) -> bool:
        """Whether this client may send XFORWARD (its address is in ``xforward_from``)."""
        peer = _peer_ip(self.session.peer) if self.session is not None else None
        return trusted(peer, self._gateway.config.xforward_from)

    @syntax("XFORWARD attribute=value ...", when="xforward_allowed")
    async def smtp_XFORWARD(self, arg: str | None) -> None:
        """The original client's attributes for the next mail transaction (module doc); the
        checks in Postfix's order: in a transaction, no argument, not allowed, bad syntax."""
        envelope = self.envelope
        assert isinstance(envelope, _Transaction)
        if envelope.mail_from is not None:
            await self.push(IN_TRANSACTION_REPLY)
            return
        if not (arg or "").split():
            await self.push(SYNTAX_REPLY)
            return
        if not self.xforward_allowed:
            assert self.session is not None
            log.warning("XFORWARD refused from %s (not in --xforward-from)", self.session.peer)
            await self.push(UNAUTHORIZED_REPLY)
            return
        try:
            update = parse(arg)
        except XforwardError as exc:
            await self.push(exc.reply)
            return
        envelope.forwarded = (envelope.forwarded or Forwarded()).updated(update)
        await self.push(OK_REPLY)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # a new connection (not the switch to TLS)
            if self._gateway.connections >= self._gateway.config.max_connections:
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(b"421 4.7.0 Too many connections; try again later\r\n")
                transport.close()
                return
            self._gateway.connections += 1
            self._gateway.sessions.add(self)
            self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._gateway.connections -= 1
            self._gateway.sessions.discard(self)
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()

    async def smtp_DATA(self, arg: str) -> None:
        """DATA read in large pieces (:mod:`feedgate.mail.smtp_data`), not aiosmtpd's line at a
        time, which cost the event loop as much as a scan; the checks before ``354`` and the
        replies are aiosmtpd's, and the handler is ours, called directly."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            block = await read_data(self._reader, self.data_size_limit)
        except asyncio.IncompleteReadError:  # the client went away mid-DATA: no message
            self._writer.close()
            return
        except asyncio.CancelledError:  # aiosmtpd cancels the session when the peer goes
            self._writer.close()
            raise
        if block.content is None:
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push("552 5.3.4 Message too big for the gateway")
            return
        self.envelope.content = self.envelope.original_content = block.content
        gateway = self._gateway
        gateway.answering.add(self)
        try:
            reply = await gateway.handle_DATA(self, self.session, self.envelope)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            await self.push(reply)
        finally:
            gateway.answering.discard(self)
            gateway.answered.set()
        if gateway.stopping and self.transport is not None:  # the reply is out: now go
            self.transport.close()


def _origin(session: Session, smtp: SmtpEnvelope) -> tuple[Envelope, dict[str, str]]:
    """The message's envelope as the scan and the logs see it, and the XFORWARD attributes to
    pass on: the forwarded client when XFORWARD gave one (never mixed with the session's),
    else the session's own; the upstream queue id when given, else a new one of ours."""
    forwarded = smtp.forwarded if isinstance(smtp, _Transaction) else None
    ident = forwarded.ident if forwarded is not None else None
    envelope = Envelope(
        mail_from=str(smtp.mail_from or ""),
        rcpt_tos=tuple(str(r) for r in smtp.rcpt_tos),
        client_ip=_peer_ip(session.peer),
        helo=session.host_name,
        queue_id=ident or queue_id(),
    )
    if forwarded is not None and forwarded.replaces_client:
        envelope = dataclasses.replace(envelope, client_ip=forwarded.addr, helo=forwarded.helo)
    if forwarded is not None:
        return envelope, forwarded.attributes()
    assert envelope.queue_id is not None
    own = {"PROTO": "ESMTP" if session.extended_smtp else "SMTP", "IDENT": envelope.queue_id}
    if envelope.client_ip is not None:
        own["ADDR"] = wire_address(envelope.client_ip)
        if isinstance(session.peer, tuple) and len(session.peer) > 1:
            own["PORT"] = str(session.peer[1])
    if envelope.helo:
        own["HELO"] = envelope.helo
    return envelope, own


class Gateway:
    """The aiosmtpd handler and its server (module doc). ``db`` is the manager's database the
    workers open; ``quarantine`` and ``mail_log`` are this process's."""

    def __init__(
        self,
        db: str,
        config: GatewayConfig,
        quarantine: QuarantineStore,
        mail_log: MailLog | None = None,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.config = config
        self.quarantine = quarantine
        self.mail_log = mail_log
        self.connections = 0
        #: The connections open now (closed by :meth:`stop`).
        self.sessions: set[SMTP] = set()
        #: Sessions between a message's final dot and their reply to it (:meth:`stop` waits).
        self.answering: set[SMTP] = set()
        #: Set whenever a session in :attr:`answering` has sent its reply.
        self.answered = asyncio.Event()
        #: True once :meth:`stop` began: a session that has answered closes its connection.
        self.stopping = False
        self._now = now
        self.pool = ScanPool(db, config.workers, config.scan_timeout)
        self._server: asyncio.Server | None = None
        self._expiry: asyncio.Task[None] | None = None

    # -- the pool --

    async def ready(self) -> list[int]:
        """Wait until a replaced pool's workers are up; their pids (:meth:`ScanPool.ready`)."""
        return await self.pool.ready()

    @property
    def worker_pids(self) -> list[int]:
        """The pids of the current pool's workers (after :meth:`start` or :meth:`ready`)."""
        return self.pool.worker_pids

    async def _scan(self, raw: bytes, envelope: Envelope) -> Verdict:
        return await self.pool.scan(raw, envelope)

    # -- the server --

    def _protocol(self) -> SMTP:
        return _Session(
            self,
            data_size_limit=self.config.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.config.hostname,
            ident="feedgate gateway",
            tls_context=self.config.tls_context,
            loop=asyncio.get_running_loop(),
        )

    async def start(self, sock: socket.socket) -> list[int]:
        """Start the workers, then serve on the listening ``sock``; the workers' pids."""
        pids = await self.pool.start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, sock=sock)
        self._expiry = asyncio.create_task(self._expire_periodically())
        return pids

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self, grace: float | None = None) -> None:
        """Stop listening, let the messages already taken be answered, close every connection
        and let the workers go.

        A message whose final dot has come is scanned and relayed to its end, for up to
        ``grace`` seconds (default: the scan and relay timeouts together), and its client gets
        the reply: cutting it off after the relay had it would make its sender send it again,
        a duplicate (SMTP's own window, opened by us). Connections that are idle or still
        sending a message are closed at once: nothing of theirs was accepted, their senders
        keep it. Closing the connections is also what lets ``wait_closed`` return on Python
        3.12+, which waits for every connection."""
        self.stopping = True
        if self._expiry is not None:
            self._expiry.cancel()
        if self._server is not None:
            self._server.close()
            for session in list(self.sessions):
                if session not in self.answering and session.transport is not None:
                    session.transport.close()
            await self._let_answer(
                self.config.scan_timeout + self.config.relay_timeout if grace is None else grace
            )
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.close()
            await self._server.wait_closed()
            self._server = None
        self.pool.close()

    async def _let_answer(self, grace: float) -> None:
        """Wait, at most ``grace`` seconds, until no session is between a final dot and its
        reply."""
        loop = asyncio.get_running_loop()
        end = loop.time() + grace
        while self.answering and (left := end - loop.time()) > 0:
            self.answered.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.answered.wait(), left)
        if self.answering:
            log.warning(
                "stopped with %d message(s) unanswered after %g s; their senders retry",
                len(self.answering),
                grace,
            )

    async def _expire_periodically(self) -> None:
        while True:
            try:
                removed = await asyncio.to_thread(self.quarantine.expire)
                if removed:
                    log.info("quarantine: %d messages past retention deleted", removed)
            except Exception:  # the database away for a while: try again next time
                log.exception("quarantine expiry failed")
            await asyncio.sleep(self.config.expire_every)

    # -- the message --

    def _log(
        self,
        envelope: Envelope,
        action: str,
        reply: str,
        verdict: Verdict | None = None,
        note: str | None = None,
    ) -> None:
        fields = entry(envelope, action, reply, verdict, at=self._now(), note=note)
        would = would_have_summary(verdict) if verdict is not None else None
        log.info(
            "%s %s %s%s",
            envelope.queue_id,
            action,
            reply,
            f"; would have: {would}" if would else "",
        )
        if self.mail_log is not None:
            try:
                self.mail_log.write(fields)
            except OSError:
                log.exception("cannot write the mail log")

    async def _relay(
        self, raw: bytes, envelope: Envelope, xforward: Mapping[str, str]
    ) -> relaying.RelayReply:
        host, port = self.config.relay
        return await asyncio.to_thread(
            relaying.send,
            host,
            port,
            envelope,
            raw,
            timeout=self.config.relay_timeout,
            local_hostname=self.config.hostname,
            xforward=xforward,
            tls=self.config.relay_tls,
        )

    def _answer(self, reply: relaying.RelayReply, envelope: Envelope) -> str:
        if reply.accepted:
            return f"250 2.0.0 Ok: queued as {envelope.queue_id}"
        return reply.reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: SmtpEnvelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """aiosmtpd's EHLO reply, with XFORWARD announced to a client allowed to use it."""
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        if isinstance(server, _Session) and server.xforward_allowed:
            responses.insert(len(responses) - 1, f"250-{EHLO_LINE}")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, smtp: SmtpEnvelope) -> str:
        """The reply to the final dot, sent only once it is true (module doc)."""
        raw = smtp.original_content or b""
        envelope, xforward = _origin(session, smtp)
        try:
            verdict = await self._scan(raw, envelope)
        except ScanFailed as exc:
            return await self._scan_failed(raw, envelope, xforward, str(exc))
        return await self._act(raw, envelope, xforward, verdict)

    async def _scan_failed(
        self, raw: bytes, envelope: Envelope, xforward: Mapping[str, str], why: str
    ) -> str:
        if self.config.on_error == "tempfail":
            reply = f"451 4.3.0 Message not scanned ({envelope.queue_id}); try again later"
            self._log(envelope, "tempfail", reply, note=f"scan failed: {why}")
            return reply
        relayed = await self._relay(raw, envelope, xforward)
        reply = self._answer(relayed, envelope)
        self._log(
            envelope,
            str(Action.DELIVER) if relayed.accepted else "tempfail",
            reply if relayed.accepted else relayed.reply,
            note=f"scan failed: {why}; relayed unscanned (--on-error accept)",
        )
        return reply

    async def _act(
        self, raw: bytes, envelope: Envelope, xforward: Mapping[str, str], verdict: Verdict
    ) -> str:
        action = verdict.action
        if action is Action.REJECT:
            reply = verdict.smtp_reply or "550 5.7.1 Message refused"
            self._log(envelope, str(action), reply, verdict)
            return reply
        # A drop and a quarantine are 250 as a delivery is; the text says which, so the log of
        # the mail system that handed the message over (the gateway's only client) shows it.
        if action is Action.DROP:
            reply = f"250 2.0.0 Ok: queued as {envelope.queue_id} (dropped by policy)"
            self._log(envelope, str(action), reply, verdict, note="dropped: not relayed")
            return reply
        if action is Action.QUARANTINE:
            try:
                kept = await asyncio.to_thread(
                    self.quarantine.add,
                    raw,
                    envelope,
                    verdict,
                    relay=self.config.relay_text,
                    tls=self.config.relay_tls,  # a release goes out as the gateway relays
                )
            except Exception as exc:  # the database away: the sender keeps the message
                reply = f"451 4.3.0 Quarantine unavailable ({envelope.queue_id}); try again later"
                self._log(envelope, "tempfail", reply, verdict, note=f"quarantine failed: {exc}")
                return reply
            reply = f"250 2.0.0 Ok: queued as {envelope.queue_id} (quarantined as {kept})"
            self._log(envelope, str(action), reply, verdict, note=f"quarantine id {kept}")
            return reply
        out = raw
        if verdict.subject_prefix is not None or verdict.header is not None:
            out = rewrite(raw, subject_prefix=verdict.subject_prefix, header=verdict.header)
        relayed = await self._relay(out, envelope, xforward)
        reply = self._answer(relayed, envelope)
        self._log(
            envelope,
            str(action) if relayed.accepted else "tempfail",
            reply,
            verdict,
            note=None if relayed.accepted else f"relay: {relayed.reply}",
        )
        return reply
