"""Hand a message's bytes to the next SMTP server, and say what it answered in our own words.

The gateway answers its client only after the relay answered (design.md "Mail": nothing is
lost), so every way the relay can fail maps to a reply that keeps the message at the sender:

- the relay cannot be reached, times out, or drops the connection: ``451 4.4.1`` (the sending
  MTA keeps the message and retries);
- the relay refuses the connection in its greeting (``421``, or ``554``, "no service here"):
  ``451 4.4.0`` naming its words, whatever its code: a greeting says nothing about the message,
  so a relay that is closed or misconfigured delays mail but never bounces it;
- a 4xx at any step: ``451 4.4.x`` naming the relay's own words;
- a 5xx at MAIL or DATA: the 5xx passed on (the relay will never take it; the sender bounces);
- RCPT: the message is sent only when the relay took *every* recipient. Refused all with 5xx:
  the first 5xx passed on; any other refusal (some refused, or a 4xx): nothing is sent and the
  answer is ``451 4.4.x``, so the sender retries the whole message later (SMTP has one DATA
  reply for all recipients: accepting for some would lose or double the others).

The bytes are sent as they are (``smtplib`` only dot-stuffs them), so a message relayed is the
message received, byte for byte.

A relay that announces XFORWARD (Postfix's reinjection smtpd with
``smtpd_authorized_xforward_hosts``) is told the attributes given in ``xforward`` before MAIL
FROM, those it announced, so it logs the original client rather than the gateway. A refusal
of XFORWARD costs only that log detail: the message goes on (as Postfix's own client does).

TLS on this leg is what MTAs do, named after Postfix's ``smtp_tls_security_level`` so that an
admin who knows one knows the other (:class:`RelayTls`):

- ``may`` (the default, as Postfix's for most MTAs): STARTTLS when the relay offers it, with no
  certificate check (an untrusted certificate still beats plain text against a passive
  listener); when the handshake fails, the message is sent again in plain text on a new
  connection (Postfix's documented fallback, for relays with broken TLS);
- ``encrypt``: TLS or nothing, the certificate not checked (Postfix's ``encrypt``);
- ``verify``: TLS or nothing, the certificate checked against the system's CAs (or a CA file
  given, which then alone is trusted, whatever ``SSL_CERT_FILE`` says) and the relay's host name
  or IP address matched (Postfix's ``verify``; its ``secure`` differs only for MX lookups,
  which a fixed relay has none of);
- ``none``: never STARTTLS.

Required TLS that fails is ``451 4.7.4`` (not offered, or STARTTLS refused) or ``451 4.7.5``
(handshake or certificate failed), so the sender keeps the message until the relay is fixed.
A relay that answers ``530`` (it requires TLS or authentication we did not give) is ``451 4.7.0``
too: our configuration, not the message, is at fault, so it must not bounce.

``deadline`` bounds the whole conversation (the per-step ``timeout`` alone lets a slow relay
take any number of steps' worth): the quarantine's release gives it, so a send never outlives
the claim that keeps other nodes from sending the same message.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .model import Envelope
from .xforward import commands

log = logging.getLogger("feedgate.relay")

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_TLS",
    "TLS_LEVELS",
    "RelayAddressError",
    "RelayReply",
    "RelayTls",
    "RelayTlsError",
    "TlsLevel",
    "parse_address",
    "relay_tls",
    "send",
]

#: Seconds the relay may take for any one step (connect, a command, the data).
DEFAULT_TIMEOUT: Final = 60.0
_MAX_TEXT: Final = 300

#: TLS on the relay leg, after Postfix's ``smtp_tls_security_level`` (module doc).
TlsLevel = Literal["none", "may", "encrypt", "verify"]
TLS_LEVELS: Final[tuple[TlsLevel, ...]] = ("none", "may", "encrypt", "verify")
DEFAULT_TLS: Final[TlsLevel] = "may"


class RelayAddressError(ValueError):
    """A relay address that is not ``HOST:PORT``."""


class RelayTlsError(ValueError):
    """A relay TLS setting that cannot be used (an unknown level, an unreadable CA file)."""


def parse_address(
    text: str, default_port: int | None = None, *, any_port: bool = False
) -> tuple[str, int]:
    """``(host, port)`` from ``HOST:PORT`` (``[v6]:PORT`` for IPv6; port 0, any free port,
    only with ``any_port``: a listening address). Raises :class:`RelayAddressError` saying
    what to give."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = value, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text and default_port is not None:
        port_text = str(default_port)
    if not host or not port_text.isdigit() or not (0 if any_port else 1) <= int(port_text) < 65536:
        raise RelayAddressError(
            f"{value!r} is not HOST:PORT; give e.g. 127.0.0.1:10026 ([::1]:10026 for IPv6)"
        )
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class RelayTls:
    """How :func:`send` uses TLS (module doc); made by :func:`relay_tls`, which builds the
    client ``context`` once (a verifying one reads the CA certificates)."""

    level: TlsLevel = DEFAULT_TLS
    ca_file: str | None = None
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @property
    def required(self) -> bool:
        """Whether the message may go only over TLS (``encrypt``, ``verify``)."""
        return self.level in ("encrypt", "verify")


def relay_tls(level: str = DEFAULT_TLS, ca_file: str | None = None) -> RelayTls:
    """The :class:`RelayTls` of a level (``none``, ``may``, ``encrypt``, ``verify``) and, for
    ``verify``, a CA file (PEM) trusted instead of the system's. Raises :class:`RelayTlsError`
    saying what to give."""
    name = str(level).strip().lower()
    if name not in TLS_LEVELS:
        raise RelayTlsError(
            f"relay TLS level {level!r} is not one of {', '.join(TLS_LEVELS)}"
            " (Postfix's smtp_tls_security_level names)"
        )
    chosen: TlsLevel = name  # narrowed by the check above
    if ca_file is not None and chosen != "verify":
        raise RelayTlsError(
            f"a CA file is used only to verify the relay's certificate: give --relay-tls verify"
            f" with it, or leave it out for {chosen}"
        )
    if chosen == "none":
        return RelayTls(chosen)
    if chosen != "verify":
        return RelayTls(chosen, context=_unverified())
    try:
        context = ssl.create_default_context(cafile=ca_file)  # given: it alone is trusted
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RelayTlsError(
            f"cannot read the CA file {ca_file}: {reason}; give the PEM certificate(s) that"
            " signed the relay's certificate"
        ) from None
    return RelayTls(chosen, ca_file, context)


@functools.cache
def _unverified() -> ssl.SSLContext:
    """The client context of ``may`` and ``encrypt``: encryption without a certificate check
    (Postfix's: a relay's certificate is rarely from a public CA)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@functools.cache
def _opportunistic() -> RelayTls:
    return RelayTls("may", context=_unverified())


@dataclass(frozen=True, slots=True)
class RelayReply:
    """What to answer the client after a relay attempt: ``code`` and the whole ``reply`` line
    (``250 2.0.0 ...``); ``accepted`` when the relay took the message for every recipient.

    ``detail`` is set when the reply is ours rather than the relay's (it was unreachable, its
    TLS failed, it refused some recipients, ...): what happened, in words without a reply
    code, for those who report to a person rather than to an SMTP client (a release must not
    say the relay "answered 451" when nothing answered). None: ``reply`` is the relay's own
    answer, passed on."""

    code: int
    reply: str
    detail: str | None = None

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


def _words(message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    out = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return out if len(out) <= _MAX_TEXT else out[: _MAX_TEXT - 3] + "..."


def _tempfail(detail: str, status: str = "4.4.1") -> RelayReply:
    return RelayReply(451, f"451 {status} {detail}; try again later", detail)


def _passed_on(code: int, message: bytes | str, where: str, relay: str) -> RelayReply:
    """The relay's refusal in our reply: a 5xx as it is (a permanent refusal stays one), a 4xx
    (or anything odd) as 451; a 530 as 451 (module doc: our configuration, not the message)."""
    words = _words(message)
    if code == 530:
        return _tempfail(
            f"relay {relay} requires TLS or authentication ({code} {words}) at {where}", "4.7.0"
        )
    if 500 <= code < 600:
        return RelayReply(code, f"{code} {words}" if words else f"{code} 5.0.0 refused by {relay}")
    return _tempfail(f"relay {relay} answered {code} at {where}: {words}", "4.4.0")


class _Watchdog:
    """Cuts the connection when the whole conversation has taken ``deadline`` seconds: the
    socket is shut down from a timer thread, which wakes a blocked read or write with an error
    (closing it would not)."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.fired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._end = None if deadline is None else time.monotonic() + deadline
        self._timer: threading.Timer | None = None
        if deadline is not None:
            self._timer = threading.Timer(deadline, self._fire)
            self._timer.daemon = True
            self._timer.start()

    @property
    def passed(self) -> bool:
        """Whether the deadline has come: the timer fired, or a socket timeout (never longer
        than what was left, :meth:`step`) ran out first, at the same moment."""
        return self.fired or (self._end is not None and time.monotonic() >= self._end)

    def step(self, timeout: float) -> float:
        """The timeout of the next connect: no later than the deadline."""
        if self._end is None:
            return timeout
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        return min(timeout, left)

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired and sock is not None:
                self._cut(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            if self._sock is not None:
                self._cut(self._sock)

    @staticmethod
    def _cut(sock: socket.socket) -> None:
        # The plain socket's shutdown, also for an SSLSocket (whose own drops its state).
        with contextlib.suppress(OSError):  # already closed: nothing to cut
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _SMTP(smtplib.SMTP):
    """``smtplib.SMTP`` that hands each new socket to the watchdog before reading the
    greeting on it."""

    def __init__(self, watchdog: _Watchdog, **kwargs: Any) -> None:
        self._watchdog = watchdog
        super().__init__(**kwargs)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._watchdog.watch(sock)
        return sock


class _HandshakeFailed(Exception):
    """The TLS handshake after STARTTLS failed: the connection is unusable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _words(str(exc)) or type(exc).__name__


def _tell_origin(smtp: smtplib.SMTP, xforward: Mapping[str, str], relay: str) -> None:
    supported = set(smtp.esmtp_features.get("xforward", "").upper().split())
    for arg in commands(xforward, supported):
        code, message = smtp.docmd("XFORWARD", arg)
        if not 200 <= code < 300:
            log.warning("relay %s refused XFORWARD %s: %d %s", relay, arg, code, _words(message))


def send(
    host: str,
    port: int,
    envelope: Envelope,
    raw: bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    local_hostname: str | None = None,
    tls: RelayTls | None = None,
    deadline: float | None = None,
    xforward: Mapping[str, str] | None = None,
) -> RelayReply:
    """Send ``raw`` from ``envelope.mail_from`` to every ``envelope.rcpt_tos`` through
    ``host:port``, all or nothing, with ``tls`` (default: ``may``) and within ``deadline``
    seconds in all when given (module doc); ``xforward`` (attribute name to value, as
    :meth:`feedgate.mail.xforward.Forwarded.attributes` gives them) is told to a relay that
    announces XFORWARD. Blocking; never raises for the relay's sake."""
    relay = f"{host}:{port}"
    if not envelope.rcpt_tos:
        return RelayReply(554, "554 5.5.1 no recipients", "the message has no recipients")
    policy = tls or _opportunistic()
    watchdog = _Watchdog(deadline)
    try:
        try:
            return _converse(
                host, port, envelope, raw, timeout, local_hostname, policy, watchdog, xforward
            )
        except _HandshakeFailed as exc:
            if policy.required:
                return _tempfail(
                    f"relay {relay}: TLS handshake failed ({exc.reason}); TLS level"
                    f" {policy.level} sends nothing without TLS",
                    "4.7.5",
                )
            # Postfix's ``may``: a relay whose TLS is broken gets the message in plain text.
            plain = RelayTls("none")
            return _converse(
                host, port, envelope, raw, timeout, local_hostname, plain, watchdog, xforward
            )
    finally:
        watchdog.cancel()


def _converse(
    host: str,
    port: int,
    envelope: Envelope,
    raw: bytes,
    timeout: float,
    local_hostname: str | None,
    policy: RelayTls,
    watchdog: _Watchdog,
    xforward: Mapping[str, str] | None = None,
) -> RelayReply:
    """One SMTP conversation (module doc); raises :class:`_HandshakeFailed` only."""
    relay = f"{host}:{port}"
    try:
        try:
            smtp = _SMTP(
                watchdog,
                host=host,
                port=port,
                timeout=watchdog.step(timeout),
                local_hostname=local_hostname,
            )
        except smtplib.SMTPConnectError as exc:  # refused in its greeting, before any command
            return _tempfail(
                f"relay {relay} refused the connection: {exc.smtp_code} {_words(exc.smtp_error)}",
                "4.4.0",
            )
        with smtp:
            code, message = smtp.ehlo()
            if not 200 <= code < 300:
                if policy.required:  # no EHLO, no STARTTLS
                    return _tempfail(
                        f"relay {relay} does not speak ESMTP ({code} {_words(message)}), so no"
                        f" STARTTLS, and TLS level {policy.level} sends only over TLS",
                        "4.7.4",
                    )
                code, message = smtp.helo()
                if not 200 <= code < 300:
                    return _passed_on(code, message, "HELO", relay)
            elif policy.level != "none":
                refused = _starttls(smtp, policy, relay, watchdog)
                if refused is not None:
                    return refused
            if xforward and smtp.has_extn("xforward"):
                _tell_origin(smtp, xforward, relay)
            return _transaction(smtp, envelope, raw, relay)
    except smtplib.SMTPResponseException as exc:  # a command smtplib itself checks
        return _passed_on(exc.smtp_code, exc.smtp_error, "a command", relay)
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        if watchdog.passed:
            return _tempfail(
                f"relay {relay} did not finish within {watchdog.deadline:g} s; gave up"
            )
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _words(str(exc))
        return _tempfail(f"relay {relay} unreachable: {reason or type(exc).__name__}")


def _starttls(
    smtp: smtplib.SMTP, policy: RelayTls, relay: str, watchdog: _Watchdog
) -> RelayReply | None:
    """STARTTLS as ``policy`` says: None to go on (over TLS, or in plain text where that is
    allowed), or the reply that ends the attempt."""
    level = policy.level
    if not smtp.has_extn("starttls"):
        if policy.required:
            return _tempfail(
                f"relay {relay} does not offer STARTTLS, and TLS level {level} sends only over TLS",
                "4.7.4",
            )
        return None
    try:
        smtp.starttls(context=policy.context)
    except smtplib.SMTPResponseException as exc:  # e.g. 454: the connection is still plain
        if policy.required:
            return _tempfail(
                f"relay {relay} refused STARTTLS ({exc.smtp_code} {_words(exc.smtp_error)}),"
                f" and TLS level {level} sends only over TLS",
                "4.7.4",
            )
        return None
    except (OSError, ValueError) as exc:  # the handshake (ssl.SSLError), or the connection
        if watchdog.passed:
            raise
        raise _HandshakeFailed(_tls_reason(exc)) from exc
    watchdog.watch(smtp.sock)
    code, message = smtp.ehlo()
    if not 200 <= code < 300:
        return _passed_on(code, message, "EHLO after STARTTLS", relay)
    return None


def _transaction(smtp: smtplib.SMTP, envelope: Envelope, raw: bytes, relay: str) -> RelayReply:
    """MAIL, every RCPT, DATA: all or nothing (module doc)."""
    options = [f"SIZE={len(raw)}"] if smtp.has_extn("size") else []
    if smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    if smtp.has_extn("smtputf8") and not envelope.mail_from.isascii():
        options.append("SMTPUTF8")
    code, message = smtp.mail(envelope.mail_from, options)
    if not 200 <= code < 300:
        return _passed_on(code, message, "MAIL FROM", relay)
    refused: list[tuple[int, bytes]] = []
    for rcpt in envelope.rcpt_tos:
        code, message = smtp.rcpt(rcpt)
        if not 200 <= code < 300:
            refused.append((code, message))
    if refused:
        smtp.rset()
        if len(refused) == len(envelope.rcpt_tos) and all(500 <= c < 600 for c, _ in refused):
            return _passed_on(refused[0][0], refused[0][1], "RCPT TO", relay)
        first = _words(refused[0][1])
        return _tempfail(
            f"relay {relay} refused {len(refused)} of {len(envelope.rcpt_tos)}"
            f" recipients ({refused[0][0]} {first}); nothing was sent",
            "4.4.0",
        )
    try:
        code, message = smtp.data(raw)
    except smtplib.SMTPResponseException as exc:  # DATA refused before the message
        return _passed_on(exc.smtp_code, exc.smtp_error, "DATA", relay)
    if not 200 <= code < 300:
        return _passed_on(code, message, "DATA", relay)
    return RelayReply(250, f"250 2.0.0 Ok: relayed ({_words(message)})")
