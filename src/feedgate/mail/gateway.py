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

Scanning runs in worker processes (``concurrent.futures.ProcessPoolExecutor``, spawned, each
with its own store connection and :class:`Scanner`, built by :func:`_init_worker`), so every
core scans while the event loop only moves bytes; at most ``workers`` scans run at once and the
others wait their turn without counting against the time limit. A pool that breaks (a worker
killed) or a scan past its limit (the worker is stuck) is replaced by a fresh one; the messages
it held get the scan-failure answer. Connections beyond ``max_connections`` get ``421``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import logging
import multiprocessing
import os
import secrets
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from . import relay as relaying
from .limits import MAX_MESSAGE_BYTES
from .maillog import MailLog, entry
from .model import Action, Envelope
from .policy import Verdict
from .quarantine import QuarantineStore
from .rewrite import rewrite

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
    #: TLS towards the relay (``--relay-tls``); None: ``may``, STARTTLS when offered.
    relay_tls: relaying.RelayTls | None = None

    @property
    def relay_text(self) -> str:
        host, port = self.relay
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# ---- the worker processes -------------------------------------------------------------------

_worker_scanner: Any = None  # the Scanner of this worker process (set by _init_worker)


def _init_worker(db: str) -> None:
    """Open the store and build this process's own Scanner (a pool initializer). Every
    message that passes goes into the mail index, so a later poll's observables are matched
    against it (the retro-scan of ``feedgate serve``)."""
    global _worker_scanner
    from feedgate.db import engine
    from feedgate.feeds.store import FeedStore

    from .mailindex import MailIndex
    from .policy_store import PolicyStore
    from .scanner import Scanner

    store = FeedStore(engine(db))
    _worker_scanner = Scanner(
        store,
        PolicyStore(store.engine, store.source_names),
        log=True,
        mail_index=MailIndex(store.engine),
    )


def _warm() -> int:
    """Read the snapshot and the policy once, so the first message does not wait for them."""
    _worker_scanner.scan(b"Subject: feedgate warm-up\r\n\r\n\r\n")
    return os.getpid()


def _scan(raw: bytes, ident: str, client_ip: str | None, mail_from: str) -> Verdict:
    verdict: Verdict = _worker_scanner.scan(
        raw, message=ident, client_ip=client_ip, envelope_from=mail_from
    )
    return verdict


# ---- the SMTP side --------------------------------------------------------------------------


class ScanFailed(Exception):
    """The scan raised, or passed its time limit."""


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


class _Session(SMTP):
    """aiosmtpd's SMTP protocol, counting connections (``421`` beyond the limit)."""

    line_length_limit = _LINE_LIMIT

    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        self._gateway = gateway
        self._counted = False
        self._refused = False
        super().__init__(gateway, **kwargs)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:  # a new connection (not the switch to TLS)
            if self._gateway.connections >= self._gateway.config.max_connections:
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(b"421 4.7.0 Too many connections; try again later\r\n")
                transport.close()
                return
            self._gateway.connections += 1
            self._counted = True
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._gateway.connections -= 1
        super().connection_lost(error)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False
        return super().eof_received()


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
        self._now = now
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None
        self._server: asyncio.Server | None = None
        self._expiry: asyncio.Task[None] | None = None
        self._warming: asyncio.Future[list[int]] | None = None
        #: The pids of the current pool's workers (after :meth:`start` or :meth:`ready`).
        self.worker_pids: list[int] = []

    # -- the pool --

    def _new_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.config.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.db,),
        )

    def _replace_pool(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        """A fresh pool instead of ``broken`` (once: several failing scans see one pool)."""
        if self._pool is not broken:
            return
        self._pool = self._new_pool()
        for process in list((getattr(broken, "_processes", None) or {}).values()):
            process.kill()  # a stuck scan: its worker would hold a slot for good
        broken.shutdown(wait=False, cancel_futures=True)
        self._warming = asyncio.ensure_future(self._start_workers())

    async def ready(self) -> list[int]:
        """Wait until a replaced pool's workers are up (at once if none is starting); their
        pids. What a test awaits instead of sleeping."""
        if self._warming is not None:
            try:
                await self._warming
            except Exception:
                log.exception("the new scanning workers failed to start")
        return self.worker_pids

    async def _start_workers(self) -> list[int]:
        """Start the workers and have each read the store once; their pids. Raises what
        opening the store raises, so a bad database is said at start, not per message."""
        assert self._pool is not None
        loop = asyncio.get_running_loop()
        pids = await asyncio.gather(
            *(loop.run_in_executor(self._pool, _warm) for _ in range(self.config.workers))
        )
        self.worker_pids = sorted(set(pids))
        return self.worker_pids

    async def _scan(self, raw: bytes, envelope: Envelope) -> Verdict:
        assert self._slots is not None and self._pool is not None
        loop = asyncio.get_running_loop()
        async with self._slots:
            pool = self._pool
            try:
                future = loop.run_in_executor(
                    pool,
                    _scan,
                    raw,
                    envelope.queue_id or "",
                    envelope.client_ip,
                    envelope.mail_from,
                )
                return await asyncio.wait_for(future, self.config.scan_timeout)
            except TimeoutError:
                self._replace_pool(pool)
                raise ScanFailed(f"the scan took over {self.config.scan_timeout:g} s") from None
            except concurrent.futures.BrokenExecutor as exc:
                self._replace_pool(pool)
                raise ScanFailed(f"a scanning worker died ({exc})") from None
            except Exception as exc:  # the scanner's own failure (a database error, ...)
                raise ScanFailed(f"{type(exc).__name__}: {exc}") from None

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
        self._pool = self._new_pool()
        self._slots = asyncio.Semaphore(self.config.workers)
        try:
            pids = await self._start_workers()
        except BaseException:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, sock=sock)
        self._expiry = asyncio.create_task(self._expire_periodically())
        return pids

    async def serve_forever(self) -> None:
        assert self._server is not None
        await self._server.serve_forever()

    async def stop(self) -> None:
        """Stop listening and let the workers go (a message in flight gets no 250)."""
        if self._expiry is not None:
            self._expiry.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

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
        log.info("%s %s %s", envelope.queue_id, action, reply)
        if self.mail_log is not None:
            try:
                self.mail_log.write(fields)
            except OSError:
                log.exception("cannot write the mail log")

    async def _relay(self, raw: bytes, envelope: Envelope) -> relaying.RelayReply:
        host, port = self.config.relay
        return await asyncio.to_thread(
            relaying.send,
            host,
            port,
            envelope,
            raw,
            timeout=self.config.relay_timeout,
            local_hostname=self.config.hostname,
            tls=self.config.relay_tls,
        )

    def _answer(self, reply: relaying.RelayReply, envelope: Envelope) -> str:
        if reply.accepted:
            return f"250 2.0.0 Ok: queued as {envelope.queue_id}"
        return reply.reply

    async def handle_DATA(self, server: SMTP, session: Session, smtp: SmtpEnvelope) -> str:
        """The reply to the final dot, sent only once it is true (module doc)."""
        raw = smtp.original_content or b""
        envelope = Envelope(
            mail_from=str(smtp.mail_from or ""),
            rcpt_tos=tuple(str(r) for r in smtp.rcpt_tos),
            client_ip=_peer_ip(session.peer),
            helo=session.host_name,
            queue_id=queue_id(),
        )
        try:
            verdict = await self._scan(raw, envelope)
        except ScanFailed as exc:
            return await self._scan_failed(raw, envelope, str(exc))
        return await self._act(raw, envelope, verdict)

    async def _scan_failed(self, raw: bytes, envelope: Envelope, why: str) -> str:
        if self.config.on_error == "tempfail":
            reply = f"451 4.3.0 Message not scanned ({envelope.queue_id}); try again later"
            self._log(envelope, "tempfail", reply, note=f"scan failed: {why}")
            return reply
        relayed = await self._relay(raw, envelope)
        reply = self._answer(relayed, envelope)
        self._log(
            envelope,
            str(Action.DELIVER) if relayed.accepted else "tempfail",
            reply if relayed.accepted else relayed.reply,
            note=f"scan failed: {why}; relayed unscanned (--on-error accept)",
        )
        return reply

    async def _act(self, raw: bytes, envelope: Envelope, verdict: Verdict) -> str:
        action = verdict.action
        if action is Action.REJECT:
            reply = verdict.smtp_reply or "550 5.7.1 Message refused"
            self._log(envelope, str(action), reply, verdict)
            return reply
        if action is Action.DROP:
            reply = f"250 2.0.0 Ok: queued as {envelope.queue_id}"
            self._log(envelope, str(action), reply, verdict, note="dropped: not relayed")
            return reply
        if action is Action.QUARANTINE:
            try:
                kept = await asyncio.to_thread(
                    self.quarantine.add, raw, envelope, verdict, relay=self.config.relay_text
                )
            except Exception as exc:  # the database away: the sender keeps the message
                reply = f"451 4.3.0 Quarantine unavailable ({envelope.queue_id}); try again later"
                self._log(envelope, "tempfail", reply, verdict, note=f"quarantine failed: {exc}")
                return reply
            reply = f"250 2.0.0 Ok: queued as {envelope.queue_id}"
            self._log(envelope, str(action), reply, verdict, note=f"quarantine id {kept}")
            return reply
        out = raw
        if verdict.subject_prefix is not None or verdict.header is not None:
            out = rewrite(raw, subject_prefix=verdict.subject_prefix, header=verdict.header)
        relayed = await self._relay(out, envelope)
        reply = self._answer(relayed, envelope)
        self._log(
            envelope,
            str(action) if relayed.accepted else "tempfail",
            reply,
            verdict,
            note=None if relayed.accepted else f"relay: {relayed.reply}",
        )
        return reply
