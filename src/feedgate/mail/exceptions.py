"""The exception list: values the admin trusts, which never match whatever a feed says.

An exception is one value, its kind read from the value itself (an admin types
``partner.example``, ``192.0.2.0/24`` or ``ceo@example.com``, not a kind), normalised as the
store normalises observables (:mod:`feedgate.observables`), so it compares with what messages
offer and feeds list. What each kind covers:

* a domain: itself and every subdomain, the hosts of URLs on them and the e-mail addresses at
  them (``example.com`` covers ``mail.example.com`` but not ``notexample.com``);
* an IP network: every address in it (also a URL's IP host) and every network inside it;
  an IP address: itself;
* an e-mail address: itself, case-insensitively (local part included, as the matcher compares):
  it is stored lower-cased, so ``CEO@Example.com`` and ``ceo@example.com`` are one exception;
* a URL: itself, exactly as normalised;
* a hash: itself.

A message's value is checked against the list *before* anything else (design.md "Mail": the
exception list always wins), and an excepted match is reported with the exception's value.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from feedgate.observables import (
    InvalidValue,
    Kind,
    normalise_cidr,
    normalise_domain,
    normalise_email,
    normalise_hash,
    normalise_ip,
    normalise_url,
    url_host,
)

from ._shown import shown

__all__ = [
    "MAX_EXCEPTION_LENGTH",
    "MAX_NOTE_LENGTH",
    "ExceptionEntry",
    "ExceptionList",
    "ExceptionValueError",
    "classify",
    "parse_exception",
]

#: The longest exception value taken (a URL): longer is no value an admin types.
MAX_EXCEPTION_LENGTH: Final = 2048
MAX_NOTE_LENGTH: Final = 500

_HEX: Final = frozenset(string.hexdigits)
_HASH_LENGTHS: Final = frozenset({32, 40, 64})

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class ExceptionValueError(ValueError):
    """An exception value or note that cannot be used; the message says what to give instead,
    ``field`` which of the two it is."""

    def __init__(self, message: str, field: str = "value") -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class ExceptionEntry:
    """One exception: the normalised value, its kind, and the admin's note on why."""

    kind: str  # an observable kind: domain ipv4 ipv6 cidr email url md5 sha1 sha256
    value: str
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "note": self.note}


def classify(value: object) -> tuple[Kind, str]:
    """The kind and normal form of an exception value, read from the value (module doc);
    :class:`ExceptionValueError` saying what is accepted when it is none of them."""
    if value is not None and not isinstance(value, str):
        raise ExceptionValueError(
            f"expected text, got {shown(value)}: give a domain, e-mail address, IP address or"
            " network, URL or hash"
        )
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise ExceptionValueError(
            "empty exception: give a domain, e-mail address, IP address or network, URL or hash"
        )
    if len(text) > MAX_EXCEPTION_LENGTH:
        raise ExceptionValueError(
            f"exception of {len(text)} characters: at most {MAX_EXCEPTION_LENGTH} are taken"
        )
    try:
        if "://" in text:
            return normalise_url(text)
        if "@" in text:  # one exception per address, however its local part is cased
            kind, address = normalise_email(text)
            return kind, address.lower()
        if "/" in text:
            return normalise_cidr(text)
        if len(text) in _HASH_LENGTHS and set(text) <= _HEX:
            return normalise_hash(text)
        try:
            return normalise_ip(text)
        except InvalidValue:
            pass
        if text.startswith("*."):
            raise ExceptionValueError(
                f"{shown(text)}: a domain exception covers its subdomains already; give"
                f" {shown(text[2:])}"
            )
        return normalise_domain(text)
    except InvalidValue as exc:
        raise ExceptionValueError(
            f"{shown(text)} is not a domain, e-mail address, IP address or network, URL or"
            f" hash: {exc}"
        ) from None


def parse_exception(value: object, note: object) -> ExceptionEntry:
    """A checked :class:`ExceptionEntry` (:class:`ExceptionValueError` otherwise)."""
    kind, normal = classify(value)
    if note is not None and not isinstance(note, str):
        raise ExceptionValueError(
            f"expected text, got {shown(note)}: give the note saying why it is trusted", "note"
        )
    if not isinstance(note, str) or not note.strip():
        raise ExceptionValueError(
            "an exception needs a note saying why it is trusted (who asked, a ticket number)",
            "note",
        )
    note = note.strip()
    if len(note) > MAX_NOTE_LENGTH:
        raise ExceptionValueError(
            f"note of {len(note)} characters: at most {MAX_NOTE_LENGTH} are taken", "note"
        )
    if any(not c.isprintable() for c in note):
        raise ExceptionValueError(
            "the note contains control characters: give one line of text", "note"
        )
    return ExceptionEntry(str(kind), normal, note)


class ExceptionList:
    """The exceptions indexed for lookups (a handful to a few thousand: dicts and a list)."""

    def __init__(self, entries: Iterable[ExceptionEntry] = ()) -> None:
        self.entries: tuple[ExceptionEntry, ...] = tuple(entries)
        self._domains: dict[str, ExceptionEntry] = {}
        self._addresses: dict[str, ExceptionEntry] = {}
        self._networks: list[tuple[_Net, ExceptionEntry]] = []
        self._emails: dict[str, ExceptionEntry] = {}
        self._exact: dict[tuple[str, str], ExceptionEntry] = {}  # urls and hashes
        for entry in self.entries:
            if entry.kind == "domain":
                self._domains[entry.value] = entry
            elif entry.kind in ("ipv4", "ipv6"):
                self._addresses[entry.value] = entry
            elif entry.kind == "cidr":
                self._networks.append((ipaddress.ip_network(entry.value), entry))
            elif entry.kind == "email":
                self._emails[entry.value.casefold()] = entry
            else:
                self._exact[(entry.kind, entry.value)] = entry

    def __len__(self) -> int:
        return len(self.entries)

    def _domain(self, domain: str) -> ExceptionEntry | None:
        name = domain.lower()
        while True:
            found = self._domains.get(name)
            if found is not None:
                return found
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]

    def _address(self, text: str) -> ExceptionEntry | None:
        found = self._addresses.get(text)
        if found is not None or not self._networks:
            return found
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return None
        for net, entry in self._networks:
            if addr.version == net.version and addr in net:
                return entry
        return None

    def _network(self, text: str) -> ExceptionEntry | None:
        try:
            inner = ipaddress.ip_network(text, strict=False)
        except ValueError:
            return None
        for net, entry in self._networks:
            if inner.version == net.version and inner.subnet_of(net):  # type: ignore[arg-type]
                return entry
        return None

    def _host(self, host: str) -> ExceptionEntry | None:
        host = host.strip("[]")
        if host[:5].lower() == "ipv6:":  # an e-mail domain literal, a@[IPv6:2001:db8::1]
            host = host[5:]
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return self._domain(host)
        return self._address(str(ipaddress.ip_address(host)))

    def covering(self, kind: str, value: str) -> ExceptionEntry | None:
        """The exception that covers ``value`` (normalised) of ``kind`` (an observable kind, or
        a :class:`~feedgate.mail.model.Lookup`: ``ip`` is an address), or None."""
        if not self.entries:
            return None
        if kind in ("ip", "ipv4", "ipv6"):
            return self._address(value)
        if kind == "cidr":
            return self._network(value)
        if kind == "domain":
            return self._domain(value)
        if kind == "email":
            found = self._emails.get(value.casefold())
            if found is not None:
                return found
            _local, _at, domain = value.rpartition("@")
            return self._host(domain) if domain else None
        if kind == "url":
            found = self._exact.get(("url", value))
            if found is not None:
                return found
            host = url_host(value)
            return None if host is None else self._host(host)
        return self._exact.get((kind, value.lower()))
