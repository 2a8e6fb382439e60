"""Postfix's XFORWARD: who really sent a message, told across an SMTP content filter.

Behind Postfix's ``content_filter`` the gateway's SMTP peer is always Postfix (on loopback), so
a rule on the sender's IP would never see the real client. Postfix's SMTP client (with
``smtp_send_xforward_command = yes``) tells a server that announces ``XFORWARD`` in its EHLO
reply the original client's attributes before each MAIL FROM; this module is that protocol,
from Postfix's XFORWARD_README and its smtpd/smtp sources (read for the facts):

- ``XFORWARD 1*( SP name=value )``, names case-insensitive: ``NAME`` (host name), ``ADDR`` (an
  IPv4 address, or IPv6 as ``IPv6:...``; never in brackets), ``PORT``, ``PROTO`` (at most 64
  characters), ``HELO``, ``IDENT`` (the upstream MTA's queue id) and ``SOURCE`` (``LOCAL`` or
  ``REMOTE``). Any value may be ``[UNAVAILABLE]`` (in any case). Values are xtext (``+XX``
  for a byte); Postfix before 2.3 sent them plain, so a value that is no valid xtext is taken
  as it is. A value is at most 255 characters and, decoded, printable ASCII without spaces.
- The first XFORWARD of a transaction sets every attribute to unavailable, then each command
  updates what it names; the attributes hold for the next mail transaction only and are
  forgotten at its end (the final dot or RSET). A client attribute given (even as
  unavailable) replaces the whole session's client: forwarded and session attributes are
  never mixed. ``IDENT`` and ``SOURCE`` alone leave the session's client in place.
- Replies: ``250`` done; ``501`` bad syntax (here the whole command is then ignored, where
  Postfix may keep the attributes before the bad one); ``503`` inside a mail transaction (after
  MAIL FROM); ``550 5.7.0`` for a client not allowed to send it ("XFORWARD changes audit
  trails"), to whom the extension is not announced either.

:func:`parse` reads a command's argument, :class:`Forwarded` holds a transaction's attributes,
:func:`commands` writes them for the next server (the relay, when it announces XFORWARD), so
Postfix's reinjection smtpd logs the original client (``orig_client=``, ``orig_queue_id=``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

__all__ = [
    "ATTRIBUTES",
    "CLIENT_ATTRIBUTES",
    "DEFAULT_TRUSTED",
    "EHLO_LINE",
    "Forwarded",
    "IPNetwork",
    "XforwardError",
    "commands",
    "parse",
    "parse_networks",
    "trusted",
    "wire_address",
    "xtext_decode",
    "xtext_encode",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Every attribute, in the order Postfix announces and sends them.
ATTRIBUTES: Final = ("NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE")
#: The attributes that describe the client (one given: the session's client is replaced).
CLIENT_ATTRIBUTES: Final = frozenset({"NAME", "ADDR", "PORT", "PROTO", "HELO"})
#: What the EHLO reply announces (after ``250-``).
EHLO_LINE: Final = "XFORWARD " + " ".join(ATTRIBUTES)
#: Who may send XFORWARD by default: loopback, where Postfix hands mail to a content filter.
DEFAULT_TRUSTED: Final[tuple[IPNetwork, ...]] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)
UNAVAILABLE: Final = "[UNAVAILABLE]"
MAX_VALUE: Final = 255
MAX_PROTO: Final = 64
#: SMTP's command line limit (RFC 5321: 512 octets with the CRLF).
MAX_COMMAND: Final = 512

OK_REPLY: Final = "250 2.0.0 Ok"
SYNTAX_REPLY: Final = "501 5.5.4 Syntax: XFORWARD attribute=value..."
IN_TRANSACTION_REPLY: Final = "503 5.5.1 Error: MAIL transaction in progress"
UNAUTHORIZED_REPLY: Final = "550 5.7.0 Error: insufficient authorization"

_XTEXT: Final = re.compile(r"\+([0-9A-Fa-f]{2})")
_LABEL: Final = re.compile(r"[A-Za-z0-9_-]{1,63}")
_IPV6_PREFIX: Final = "ipv6:"


class XforwardError(ValueError):
    """A command that cannot be taken; ``reply`` is the whole SMTP reply line (501)."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


def _shown(text: str, limit: int = 80) -> str:
    """``text`` safe to echo in a reply: printable ASCII, shortened."""
    out = "".join(c if " " < c <= "~" else "?" for c in text)
    return out if len(out) <= limit else out[: limit - 3] + "..."


def xtext_decode(raw: str) -> str | None:
    """``raw`` xtext-decoded (RFC 3461 4: ``+XX``, hex, for a byte; a byte past ``~`` comes
    out as the character of that code, for the caller to refuse), or None when it is not valid
    xtext (a ``+`` not followed by two hex digits)."""
    if "+" not in raw:
        return raw
    if raw.count("+") != len(_XTEXT.findall(raw)):
        return None
    return _XTEXT.sub(lambda m: chr(int(m.group(1), 16)), raw)


def xtext_encode(value: str) -> str:
    """``value`` as xtext: ``+``, ``=`` and anything outside ``!``..``~`` as ``+XX``."""
    out = []
    for byte in value.encode():
        char = chr(byte)
        out.append(f"+{byte:02X}" if char in "+=" or not "!" <= char <= "~" else char)
    return "".join(out)


def _hostname(name: str, value: str) -> str:
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    if len(value) > MAX_VALUE or not all(_LABEL.fullmatch(label) for label in labels):
        raise XforwardError(f"501 5.5.4 Bad {name} syntax: {_shown(value)}")
    return value


def _address(value: str) -> str:
    """The canonical text of an ADDR value (``IPv6:`` dropped, IPv4-mapped IPv6 as IPv4)."""
    bare = value[len(_IPV6_PREFIX) :] if value.lower().startswith(_IPV6_PREFIX) else value
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        raise XforwardError(f"501 5.5.4 Bad ADDR syntax: {_shown(value)}") from None
    # (Postfix's smtpd wants the prefix; a bare IPv6 is unambiguous, and refusing it would only
    # lose the client's address, so it is taken too.)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _value(name: str, value: str) -> str:
    """One attribute's value, checked (``XforwardError`` naming it when it is bad)."""
    if name == "NAME":
        return _hostname(name, value)
    if name == "ADDR":
        return _address(value)
    if name == "PORT":
        if not value.isdigit() or len(value) > 5 or int(value) > 65535:
            raise XforwardError(f"501 5.5.4 Bad PORT syntax: {_shown(value)}")
        return str(int(value))
    if name == "PROTO" and len(value) > MAX_PROTO:
        raise XforwardError(f"501 5.5.4 Bad PROTO syntax: {_shown(value)}")
    if name == "SOURCE":
        if value.upper() not in ("LOCAL", "REMOTE"):
            raise XforwardError(f"501 5.5.4 Bad SOURCE syntax: {_shown(value)}")
        return value.upper()
    return value  # PROTO, HELO, IDENT: any printable text


def parse(arg: str | None) -> dict[str, str | None]:
    """The attributes an ``XFORWARD`` command's argument sets (None: ``[UNAVAILABLE]``; ADDR
    as canonical IP text). Raises :class:`XforwardError` with the 501 reply
    for the first thing wrong, so a bad command changes nothing."""
    items = (arg or "").split()
    if not items:
        raise XforwardError(SYNTAX_REPLY)
    update: dict[str, str | None] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not raw:
            raise XforwardError("501 5.5.4 Error: attribute=value expected")
        if len(raw) > MAX_VALUE:
            raise XforwardError("501 5.5.4 Error: attribute value too long")
        name = key.upper()
        if name not in ATTRIBUTES:
            raise XforwardError(f"501 5.5.4 Bad XFORWARD attribute name: {_shown(key)}")
        decoded = xtext_decode(raw)
        value = raw if decoded is None else decoded  # not xtext: a pre-2.3 Postfix's plain text
        if not value or not all("!" <= c <= "~" for c in value):
            raise XforwardError(f"501 5.5.4 Bad {name} syntax: {_shown(value)}")
        update[name] = None if value.upper() == UNAVAILABLE else _value(name, value)
    return update


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The XFORWARD attributes of one mail transaction (None: unavailable). ``given`` names
    the attributes the client sent, an ``[UNAVAILABLE]`` one included."""

    name: str | None = None
    addr: str | None = None
    port: str | None = None
    proto: str | None = None
    helo: str | None = None
    ident: str | None = None
    source: str | None = None
    given: frozenset[str] = field(default_factory=frozenset)

    def updated(self, update: Mapping[str, str | None]) -> Forwarded:
        """These attributes with ``update`` (from :func:`parse`) applied."""
        fields = {name.lower(): value for name, value in update.items()}
        return replace(self, **fields, given=self.given | frozenset(update))

    @property
    def replaces_client(self) -> bool:
        """Whether the client attributes are these (else the session's own apply)."""
        return bool(self.given & CLIENT_ATTRIBUTES)

    def attributes(self) -> dict[str, str]:
        """What to pass on to the next server: the available attributes, in XFORWARD's form
        (``ADDR`` of an IPv6 client with its ``IPv6:`` prefix), by attribute name."""
        out: dict[str, str] = {}
        for name in ATTRIBUTES:
            value = getattr(self, name.lower())
            if value is not None:
                out[name] = wire_address(value) if name == "ADDR" else value
        return out


def wire_address(ip: str) -> str:
    """An IP address as XFORWARD's ADDR carries it (IPv6 with the ``IPv6:`` prefix)."""
    return f"IPv6:{ip}" if ":" in ip else ip


def commands(attributes: Mapping[str, str], supported: Collection[str]) -> list[str]:
    """The arguments of the XFORWARD commands that tell a server ``attributes`` (from
    :meth:`Forwarded.attributes`), keeping only those it announced (``supported``, upper
    case) and each command within SMTP's 512-octet line (Postfix's client also splits them)."""
    out: list[str] = []
    line = ""
    for name in ATTRIBUTES:
        if name not in supported or name not in attributes:
            continue
        item = f"{name}={xtext_encode(attributes[name])}"
        if line and len("XFORWARD ") + len(line) + 1 + len(item) + 2 > MAX_COMMAND:
            out.append(line)
            line = ""
        line = f"{line} {item}" if line else item
    if line:
        out.append(line)
    return out


def trusted(ip: str | None, networks: Iterable[IPNetwork]) -> bool:
    """Whether a client at ``ip`` may send XFORWARD (it is in one of ``networks``)."""
    if ip is None:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address.version == net.version and address in net for net in networks)


def parse_networks(text: str) -> tuple[IPNetwork, ...]:
    """``CIDR[,CIDR...]`` (a bare address is its own /32 or /128; ``none``: nobody) as
    networks; ``ValueError`` saying which part is wrong and what to give."""
    if text.strip().lower() == "none":
        return ()
    out: list[IPNetwork] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item.replace("[", "").replace("]", "")))
        except ValueError as exc:
            raise ValueError(
                f"{item!r} is not a network ({exc}); give CIDR[,CIDR...],"
                " e.g. 127.0.0.0/8,::1, or none"
            ) from None
    if not out:
        raise ValueError("no network given; give CIDR[,CIDR...], e.g. 127.0.0.0/8,::1, or none")
    return tuple(out)
