"""Observable kinds, their normalisation, and the Observable record.

Normalisation is the identity of an observable: two feeds that spell the same IP, domain or URL
differently must land on the same (kind, value) key in the store, and a message part extracted
from mail must normalise the same way to be found. So there is exactly one function per kind,
and every reader and the mail inspector go through :func:`normalise`.

A value that cannot be normalised raises :class:`InvalidValue` with a short reason; readers count
it as skipped (never crash, never store garbage).
"""

from __future__ import annotations

import enum
import ipaddress
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import idna

__all__ = [
    "ENFORCEABLE_KINDS",
    "InvalidValue",
    "Kind",
    "Observable",
    "normalise",
    "normalise_cidr",
    "normalise_domain",
    "normalise_email",
    "normalise_hash",
    "normalise_ip",
    "normalise_ip_range",
    "normalise_url",
    "refang",
    "url_host",
]


class Kind(enum.StrEnum):
    """What an observable is. ``OTHER`` keeps unenforceable types (mutex, CVE, ...) visible."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"
    CIDR = "cidr"
    DOMAIN = "domain"
    URL = "url"
    EMAIL = "email"
    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    OTHER = "other"


ENFORCEABLE_KINDS: Final = frozenset(Kind) - {Kind.OTHER}


class InvalidValue(ValueError):
    """A value that cannot be normalised for its kind; the message is the reason."""


@dataclass(frozen=True, slots=True)
class Observable:
    """One normalised observable with where it came from.

    ``kind``/``value`` are the identity; ``original_type`` names the feed's own type for kind
    ``other`` (e.g. ``MutexObjectType``); ``context`` holds what an admin needs to judge a match:
    package (pulse) id and title, indicator id, title, type, description, confidence, TLP,
    timestamps (ISO 8601 strings as the feed gave them).
    """

    kind: Kind
    value: str
    original_type: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.kind), "value": self.value}
        if self.original_type:
            out["type"] = self.original_type
        out.update(self.context)
        return out


# --- refanging -------------------------------------------------------------------------------

_REFANG_RULES: Final = (
    (re.compile(r"^hxxp", re.IGNORECASE), "http"),
    (re.compile(r"^fxp", re.IGNORECASE), "ftp"),
    (re.compile(r"\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)", re.IGNORECASE), "."),
    (re.compile(r"\[:\]"), ":"),
    (re.compile(r"\[/\]"), "/"),
    (re.compile(r"\[@\]|\[at\]|\(at\)", re.IGNORECASE), "@"),
    (re.compile(r"\[://\]"), "://"),
)


def refang(value: str) -> str:
    """Undo common defanging (``hxxp://evil[.]example``) in a value a feed calls an indicator."""
    if not any(c in value for c in "[({") and not value[:4].lower() in ("hxxp", "fxp:"):
        return value
    for pattern, replacement in _REFANG_RULES:
        value = pattern.sub(replacement, value)
    return value


# --- IP addresses and networks ---------------------------------------------------------------


def normalise_ip(value: str) -> tuple[Kind, str]:
    """Canonical text of an IPv4 or IPv6 address; IPv4-mapped IPv6 becomes IPv4."""
    text = refang(value.strip())
    if "%" in text:
        raise InvalidValue("scoped IPv6 addresses (with %zone) are not indicators")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidValue(f"not an IP address: {_show(value)}") from None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return Kind.IPV4, str(addr.ipv4_mapped)
        return Kind.IPV6, str(addr)
    return Kind.IPV4, str(addr)


def normalise_cidr(value: str) -> tuple[Kind, str]:
    """A network in CIDR notation; host bits must be zero, a /32 or /128 is just an address."""
    text = refang(value.strip())
    if "/" not in text:
        return normalise_ip(text)
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            raise InvalidValue(f"CIDR with host bits set: {_show(value)}") from None
        raise InvalidValue(f"not a CIDR network: {_show(value)}") from None
    if net.num_addresses == 1:
        return normalise_ip(str(net.network_address))
    return Kind.CIDR, str(net)


def normalise_ip_range(first: str, last: str) -> list[tuple[Kind, str]]:
    """An inclusive address range as the fewest CIDR networks that cover exactly it."""
    kind_a, a = normalise_ip(first)
    kind_b, b = normalise_ip(last)
    if kind_a != kind_b:
        raise InvalidValue(f"range mixes IPv4 and IPv6: {_show(first)} - {_show(last)}")
    lo, hi = ipaddress.ip_address(a), ipaddress.ip_address(b)
    if lo > hi:
        raise InvalidValue(f"range runs backwards: {a} - {b}")
    out: list[tuple[Kind, str]] = []
    for net in ipaddress.summarize_address_range(lo, hi):  # type: ignore[type-var]
        if net.num_addresses == 1:
            out.append((kind_a, str(net.network_address)))
        else:
            out.append((Kind.CIDR, str(net)))
    if len(out) > 64:
        raise InvalidValue(f"range {a} - {b} needs {len(out)} networks (limit 64)")
    return out


# --- domains ----------------------------------------------------------------------------------

_LDH: Final = frozenset(string.ascii_lowercase + string.digits + "-_")


def normalise_domain(value: str) -> tuple[Kind, str]:
    """Lower case, IDNA A-labels, no trailing dot; at least two labels; no IP literals."""
    text = refang(value.strip())
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidValue("empty domain name")
    if len(text) > 253 * 4:
        raise InvalidValue("domain name too long")
    if text.startswith("*."):
        raise InvalidValue(f"wildcard domain is a pattern, not a value: {_show(value)}")
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidValue(f"an IP address is not a domain name: {_show(value)}")
    labels = text.split(".")
    out: list[str] = []
    for label in labels:
        if not label:
            raise InvalidValue(f"empty label in domain name: {_show(value)}")
        if label.isascii():
            low = label.lower()
            if not set(low) <= _LDH:
                raise InvalidValue(f"invalid character in domain name: {_show(value)}")
            if low.startswith("xn--"):
                try:
                    idna.decode(low)
                except idna.IDNAError:
                    raise InvalidValue(f"invalid punycode label in {_show(value)}") from None
        else:
            try:
                low = idna.encode(label, uts46=True).decode("ascii")
            except idna.IDNAError as exc:
                raise InvalidValue(f"invalid internationalised domain name: {exc}") from None
        if len(low) > 63:
            raise InvalidValue(f"label longer than 63 characters in {_show(value)}")
        if low.startswith("-") or low.endswith("-"):
            raise InvalidValue(f"label starts or ends with a hyphen in {_show(value)}")
        out.append(low)
    if len(out) < 2:
        raise InvalidValue(f"a domain needs at least two labels: {_show(value)}")
    if out[-1].isdigit():
        raise InvalidValue(f"top-level label is numeric: {_show(value)}")
    result = ".".join(out)
    if len(result) > 253:
        raise InvalidValue("domain name longer than 253 characters")
    return Kind.DOMAIN, result


# --- e-mail addresses ---------------------------------------------------------------------------

_LOCAL_FORBIDDEN: Final = frozenset(' \t\r\n<>(),;:"[]\\')


def normalise_email(value: str) -> tuple[Kind, str]:
    """``local@domain``: local part kept as given, domain normalised (lower case, IDNA)."""
    text = refang(value.strip())
    if text.lower().startswith("mailto:"):
        text = text[7:]
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, sep, domain = text.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidValue(f"not an e-mail address: {_show(value)}")
    if len(local) > 64 or set(local) & _LOCAL_FORBIDDEN:
        raise InvalidValue(f"invalid local part in e-mail address: {_show(value)}")
    if domain.startswith("[") and domain.endswith("]"):
        _, ip = normalise_ip(domain[1:-1].removeprefix("IPv6:"))
        return Kind.EMAIL, f"{local}@[{ip}]"
    try:
        _, dom = normalise_domain(domain)
    except InvalidValue as exc:
        raise InvalidValue(f"invalid domain in e-mail address: {exc}") from None
    return Kind.EMAIL, f"{local}@{dom}"


# --- URLs -------------------------------------------------------------------------------------

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
_PERCENT_RE: Final = re.compile(r"%[0-9a-fA-F]{2}")
_SCHEME_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _upper_percent(text: str) -> str:
    return _PERCENT_RE.sub(lambda m: m.group(0).upper(), text)


def url_host(url: str) -> str | None:
    """The host of a normalised URL (for domain context), or None."""
    host = urlsplit(url).hostname
    return host or None


def normalise_url(value: str) -> tuple[Kind, str]:
    """Scheme and host lower case, IDNA host, default port dropped, path byte-exact.

    Only percent-escape case is normalised (``%2f`` → ``%2F``); a URL without a scheme is taken
    as ``http://`` because feeds commonly list ``evil.example/path``.
    """
    text = refang(value.strip())
    if not text:
        raise InvalidValue("empty URL")
    if any(c in text for c in " \t\r\n"):
        raise InvalidValue(f"URL contains whitespace: {_show(value)}")
    if not _SCHEME_RE.match(text):
        if ":" in text.split("/", 1)[0] and not text.split("/", 1)[0].rsplit(":", 1)[1].isdigit():
            raise InvalidValue(f"not a URL (no //authority): {_show(value)}")
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidValue(f"not a URL: {exc}: {_show(value)}") from None
    scheme = parts.scheme.lower()
    raw_host = parts.hostname
    if not raw_host:
        raise InvalidValue(f"URL without a host: {_show(value)}")
    host: str
    if parts.netloc.rsplit("@", 1)[-1].startswith("["):
        kind, ip = normalise_ip(raw_host)
        host = f"[{ip}]" if kind is Kind.IPV6 else ip
    else:
        try:
            host = normalise_ip(raw_host)[1]
        except InvalidValue:
            try:
                host = normalise_domain(raw_host)[1]
            except InvalidValue as exc:
                raise InvalidValue(f"invalid host in URL: {exc}") from None
    userinfo = ""
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@"
    netloc = userinfo + host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    path = _upper_percent(parts.path) or ("/" if scheme in _DEFAULT_PORTS else "")
    query = _upper_percent(parts.query)
    result = urlunsplit((scheme, netloc, path, query, ""))
    if "?" in text and not query and text.split("#", 1)[0].endswith("?"):
        result += "?"
    return Kind.URL, result


# --- hashes -----------------------------------------------------------------------------------

_HASH_LENGTHS: Final = {Kind.MD5: 32, Kind.SHA1: 40, Kind.SHA256: 64}
_HASH_BY_LENGTH: Final = {length: kind for kind, length in _HASH_LENGTHS.items()}
_HEX: Final = frozenset(string.hexdigits)


def normalise_hash(value: str, kind: Kind | None = None) -> tuple[Kind, str]:
    """Lower-case hex of the right length; the kind is inferred from the length when not given."""
    text = value.strip().lower()
    if not text or not set(text) <= _HEX:
        raise InvalidValue(f"not a hex digest: {_show(value)}")
    if kind is None:
        inferred = _HASH_BY_LENGTH.get(len(text))
        if inferred is None:
            raise InvalidValue(f"no hash has {len(text)} hex digits: {_show(value)}")
        return inferred, text
    expected = _HASH_LENGTHS[kind]
    if len(text) != expected:
        raise InvalidValue(f"{kind} must have {expected} hex digits, got {len(text)}")
    return kind, text


# --- dispatch ---------------------------------------------------------------------------------

_NORMALISERS: Final[dict[Kind, Callable[[str], tuple[Kind, str]]]] = {
    Kind.IPV4: normalise_ip,
    Kind.IPV6: normalise_ip,
    Kind.CIDR: normalise_cidr,
    Kind.DOMAIN: normalise_domain,
    Kind.URL: normalise_url,
    Kind.EMAIL: normalise_email,
    Kind.MD5: lambda v: normalise_hash(v, Kind.MD5),
    Kind.SHA1: lambda v: normalise_hash(v, Kind.SHA1),
    Kind.SHA256: lambda v: normalise_hash(v, Kind.SHA256),
}


def normalise(kind: Kind | str, value: str) -> tuple[Kind, str]:
    """Normalise ``value`` as ``kind``; returns the (possibly refined) kind and canonical value.

    The kind may change where the value says more than the feed did: an IPv4-mapped IPv6 address
    is IPv4, a /32 "CIDR" is an address. ``other`` values are only stripped.
    """
    kind = Kind(kind)
    if not isinstance(value, str):
        raise InvalidValue(f"value must be text, got {type(value).__name__}")
    if "\x00" in value:
        raise InvalidValue("value contains a NUL character")
    if kind is Kind.OTHER:
        text = value.strip()
        if not text:
            raise InvalidValue("empty value")
        return Kind.OTHER, text
    result = _NORMALISERS[kind](value)
    if kind in (Kind.IPV4, Kind.IPV6) and result[0] != kind:
        # The feed said ipv6 but the value is IPv4-mapped (or the reverse): trust the value.
        return result
    return result


def _show(value: str, limit: int = 80) -> str:
    """A value quoted for an error message, cut short so one bad value cannot flood a log."""
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)
