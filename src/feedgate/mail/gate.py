"""The false-positive gate: observables that would block the world are never enforced.

Feeds list ``google.com``, ``10.0.0.1``, ``co.uk`` or the hash of the empty file now and then
(a sandbox saw the malware fetch them, an analyst pasted a whole report). A domain observable
matches itself *and every subdomain*, a network every address in it: enforcing one of these
would quarantine a large share of all mail. So such an observable is reported as *suppressed*,
with the reason this module gives, instead of deciding anything (design.md "Mail").

What is suppressed, and where the knowledge comes from:

* popular domains: the MISP warning lists shipped in ``pymispwarninglists`` (:data:`POPULAR_LISTS`:
  the Tranco top 10k and the lists of Google's and Microsoft's domains). Only the domain itself
  and its ``www.`` name: ``evil.azurewebsites.net`` or ``x.blogspot.com`` are one tenant of a
  popular platform, and real threats; the platform's own name (a public suffix, often) is what
  would block the world;
* public suffixes themselves (``com``, ``co.uk``, ``github.io``): the ``publicsuffixlist``
  package, ICANN and private sections;
* private, shared (RFC 6598), loopback, link-local, multicast, unspecified and reserved
  addresses, networks inside or around them, and networks wider than /8 (IPv4) or /16 (IPv6);
* the MD5, SHA-1 and SHA-256 of the empty file;
* a URL that is only the home page of a host the gate suppresses (``https://www.google.com/``).

Never suppressed, so demonstrations and tests match: the documentation address ranges
(TEST-NET-1/2/3, ``2001:db8::/32``) and the names RFC 2606 reserves (``example.com``/``.net``/
``.org``, ``.test``, ``.example``, ``.invalid``, ``.localhost``). The Tranco list contains
``example.com`` and ``example.org`` (they are visited a lot): they are exempted explicitly.

The lists are read once, when a domain is first judged, from the JSON files of the lists used
(not all 119 lists of the package); :func:`gate_reason` is cached.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import ipaddress
import json
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from publicsuffixlist import PublicSuffixList

__all__ = ["EMPTY_FILE_HASHES", "POPULAR_LISTS", "GateDataError", "gate_reason"]

#: The MISP warning lists of popular domains used, by directory name, with the words a reason
#: names them by.
POPULAR_LISTS: Final[dict[str, str]] = {
    "tranco10k": "Tranco top 10k",
    "google": "Google's domains",
    "microsoft": "Microsoft's domains",
    "microsoft-office365": "Microsoft Office 365's domains",
}

#: The digests of ``b""`` by kind: every sandbox sees an empty file now and then.
EMPTY_FILE_HASHES: Final[dict[str, str]] = {
    "md5": hashlib.md5(b"").hexdigest(),
    "sha1": hashlib.sha1(b"").hexdigest(),
    "sha256": hashlib.sha256(b"").hexdigest(),
}

#: RFC 2606 (and RFC 6761) names: never suppressed, whatever the lists say.
_RESERVED_TLDS: Final = frozenset({"test", "example", "invalid", "localhost"})
_RESERVED_DOMAINS: Final = frozenset({"example.com", "example.net", "example.org"})

_WIDEST: Final = {4: 8, 6: 16}

_Net = ipaddress.IPv4Network | ipaddress.IPv6Network
_Addr = ipaddress.IPv4Address | ipaddress.IPv6Address


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[_Net, str], ...]:
    return tuple((ipaddress.ip_network(net), what) for net, what in pairs)


#: Special-purpose ranges (IANA registries) whose addresses never send or host a threat that a
#: feed could mean for everyone; the documentation ranges are deliberately absent.
_SPECIAL: Final = _nets(
    ("0.0.0.0/8", "unspecified"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fc00::/7", "private"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
)


class GateDataError(RuntimeError):
    """The gate's lists cannot be read (a broken installation of ``pymispwarninglists``)."""


def _lists_dir() -> Path:
    spec = importlib.util.find_spec("pymispwarninglists")  # found, not imported: only its data
    if spec is None or not spec.submodule_search_locations:
        raise GateDataError(
            "the package pymispwarninglists is not installed: the false-positive gate needs"
            " its lists of popular domains (pip install pymispwarninglists)"
        )
    return (
        Path(next(iter(spec.submodule_search_locations))) / "data" / "misp-warninglists" / "lists"
    )


@functools.cache
def _popular() -> dict[str, str]:
    """Every popular domain of :data:`POPULAR_LISTS`, lower case without a leading dot, with
    the label of the first list that has it."""
    found: dict[str, str] = {}
    base = _lists_dir()
    for key, label in POPULAR_LISTS.items():
        path = base / key / "list.json"
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))["list"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GateDataError(f"cannot read the MISP warning list {path}: {exc}") from None
        for entry in entries:
            if isinstance(entry, str):
                found.setdefault(entry.strip().lstrip(".").lower(), label)
    for name in _RESERVED_DOMAINS:  # Tranco has example.com and example.org: see module doc
        found.pop(name, None)
    return found


@functools.cache
def _suffixes() -> PublicSuffixList:
    from publicsuffixlist import PublicSuffixList

    # accept_unknown=False: an unlisted last label (``test``, ``localhost``) is not a suffix.
    return PublicSuffixList(accept_unknown=False)


def _is_reserved_name(domain: str) -> bool:
    if domain.rsplit(".", 1)[-1] in _RESERVED_TLDS:
        return True
    return any(domain == name or domain.endswith("." + name) for name in _RESERVED_DOMAINS)


def _domain_reason(domain: str) -> str | None:
    domain = domain.strip().rstrip(".").lower()
    if not domain or _is_reserved_name(domain):
        return None
    if _suffixes().is_public(domain):
        return "public suffix"
    popular = _popular()
    label = popular.get(domain)
    if label is None and domain.startswith("www."):
        label = popular.get(domain[4:])
    return None if label is None else f"popular domain ({label})"


def _address_reason(addr: _Addr) -> str | None:
    for net, what in _SPECIAL:
        if addr.version == net.version and addr in net:
            return f"{what} address"
    return None


def _network_reason(net: _Net) -> str | None:
    widest = _WIDEST[net.version]
    if net.prefixlen < widest:
        return f"network wider than /{widest}"
    for special, what in _SPECIAL:
        if net.version != special.version or not net.overlaps(special):
            continue
        if net.subnet_of(special):  # type: ignore[arg-type]  # same version, checked above
            return f"{what} network"
        return f"network containing {what} addresses"
    return None


def _url_reason(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    try:
        reason = _address_reason(ipaddress.ip_address(host))
    except ValueError:
        reason = _domain_reason(host)
    return None if reason is None else f"home page of a {reason}"


@functools.lru_cache(maxsize=65_536)
def gate_reason(kind: str, value: str) -> str | None:
    """Why the observable ``kind``/``value`` (normalised, as stored) must not be enforced, or
    None when it may be. Pure; a value that does not parse as its kind is not suppressed (the
    store holds only normalised values, so that is not an observable that blocks anything)."""
    if kind == "domain":
        return _domain_reason(value)
    if kind in ("ipv4", "ipv6"):
        try:
            return _address_reason(ipaddress.ip_address(value))
        except ValueError:
            return None
    if kind == "cidr":
        try:
            return _network_reason(ipaddress.ip_network(value, strict=False))
        except ValueError:
            return None
    if kind in EMPTY_FILE_HASHES:
        return "empty-file hash" if value.strip().lower() == EMPTY_FILE_HASHES[kind] else None
    if kind == "url":
        return _url_reason(value)
    return None
