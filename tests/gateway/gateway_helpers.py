"""The gateway's test bench: a real FeedStore with one source per action, an aiosmtpd sink as
the relay, and gateways served on an asyncio loop in a background thread, all on 127.0.0.1.

Each source's observable (a domain) meets a rule of one action, so a message's verdict is
chosen by the URL it carries: ``http://www.<action>.example/`` (see :data:`DOMAINS`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.smtp import SMTP, Envelope, Session

from feedgate.db import engine
from feedgate.feeds.sources import Source
from feedgate.feeds.store import FeedStore
from feedgate.mail.gateway import Gateway, GatewayConfig
from feedgate.mail.maillog import MailLog
from feedgate.mail.policy_store import PolicyStore
from feedgate.mail.quarantine import QuarantineStore
from feedgate.observables import Kind, LayeredContext, Observable

T = TypeVar("T")
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)

#: The domain whose URL in a message makes the verdict that action.
DOMAINS = {
    "reject": "reject.example",
    "drop": "drop.example",
    "quarantine": "quarantine.example",
    "tag": "tag.example",
    "header": "header.example",
    "log": "log.example",
}


def make_store(path: Path) -> FeedStore:
    """A store with one source per action (named after it), its domain polled, and rules
    sending each source's matches to its action (the default rule narrowed to quarantine's)."""
    store = FeedStore(engine(str(path)))
    for action, domain in DOMAINS.items():
        store.add_source(Source(name=action, hostname="otx.example", collection="user_AV"))
        context = LayeredContext(
            {"package_id": f"pkg-{action}", "package_title": f"{action} pulse"},
            {"indicator_title": f"bad {domain}"},
        )
        with store.segment(action) as seg:
            seg.upsert([Observable(Kind.DOMAIN, domain, None, context)], T0)
            seg.finish(T0)
    policy = PolicyStore(store.engine, store.source_names)
    policy.edit_rule("threat-feeds", sources=["quarantine"])
    for action in ("reject", "drop", "tag", "header", "log"):
        policy.add_rule(f"{action}-rule", sources=[action], action=action)
    return store


def message(
    action: str | None = None, *, subject: str = "hello", extra: str = "", eol: str = "\r\n"
) -> bytes:
    """A message whose body links to the action's domain (None: a clean message), with lines
    an SMTP hop could damage (a leading dot, 8-bit text, trailing spaces)."""
    msg = EmailMessage()
    msg["From"] = "friend@sender.test"
    msg["To"] = "user@rcpt.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{action or 'clean'}.{id(msg)}@sender.test>"
    link = f"see http://www.{DOMAINS[action]}/login\n" if action else "no links here\n"
    msg.set_content(f"Hi,\n.a line with a leading dot\n{link}trailing  \n{extra}", cte="8bit")
    return msg.as_bytes(policy=msg.policy.clone(linesep=eol))


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool = False  # whether it came over STARTTLS


@dataclass
class Sink:
    """The relay in the tests: keeps what it accepted; refuses what it is told to."""

    received: list[Received] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> reply
    data_reply: str | None = None  # e.g. "554 5.6.0 no thanks"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        self.received.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                tls=session.ssl is not None,
            )
        )
        return "250 2.0.0 sink took it"


class _LongLines(SMTP):
    line_length_limit = (
        1024 * 1024
    )  # the gateway takes any line length: its long lines must reach the sink


class Bench:
    """An asyncio loop in a thread, serving sinks and gateways for the tests' sync clients."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve_sink(
        self,
        sink: Sink,
        port: int = 0,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        server_class: type[SMTP] | None = None,
    ) -> tuple[asyncio.Server, int]:
        """A sink on 127.0.0.1; with ``tls_context`` it offers STARTTLS (and with
        ``require_starttls`` refuses mail without it, 530); ``server_class`` changes how it
        speaks SMTP."""
        speaker = server_class or _LongLines

        async def start() -> asyncio.Server:
            loop = asyncio.get_running_loop()
            return await loop.create_server(
                lambda: speaker(
                    sink,
                    hostname="sink.test",
                    loop=loop,
                    tls_context=tls_context,
                    require_starttls=require_starttls,
                ),
                "127.0.0.1",
                port,
            )

        server = self.run(start())
        return server, server.sockets[0].getsockname()[1]

    def close_server(self, server: asyncio.Server) -> None:
        async def close() -> None:
            server.close()
            await server.wait_closed()

        self.run(close())

    def start_gateway(
        self, db: Path, config: GatewayConfig, mail_log: Path | None = None
    ) -> tuple[Gateway, int, list[int]]:
        quarantine = QuarantineStore(engine(str(db)))
        gateway = Gateway(str(db), config, quarantine, MailLog(mail_log) if mail_log else None)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        pids = self.run(gateway.start(sock))
        return gateway, sock.getsockname()[1], pids

    def stop_gateway(self, gateway: Gateway) -> None:
        self.run(gateway.stop())
        if gateway.mail_log is not None:
            gateway.mail_log.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


def self_signed(folder: Path, common_name: str = "gateway.test") -> ssl.SSLContext:
    """A server context with a self-signed certificate for 127.0.0.1 (``folder``/cert.pem,
    key.pem), made here: the gateway's own STARTTLS and the TLS sinks of the relay tests."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@contextmanager
def bench() -> Iterator[Bench]:
    b = Bench()
    try:
        yield b
    finally:
        b.close()
