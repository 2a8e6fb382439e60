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
"""

from __future__ import annotations

import logging
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from .model import Envelope
from .xforward import commands

__all__ = ["DEFAULT_TIMEOUT", "RelayAddressError", "RelayReply", "parse_address", "send"]

log = logging.getLogger("feedgate.relay")

#: Seconds the relay may take for any one step (connect, a command, the data).
DEFAULT_TIMEOUT: Final = 60.0
_MAX_TEXT: Final = 300


class RelayAddressError(ValueError):
    """A relay address that is not ``HOST:PORT``."""


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
class RelayReply:
    """What to answer the client after a relay attempt: ``code`` and the whole ``reply`` line
    (``250 2.0.0 ...``); ``accepted`` when the relay took the message for every recipient."""

    code: int
    reply: str

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


def _words(message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    out = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return out if len(out) <= _MAX_TEXT else out[: _MAX_TEXT - 3] + "..."


def _tempfail(detail: str, status: str = "4.4.1") -> RelayReply:
    return RelayReply(451, f"451 {status} {detail}; try again later")


def _passed_on(code: int, message: bytes | str, where: str, relay: str) -> RelayReply:
    """The relay's refusal in our reply: a 5xx as it is (a permanent refusal stays one), a 4xx
    (or anything odd) as 451."""
    words = _words(message)
    if 500 <= code < 600:
        return RelayReply(code, f"{code} {words}" if words else f"{code} 5.0.0 refused by {relay}")
    return _tempfail(f"relay {relay} answered {code} at {where}: {words}", "4.4.0")


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
    xforward: Mapping[str, str] | None = None,
) -> RelayReply:
    """Send ``raw`` from ``envelope.mail_from`` to every ``envelope.rcpt_tos`` through
    ``host:port``, all or nothing (module doc); ``xforward`` (attribute name to value, as
    :meth:`feedgate.mail.xforward.Forwarded.attributes` gives them) is told to a relay that
    announces XFORWARD. Blocking; never raises for the relay's sake."""
    relay = f"{host}:{port}"
    if not envelope.rcpt_tos:
        return RelayReply(554, "554 5.5.1 no recipients")
    try:
        with smtplib.SMTP(host, port, timeout=timeout, local_hostname=local_hostname) as smtp:
            code, message = smtp.ehlo()
            if not 200 <= code < 300:
                code, message = smtp.helo()
                if not 200 <= code < 300:
                    return _passed_on(code, message, "HELO", relay)
            if xforward and smtp.has_extn("xforward"):
                _tell_origin(smtp, xforward, relay)
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
                if len(refused) == len(envelope.rcpt_tos) and all(
                    500 <= c < 600 for c, _ in refused
                ):
                    return _passed_on(refused[0][0], refused[0][1], "RCPT TO", relay)
                first = _words(refused[0][1])
                return _tempfail(
                    f"relay {relay} refused {len(refused)} of {len(envelope.rcpt_tos)}"
                    f" recipients ({refused[0][0]} {first}); nothing was sent",
                    "4.4.0",
                )
            code, message = smtp.data(raw)
            if not 200 <= code < 300:
                return _passed_on(code, message, "DATA", relay)
            return RelayReply(250, f"250 2.0.0 Ok: relayed ({_words(message)})")
    except smtplib.SMTPConnectError as exc:  # refused in its greeting, before any command
        return _tempfail(
            f"relay {relay} refused the connection: {exc.smtp_code} {_words(exc.smtp_error)}",
            "4.4.0",
        )
    except smtplib.SMTPResponseException as exc:  # e.g. DATA refused before the message
        return _passed_on(exc.smtp_code, exc.smtp_error, "DATA", relay)
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _words(str(exc))
        return _tempfail(f"relay {relay} unreachable: {reason or type(exc).__name__}")
