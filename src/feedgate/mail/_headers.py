"""What a message's headers offer: the connecting IP, the senders, the subject and its URLs.

Headers are read as the raw text the parser kept (``raw_items``), unfolded here: the standard
library's header objects parse every address header through a full RFC 5322 grammar, which
costs more than the rest of a small message's inspection, and all that is needed is the
addresses. Undecodable bytes (8-bit headers) come back as U+FFFD, never as an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from email import policy
from email.utils import getaddresses
from typing import Final

from feedgate.mail import limits
from feedgate.mail._collect import Collector
from feedgate.mail.model import Lookup, Part
from feedgate.observables import InvalidValue, Kind, normalise

__all__ = [
    "decoded_subject",
    "offer_addresses",
    "offer_client_ip",
    "received_client_ip",
    "unfold",
]

_FOLD: Final = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_LINE_BREAK: Final = re.compile(r"[\r\n]+")
#: An address literal: ``[192.0.2.1]``, ``[IPv6:2001:db8::1]``, ``[2001:db8::1]``.
_LITERAL: Final = re.compile(r"\[(?i:IPv6:)?([0-9A-Fa-f:.]{2,45})\]")
#: A bare IPv4 address in a comment (qmail writes ``(192.0.2.1)``).
_BARE_IPV4: Final = re.compile(r"(?<![0-9.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![0-9.])")
#: The common one-address header: ``a@b.example`` or ``Name <a@b.example>`` (quoted name too),
#: without comments, groups or a second address; anything else takes the full parser.
_ADDR: Final = r'[^\s<>@,;:"()\\\[\]]++@[^\s<>@,;:"()\\\[\]]++'
_NAME: Final = r'(?:"[^"\\]*+"\s*+|[^<>@,;:"()\\\[\]]*+)'
_ONE_ADDRESS: Final = re.compile(rf"\s*+(?:({_ADDR})|{_NAME}<({_ADDR})>)\s*+")
#: Where the ``from`` clause of a Received header ends.
_CLAUSE_END: Final = re.compile(r"\s(?:by|with|id|for|via)\s|;", re.IGNORECASE)


def unfold(value: str, what: str, out: Collector) -> str:
    """A raw header value as one line of text, cut at the header limit (and reported)."""
    if len(value) > limits.MAX_HEADER_CHARS:
        out.skip(
            what, f"header longer than {limits.MAX_HEADER_CHARS} characters: only its start read"
        )
        value = value[: limits.MAX_HEADER_CHARS]
    if "\n" in value or "\r" in value:
        value = _LINE_BREAK.sub(" ", _FOLD.sub("", value))
    if not value.isascii():
        # The parser keeps 8-bit header bytes as surrogate escapes; read them as UTF-8.
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value.strip()


def offer_client_ip(value: str, seen: str, out: Collector) -> None:
    """Offer the connecting IP ``value`` (as the caller or a Received header gave it)."""
    try:
        ip = normalise(Kind.IPV4, value.strip().strip("[]"))[1]
    except InvalidValue as exc:
        out.skip("client-ip", f"not an IP address: {exc}")
        return
    out.add(Part.CLIENT_IP, Lookup.IP, ip, seen)


def received_client_ip(value: str) -> str | None:
    """The connecting IP in a Received header's ``from`` clause, or None.

    The clause is ``from HELO (rDNS [IP])``: an address literal in the comment is what the
    receiving server saw, preferred to one in the HELO name (which the client chose). A bare
    address in a comment (qmail's ``(192.0.2.1)``) is taken when there is no literal.
    """
    text = value.lstrip()
    if text[:5].lower() != "from ":
        return None
    end = _CLAUSE_END.search(text, 5)
    clause = text[5 : end.start()] if end else text[5:]
    helo, paren, comment = clause.partition("(")
    for where in (comment, helo) if paren else (helo,):
        for match in _LITERAL.finditer(where):
            if _is_ip(match.group(1)):
                return match.group(1)
    for match in _BARE_IPV4.finditer(comment):
        if _is_ip(match.group()):
            return match.group()
    return None


def _is_ip(text: str) -> bool:
    try:
        normalise(Kind.IPV4, text)
    except InvalidValue:
        return False
    return True


def offer_addresses(values: Iterable[str], part: Part, out: Collector) -> None:
    """Offer each address of an address header (all its occurrences) and its domain."""
    count = 0
    texts = list(values)
    simple = _ONE_ADDRESS.fullmatch(texts[0]) if len(texts) == 1 else None
    pairs = [("", simple.group(1) or simple.group(2))] if simple else getaddresses(texts)
    for _, address in pairs:
        if not address:
            continue
        count += 1
        if count > limits.MAX_ADDRESSES:
            out.skip(str(part), f"more than {limits.MAX_ADDRESSES} addresses: the rest not read")
            return
        try:
            email = normalise(Kind.EMAIL, address)[1]
        except InvalidValue:
            continue
        out.add(part, Lookup.EMAIL, email, address)
        domain = email.rpartition("@")[2]
        if domain.startswith("["):  # an address literal: the host is an IP
            literal = domain[1:-1]
            out.add(part, Lookup.IP, literal[5:] if literal[:5] == "IPv6:" else literal, address)
        else:
            out.add(part, Lookup.DOMAIN, domain, address)


def decoded_subject(value: str) -> str:
    """A Subject's text with its RFC 2047 encoded words decoded (``value`` unfolded)."""
    if "=?" not in value:
        return value
    try:
        return str(policy.default.header_factory("subject", value))
    except Exception:  # the header grammar gives up on some hostile spellings: keep the raw
        return value
