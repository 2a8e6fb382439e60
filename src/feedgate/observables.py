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
import hashlib
import ipaddress
import json
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, NamedTuple, overload
from urllib.parse import urlsplit

import idna
import orjson

__all__ = [
    "ENFORCEABLE_KINDS",
    "MAX_VALUE_LENGTH",
    "EncodedContext",
    "EncodedContexts",
    "InvalidValue",
    "Kind",
    "LayeredContext",
    "Observable",
    "ObservableBatch",
    "context_json",
    "context_value",
    "normalise",
    "normalise_cidr",
    "normalise_domain",
    "normalise_email",
    "normalise_hash",
    "normalise_ip",
    "normalise_ip_range",
    "normalise_url",
    "observable_digest",
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


_NO_CONTEXT: Final[Mapping[str, Any]] = MappingProxyType({})


class EncodedContext(Mapping[str, Any]):
    """A context held as the JSON it is stored as, decoded only when someone reads it.

    Parse workers send contexts to the poller as JSON; the poller stores that text as it is and
    rarely looks inside, so decoding each one (and encoding it again) would be wasted work. Reads
    through the mapping interface see the same keys, values and order as the original dict.
    """

    __slots__ = ("_items", "json")

    def __init__(self, json: str, items: dict[str, Any] | None = None) -> None:
        self.json = json
        self._items = items

    def _data(self) -> dict[str, Any]:
        items = self._items
        if items is None:
            try:
                items = orjson.loads(self.json)
            except orjson.JSONDecodeError:  # text orjson refuses to write, json wrote
                items = _json_loads(self.json)
            self._items = items
        return items

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __bool__(self) -> bool:  # without decoding: "is there a context?" is asked often
        return bool(self._items) if self._items is not None else self.json != "{}"

    def __repr__(self) -> str:
        return repr(self._data())

    def __reduce__(self) -> tuple[Any, ...]:
        return (EncodedContext, (self.json,))


class LayeredContext(Mapping[str, Any]):
    """An indicator's context: its package's context, shared by every indicator of the
    package, with the indicator's own keys over it.

    A pulse's title and description are the same for its twenty (or two thousand) indicators,
    and are often the largest part of their context. Kept as one shared layer, they are encoded,
    sent between processes and stored once per package instead of once per observable. Reads
    see what ``{**shared, **own}`` holds, in that order.
    """

    __slots__ = ("own", "shared")

    def __init__(self, shared: Mapping[str, Any], own: Mapping[str, Any]) -> None:
        self.shared = shared
        self.own = own

    def __getitem__(self, key: str) -> Any:
        own = self.own
        if key in own:
            return own[key]
        return self.shared[key]

    def __contains__(self, key: object) -> bool:
        return key in self.own or key in self.shared

    def __iter__(self) -> Iterator[str]:
        own = self.own
        yield from self.shared
        for key in own:
            if key not in self.shared:
                yield key

    def __len__(self) -> int:
        own = self.own
        return len(self.shared) + sum(1 for key in own if key not in self.shared)

    def __bool__(self) -> bool:
        return bool(self.own) or bool(self.shared)

    def __repr__(self) -> str:
        return repr(self.merged())

    def merged(self) -> dict[str, Any]:
        """The context as one plain dict."""
        return {**self.shared, **self.own}

    def __reduce__(self) -> tuple[Any, ...]:
        return (LayeredContext, (self.shared, self.own))


# Only for text orjson refuses (a lone surrogate): escaped to ASCII, so that a database (UTF-8
# only) can store it, and decoding gives the same text back.
_CONTEXT_ENCODER: Final = json.JSONEncoder(ensure_ascii=True, default=str)
_json_loads: Final = json.loads


def context_json(context: Mapping[str, Any]) -> str:
    """A context as JSON, as stores keep it: keys in the context's order, values JSON cannot
    hold as text.

    orjson does this five times faster than the standard library, which matters at one context
    per indicator; text it refuses (a lone surrogate from a STIX 2 ``\\ud800`` escape) goes
    through the standard library.
    """
    if type(context) is EncodedContext:
        return context.json
    if type(context) is LayeredContext:
        if not context.own:
            return context_json(context.shared)
        plain = context.merged()
    else:
        plain = context if type(context) is dict else dict(context)
    try:
        return orjson.dumps(plain, default=str, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except (TypeError, ValueError):  # JSONEncodeError is a TypeError; UnicodeEncodeError
        return _CONTEXT_ENCODER.encode(plain)


class Observable(NamedTuple):
    """One normalised observable with where it came from.

    ``kind``/``value`` are the identity; ``original_type`` names the feed's own type for kind
    ``other`` (e.g. ``MutexObjectType``); ``context`` holds what an admin needs to judge a match:
    package (pulse) id and title, indicator id, title, type, description, confidence, TLP,
    timestamps (ISO 8601 strings as the feed gave them). Observables of one indicator share one
    context mapping; treat it as read-only.

    A named tuple rather than a dataclass: readers make hundreds of thousands of these per poll
    and ship them between processes, and a tuple is about three times cheaper to build and ten
    times cheaper to pickle.
    """

    kind: Kind
    value: str
    original_type: str | None = None
    context: Mapping[str, Any] = _NO_CONTEXT

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": str(self.kind), "value": self.value}
        if self.original_type:
            out["type"] = self.original_type
        # The identity wins: a context key that happens to be called "kind", "value" or "type"
        # must not overwrite what the observable is.
        for key, item in self.context.items():
            out.setdefault(key, item)
        return out


class EncodedContexts(NamedTuple):
    """A batch's contexts as parse workers send them: each context's own keys as JSON, the
    number of its shared layer (-1: none), and each shared layer's JSON.

    A store keeps contexts as this very text, so it reads these columns directly and never
    builds a mapping per context; readers that want mappings get :meth:`mappings`.
    """

    own: list[str]
    layer_of: list[int]
    layers: list[str]

    def mappings(self) -> list[Mapping[str, Any]]:
        """The contexts: :class:`EncodedContext`, or :class:`LayeredContext` of two."""
        layers = [EncodedContext(text) for text in self.layers]
        return [
            EncodedContext(text)
            if layer < 0
            else LayeredContext(layers[layer], EncodedContext(text))
            for text, layer in zip(self.own, self.layer_of, strict=True)
        ]


class _BuiltOnFirstUse(Sequence[Mapping[str, Any]]):
    """The contexts of :class:`EncodedContexts`, made only if someone looks at them."""

    __slots__ = ("_built", "_encoded")

    def __init__(self, encoded: EncodedContexts) -> None:
        self._encoded = encoded
        self._built: list[Mapping[str, Any]] | None = None

    def _list(self) -> list[Mapping[str, Any]]:
        if self._built is None:
            self._built = self._encoded.mappings()
        return self._built

    @overload
    def __getitem__(self, index: int) -> Mapping[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Mapping[str, Any] | Sequence[Mapping[str, Any]]:
        return self._list()[index]

    def __len__(self) -> int:
        return len(self._encoded.own)


class ObservableBatch(NamedTuple):
    """Observables as columns: how parse workers hand them to a store.

    A poll brings hundreds of thousands of observables; one object each, made only to be taken
    apart again by the store, costs more than the store's own work. Row ``i`` is
    ``kinds[i]``, ``values[i]``, ``original_types[i]`` and ``contexts[context_numbers[i]]``
    (observables of one indicator share one context).
    """

    kinds: list[Kind]
    values: list[str]
    original_types: list[str | None]
    context_numbers: list[int]
    contexts: Sequence[Mapping[str, Any]]
    #: Each row's :func:`observable_digest`, when whoever made the batch computed them (parse
    #: workers do, off the storing process's busiest thread), else None.
    digests: list[bytes] | None = None
    #: The contexts as JSON, when they came that way (from parse workers), else None.
    encoded: EncodedContexts | None = None

    @classmethod
    def of_encoded(
        cls,
        kinds: list[Kind],
        values: list[str],
        original_types: list[str | None],
        context_numbers: list[int],
        encoded: EncodedContexts,
        digests: list[bytes] | None = None,
    ) -> ObservableBatch:
        """A batch whose contexts are JSON, decoded only if someone reads them."""
        contexts = _BuiltOnFirstUse(encoded)
        return cls(kinds, values, original_types, context_numbers, contexts, digests, encoded)

    @property
    def size(self) -> int:
        """How many observables."""
        return len(self.values)

    def observables(self) -> Iterator[Observable]:
        contexts = self.contexts
        for kind, value, original, number in zip(
            self.kinds, self.values, self.original_types, self.context_numbers, strict=True
        ):
            yield Observable(kind, value, original, contexts[number])

    @classmethod
    def of(cls, observables: Iterable[Observable]) -> ObservableBatch:
        """The batch of ``observables`` (their contexts kept shared as they were)."""
        kinds: list[Kind] = []
        values: list[str] = []
        types: list[str | None] = []
        context_numbers: list[int] = []
        contexts: list[Mapping[str, Any]] = []
        numbers: dict[int, int] = {}
        for obs in observables:
            kinds.append(obs.kind)
            values.append(obs.value)
            types.append(obs.original_type)
            context = obs.context
            number = numbers.get(id(context))
            if number is None:  # the batch keeps the context alive, so its id stays unique
                number = numbers[id(context)] = len(contexts)
                contexts.append(context)
            context_numbers.append(number)
        return cls(kinds, values, types, context_numbers, contexts)


def observable_digest(kind: str, value: str) -> bytes:
    """An observable's identity in 32 bytes, as stores key it: SHA-256 of ``kind NUL value``
    (a value may be a 64 kB YARA rule; a database cannot index text that long)."""
    return hashlib.sha256(f"{kind}\0{value}".encode("utf-8", "surrogatepass")).digest()


def context_value(context: Mapping[str, Any], key: str) -> Any:
    """``context.get(key)``, without decoding an :class:`EncodedContext` that cannot hold it."""
    if type(context) is LayeredContext:
        own = context.own
        if (type(own) is not EncodedContext or f'"{key}"' in own.json) and key in own:
            return own[key]
        return context_value(context.shared, key)
    if type(context) is EncodedContext and f'"{key}"' not in context.json:
        return None
    return context.get(key)


# --- input hygiene ----------------------------------------------------------------------------

MAX_VALUE_LENGTH: Final = 65_536
"""The longest text any normaliser looks at; longer input is refused before any other work."""

# Control characters other than the whitespace that surrounds values in feeds (tab, LF, VT, FF,
# CR): refused anywhere. Inside a stripped value every control character is refused, except for
# kind ``other`` (YARA rules and osquery are multi-line), which keeps tab, LF and CR.
_CONTROL: Final = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_INNER_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_INNER_CONTROL_MULTILINE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _prepare(value: object, what: str, *, multiline: bool = False) -> str:
    """``value`` stripped, after the checks every kind shares (type, size, control characters)."""
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be text, got {type(value).__name__}")
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidValue(f"{what} too long: {len(value)} characters (limit {MAX_VALUE_LENGTH})")
    if "\x00" in value:
        raise InvalidValue(f"{what} contains a NUL character")
    text = value.strip()
    inner = _INNER_CONTROL_MULTILINE if multiline else _INNER_CONTROL
    found = _CONTROL.search(value) or inner.search(text)
    if found:
        raise InvalidValue(f"{what} contains a control character (U+{ord(found.group()):04X})")
    found = _SURROGATE.search(text)
    if found:  # from a JSON "\ud800" escape: no text encoding (nor database) can hold it
        raise InvalidValue(
            f"{what} contains U+{ord(found.group()):04X}, half of a UTF-16 surrogate pair"
        )
    if not text:
        raise InvalidValue(f"empty {what}")
    return text


def _show(value: str, limit: int = 80) -> str:
    """A value quoted for an error message, cut short so one bad value cannot flood a log."""
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)


def _reason(exc: BaseException, limit: int = 160) -> str:
    """A library's error message, cut short (some quote the whole offending input)."""
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "…"


# --- refanging -------------------------------------------------------------------------------

# hxxp/hxxps/fxp only as a scheme, i.e. followed by ":" or "[:" (``hxxp://``, ``hxxps[:]//``,
# ``hxxp[://]``): a domain such as ``hxxpool.example`` or ``fxpark.example`` is left alone.
_SCHEME_DEFANG: Final = re.compile(r"^(?:hxxp(s?)|(fxp))(?=\[?:)", re.IGNORECASE)

# Defanged separators. Bracketed forms cannot occur in a valid host, path or query (RFC 3986
# keeps "[" and "]" for IP literals), so they are undone everywhere; the (.)/{.}/(dot)/(at)
# forms are undone in hosts, e-mail addresses and a URL's authority, never in a URL's path or
# query, where parentheses and braces are legitimate characters.
_BRACKET_RULES: Final = (
    (re.compile(r"\[\.\]|\[dot\]", re.IGNORECASE), "."),
    (re.compile(r"\[://\]"), "://"),
    (re.compile(r"\[:\]"), ":"),
    (re.compile(r"\[/\]"), "/"),
    (re.compile(r"\[@\]|\[at\]", re.IGNORECASE), "@"),
)
_OTHER_RULES: Final = (
    (re.compile(r"\(\.\)|\{\.\}|\(dot\)", re.IGNORECASE), "."),
    (re.compile(r"\(at\)", re.IGNORECASE), "@"),
)


def _scheme_refanged(match: re.Match[str]) -> str:
    return "ftp" if match.group(2) else "http" + match.group(1).lower()


def _apply(value: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str:
    for pattern, replacement in rules:
        value = pattern.sub(replacement, value)
    return value


def refang(value: str) -> str:
    """Undo common defanging (``hxxp://evil[.]example``) in a value a feed calls an indicator."""
    value = _SCHEME_DEFANG.sub(_scheme_refanged, value, count=1)
    if "[" in value:
        value = _apply(value, _BRACKET_RULES)
    if "(" in value or "{" in value:
        value = _apply(value, _OTHER_RULES)
    return value


def _refang_once(value: str, what: str) -> str:
    """:func:`refang`, refusing values that would change again (``evil[[.]]example``).

    Without this, normalising twice would not give the same value as normalising once.
    """
    text = refang(value)
    if text != value and refang(text) != text:
        raise InvalidValue(f"{what} is defanged more than once: {_show(value)}")
    return text


# --- IP addresses and networks ---------------------------------------------------------------

_DOTTED_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]+){3}")


def normalise_ip(value: str) -> tuple[Kind, str]:
    """Canonical text of an IPv4 or IPv6 address; IPv4-mapped IPv6 becomes IPv4."""
    text = _refang_once(_prepare(value, "IP address"), "IP address")
    if "%" in text:
        raise InvalidValue("scoped IPv6 addresses (with %zone) are not indicators")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        if _DOTTED_DECIMAL.fullmatch(text) and any(
            len(part) > 1 and part.startswith("0") for part in text.split(".")
        ):
            raise InvalidValue(
                f"IPv4 address with leading zeros is ambiguous (octal?): {_show(value)}"
            ) from None
        raise InvalidValue(f"not an IP address: {_show(value)}") from None
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return Kind.IPV4, str(addr.ipv4_mapped)
        return Kind.IPV6, str(addr)
    return Kind.IPV4, str(addr)


_IPV4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")


def normalise_cidr(value: str) -> tuple[Kind, str]:
    """A network in CIDR notation; host bits must be zero, a /32 or /128 is just an address.

    An IPv4-mapped IPv6 network (``::ffff:10.0.0.0/104``) becomes the IPv4 network it maps, as an
    IPv4-mapped address becomes IPv4.
    """
    text = _refang_once(_prepare(value, "network"), "network")
    if "/" not in text:
        return normalise_ip(text)
    if "%" in text:
        raise InvalidValue("scoped IPv6 networks (with %zone) are not indicators")
    try:
        net: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            raise InvalidValue(f"CIDR with host bits set: {_show(value)}") from None
        raise InvalidValue(f"not a CIDR network: {_show(value)}") from None
    if (
        isinstance(net, ipaddress.IPv6Network)
        and net.prefixlen >= 96
        and net.subnet_of(_IPV4_MAPPED)
    ):
        net = ipaddress.IPv4Network(
            (int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96), strict=True
        )
    if net.num_addresses == 1:
        return normalise_ip(str(net.network_address))
    return Kind.CIDR, str(net)


def _range_end(value: str) -> tuple[Kind, str]:
    """:func:`normalise_ip` of a range's end, through the fast path when it is canonical."""
    fast = _fast_ip(value) if value.__class__ is str else None
    return fast if fast is not None else normalise_ip(value)


def normalise_ip_range(first: str, last: str) -> list[tuple[Kind, str]]:
    """An inclusive address range as the fewest CIDR networks that cover exactly it."""
    kind_a, a = _range_end(first)
    kind_b, b = _range_end(last)
    if kind_a != kind_b:
        raise InvalidValue(f"range mixes IPv4 and IPv6: {_show(first)} - {_show(last)}")
    lo, hi = ipaddress.ip_address(a), ipaddress.ip_address(b)
    if int(lo) > int(hi):
        raise InvalidValue(f"range runs backwards: {a} - {b}")
    out: list[tuple[Kind, str]] = []
    for net in ipaddress.summarize_address_range(lo, hi):
        if net.num_addresses == 1:
            out.append((kind_a, str(net.network_address)))
        else:
            out.append((Kind.CIDR, str(net)))
    if len(out) > 64:
        raise InvalidValue(f"range {a} - {b} needs {len(out)} networks (limit 64)")
    return out


# --- domains ----------------------------------------------------------------------------------

_LDH: Final = frozenset(string.ascii_lowercase + string.digits + "-_")
# What a WHATWG URL parser takes for the last part of an IPv4 address ("ends in a number"):
# such a name is never a DNS name, and in a URL a browser would read it as an address.
_NUMERIC_TLD: Final = re.compile(r"[0-9]+|0x[0-9a-f]*")


def normalise_domain(value: str) -> tuple[Kind, str]:
    """Lower case, IDNA A-labels, no trailing dot; at least two labels; no IP literals.

    Non-ASCII input is mapped with UTS #46 first (so full-width letters and the ideographic full
    stop are understood), then each label is encoded as an IDNA 2008 A-label. Existing
    ``xn--`` labels must be canonical Punycode of a valid U-label. Underscores are allowed in
    ASCII labels (``_dmarc.example.com``).
    """
    text = _refang_once(_prepare(value, "domain name"), "domain name")
    if len(text) > 253 * 4:
        raise InvalidValue(f"domain name too long: {len(text)} characters")
    if not text.isascii():
        try:
            text = idna.uts46_remap(text, std3_rules=False, transitional=False)
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise InvalidValue(f"invalid internationalised domain name: {_reason(exc)}") from None
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidValue("empty domain name")
    if text.startswith("*."):
        raise InvalidValue(f"wildcard domain is a pattern, not a value: {_show(value)}")
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        raise InvalidValue(f"an IP address is not a domain name: {_show(value)}")
    out: list[str] = []
    for label in text.split("."):
        if not label:
            raise InvalidValue(f"empty label in domain name: {_show(value)}")
        if label.isascii():
            low = label.lower()
            if not set(low) <= _LDH:
                raise InvalidValue(f"invalid character in domain name: {_show(value)}")
            if low.startswith("xn--"):
                _check_a_label(low, value)
        else:
            try:
                low = idna.alabel(label).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError) as exc:
                raise InvalidValue(
                    f"invalid internationalised domain name: {_reason(exc)}"
                ) from None
        if len(low) > 63:
            raise InvalidValue(f"label longer than 63 characters in {_show(value)}")
        if low.startswith("-") or low.endswith("-"):
            raise InvalidValue(f"label starts or ends with a hyphen in {_show(value)}")
        out.append(low)
    if len(out) < 2:
        raise InvalidValue(f"a domain needs at least two labels: {_show(value)}")
    if _NUMERIC_TLD.fullmatch(out[-1]):
        raise InvalidValue(f"top-level label is numeric: {_show(value)}")
    result = ".".join(out)
    if len(result) > 253:
        raise InvalidValue(f"domain name longer than 253 characters: {len(result)}")
    return Kind.DOMAIN, result


def _check_a_label(label: str, value: str) -> None:
    """An ``xn--`` label must decode to a valid U-label and be its canonical encoding."""
    try:
        ulabel = idna.decode(label)
        canonical = idna.alabel(ulabel).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidValue(f"invalid punycode label in {_show(value)}") from None
    if canonical != label:
        raise InvalidValue(f"non-canonical punycode label in {_show(value)}")


# --- e-mail addresses ---------------------------------------------------------------------------

_LOCAL_FORBIDDEN: Final = frozenset(' \t\r\n<>(),;:"[]\\@')


def normalise_email(value: str) -> tuple[Kind, str]:
    """``local@domain``: local part kept as given, domain normalised (lower case, IDNA).

    ``mailto:`` and angle brackets are taken off (in either order). A domain literal keeps its
    brackets: ``a@[192.0.2.1]``, ``a@[IPv6:2001:db8::1]`` (RFC 5321 spelling).
    """
    text = _refang_once(_prepare(value, "e-mail address"), "e-mail address")
    for _ in range(2):
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        if text[:7].lower() == "mailto:":
            text = text[7:]
    local, sep, domain = text.rpartition("@")
    if not sep or not local or not domain:
        raise InvalidValue(f"not an e-mail address: {_show(value)}")
    if (
        len(local) > 64
        or set(local) & _LOCAL_FORBIDDEN
        or any(c.isspace() or not c.isprintable() for c in local)
    ):
        raise InvalidValue(f"invalid local part in e-mail address: {_show(value)}")
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        if literal[:5].lower() == "ipv6:":
            literal = literal[5:]
        try:
            kind, ip = normalise_ip(literal)
        except InvalidValue as exc:
            raise InvalidValue(f"invalid address literal in e-mail address: {exc}") from None
        return Kind.EMAIL, f"{local}@[IPv6:{ip}]" if kind is Kind.IPV6 else f"{local}@[{ip}]"
    try:
        _, dom = normalise_domain(domain)
    except InvalidValue as exc:
        raise InvalidValue(f"invalid domain in e-mail address: {exc}") from None
    return Kind.EMAIL, f"{local}@{dom}"


# --- URLs -------------------------------------------------------------------------------------

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
_PERCENT_RE: Final = re.compile(r"%[0-9a-fA-F]{2}")
_SCHEME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_DEFANGED_SCHEME_SEP: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)(?:://|\[://\]|\[:\]//)")
_AUTHORITY_END: Final = re.compile(r"\[/\]|[/?#]")
_HOST_PORT: Final = re.compile(r"(?:\[([^\[\]]*)\]|([^\[\]:]*))(?::([0-9]*))?")
_USERINFO_FORBIDDEN: Final = frozenset("[]\\")


def _upper_percent(text: str) -> str:
    return _PERCENT_RE.sub(lambda m: m.group(0).upper(), text)


def url_host(url: str) -> str | None:
    """The host of a normalised URL (for domain context), or None (also for what is no URL)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host or None


def _refang_url(text: str) -> str:
    """Refang a URL: scheme and authority fully, path and query only in bracketed forms."""
    text = _SCHEME_DEFANG.sub(_scheme_refanged, text, count=1)
    sep = _DEFANGED_SCHEME_SEP.match(text)
    head, rest = (sep.group(1) + "://", text[sep.end() :]) if sep else ("", text)
    end = _AUTHORITY_END.search(rest)
    cut = end.start() if end else len(rest)
    authority = _refang_once(rest[:cut], "URL")
    tail = rest[cut:]
    if "[" in tail:
        once = _apply(tail, _BRACKET_RULES)
        if once != tail and _apply(once, _BRACKET_RULES) != once:
            raise InvalidValue(f"URL is defanged more than once: {_show(text)}")
        tail = once
    return head + authority + tail


def normalise_url(value: str) -> tuple[Kind, str]:
    """Scheme and host lower case, IDNA host, default port dropped, path byte-exact.

    Only percent-escape case is normalised (``%2f`` → ``%2F``, in userinfo, path and query); a
    URL without a scheme is taken as ``http://`` because feeds commonly list
    ``evil.example/path``. The fragment is dropped (it never leaves the client); an empty path is
    ``/`` for the schemes with a default port.
    """
    text = _refang_url(_prepare(value, "URL"))
    if any(c.isspace() for c in text):
        raise InvalidValue(f"URL contains whitespace: {_show(value)}")
    if not _SCHEME_RE.match(text):
        if text.startswith("//"):
            text = "http:" + text
        else:
            first = _AUTHORITY_END.split(text, maxsplit=1)[0]
            userinfo, _, hostport = first.rpartition("@")
            if ":" in userinfo or (":" in hostport and not _HOST_PORT.fullmatch(hostport)):
                raise InvalidValue(f"not a URL (no //authority): {_show(value)}")
            text = "http://" + text
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidValue(f"not a URL: {_reason(exc)}: {_show(value)}") from None
    scheme = parts.scheme.lower()
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if set(userinfo) & _USERINFO_FORBIDDEN:
        raise InvalidValue(f"invalid user information in URL: {_show(value)}")
    match = _HOST_PORT.fullmatch(hostport)
    if not match:
        raise InvalidValue(f"invalid host or port in URL: {_show(value)}")
    bracketed, plain, port_text = match.groups()
    host: str
    if bracketed is not None:
        try:
            kind, ip = normalise_ip(bracketed)
        except InvalidValue as exc:
            raise InvalidValue(f"invalid host in URL: {exc}") from None
        if kind is Kind.IPV4 and ":" not in bracketed:
            raise InvalidValue(f"an IPv4 address in brackets is not a URL host: {_show(value)}")
        host = f"[{ip}]" if kind is Kind.IPV6 else ip
    elif not plain:
        raise InvalidValue(f"URL without a host: {_show(value)}")
    else:
        try:
            host = normalise_ip(plain)[1]
        except InvalidValue:
            try:
                host = normalise_domain(plain)[1]
            except InvalidValue as exc:
                raise InvalidValue(f"invalid host in URL: {exc}") from None
    netloc = host
    if userinfo not in ("", ":"):
        netloc = _upper_percent(userinfo) + "@" + host
    if port_text:
        if len(port_text) > 5 or int(port_text) > 65535:
            raise InvalidValue(f"port out of range in URL: {_show(value)}")
        port = int(port_text)
        if port != _DEFAULT_PORTS.get(scheme):
            netloc += f":{port}"
    path = _upper_percent(parts.path) or ("/" if scheme in _DEFAULT_PORTS else "")
    result = f"{scheme}://{netloc}{path}"
    if "?" in text.split("#", 1)[0]:
        result += "?" + _upper_percent(parts.query)
    return Kind.URL, result


# --- hashes -----------------------------------------------------------------------------------

_HASH_LENGTHS: Final = {Kind.MD5: 32, Kind.SHA1: 40, Kind.SHA256: 64}
_HASH_BY_LENGTH: Final = {length: kind for kind, length in _HASH_LENGTHS.items()}
_HEX: Final = frozenset(string.hexdigits)


def normalise_hash(value: str, kind: Kind | None = None) -> tuple[Kind, str]:
    """Lower-case hex of the right length; the kind is inferred from the length when not given."""
    if kind is not None and kind not in _HASH_LENGTHS:
        raise InvalidValue(f"{kind} is not a hash kind")
    text = _prepare(value, "hash").lower()
    if not set(text) <= _HEX:
        raise InvalidValue(f"not a hex digest: {_show(value)}")
    if kind is None:
        inferred = _HASH_BY_LENGTH.get(len(text))
        if inferred is None:
            raise InvalidValue(f"no hash has {len(text)} hex digits: {_show(value)}")
        return inferred, text
    kind = Kind(kind)
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


# --- fast paths -------------------------------------------------------------------------------
# Feeds are overwhelmingly already canonical (OTX sends lower-case hosts, dotted-quad IPv4 without
# leading zeros, lower-case digests). A value that matches one of these strict patterns is its own
# normal form, so the full normaliser (IDNA, ipaddress, urlsplit: 5-20 µs each) is skipped. The
# patterns are deliberately narrow; anything unusual takes the full path. A property test checks
# that both paths agree.

_OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_FAST_IPV4: Final = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")
_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_FAST_DOMAIN: Final = re.compile(rf"(?:{_LABEL}\.)+[a-z](?:[a-z0-9-]{{0,61}}[a-z0-9])?")
_URL_CHARS: Final = r"A-Za-z0-9._~!$&'*+,;=:@/-"
_ESCAPE: Final = r"%[0-9A-F]{2}"  # upper-case escapes are already canonical
_FAST_HOST: Final = rf"{_FAST_IPV4.pattern}|{_FAST_DOMAIN.pattern}"
# A port without leading zeros (the normaliser writes it as a number); whether it is in range
# and not the scheme's default is checked after the match. Path and query are possessive (runs
# of plain characters at a time, never given back): neither can end anywhere but at the first
# character it cannot hold, so backtracking could never find another match.
_FAST_URL: Final = re.compile(
    rf"(https?)://({_FAST_HOST})(?::([1-9][0-9]{{0,4}}))?"
    rf"(/(?:[{_URL_CHARS}]++|{_ESCAPE})*+)?(\?(?:[{_URL_CHARS}?]++|{_ESCAPE})*+)?"
)
_FAST_EMAIL: Final = re.compile(rf"([A-Za-z0-9._+-]{{1,64}})@({_FAST_DOMAIN.pattern})")
_FAST_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


_FAST_MAX: Final = 2048


_FAST_IPV6_CHARS: Final = re.compile(r"[0-9a-f:]{2,39}")


def _fast_ipv6(value: str) -> tuple[Kind, str] | None:
    """An IPv6 address already in the form ``str(ipaddress.IPv6Address(...))`` writes (RFC 5952:
    lower case, no leading zeros, the first longest run of two or more zero groups as ``::``),
    not IPv4-mapped (that one becomes IPv4)."""
    if not _FAST_IPV6_CHARS.fullmatch(value):
        return None
    head, sep, tail = value.partition("::")
    if sep:
        if "::" in tail:
            return None
        first = head.split(":") if head else []
        last = tail.split(":") if tail else []
        missing = 8 - len(first) - len(last)
        if missing < 2:
            return None  # "::" for one group is not how the address is written
        groups = [*first, *["0"] * missing, *last]
    else:
        groups = value.split(":")
        if len(groups) != 8:
            return None
    for group in groups:
        if not group or len(group) > 4 or (group[0] == "0" and group != "0"):
            return None
    if groups[:6] == ["0", "0", "0", "0", "0", "ffff"]:
        return None  # IPv4-mapped
    # The first longest run of zero groups, as ipaddress compresses it.
    best_start, best_len, start, run = -1, 0, -1, 0
    for index, group in enumerate(groups):
        if group == "0":
            if run == 0:
                start = index
            run += 1
            if run > best_len:
                best_start, best_len = start, run
        else:
            run = 0
    if best_len > 1:
        canonical = ":".join(groups[:best_start]) + "::" + ":".join(groups[best_start + best_len :])
    else:
        canonical = value if not sep else ""
    return (Kind.IPV6, value) if canonical == value else None


def _fast_ip(value: str) -> tuple[Kind, str] | None:
    """IPv4 or IPv6 (the normaliser of either kind reads both)."""
    if _FAST_IPV4.fullmatch(value):
        return Kind.IPV4, value
    return _fast_ipv6(value) if ":" in value else None


def _fast_domain(value: str) -> tuple[Kind, str] | None:
    if len(value) <= 253 and "--" not in value and _FAST_DOMAIN.fullmatch(value):
        return Kind.DOMAIN, value
    return None


def _fast_hex(kind: Kind, digits: int) -> Callable[[str], tuple[Kind, str] | None]:
    pattern = re.compile(rf"[0-9a-fA-F]{{{digits}}}")

    def fast(value: str) -> tuple[Kind, str] | None:
        return (kind, value.lower()) if pattern.fullmatch(value) else None

    return fast


def _fast_url(value: str) -> tuple[Kind, str] | None:
    if len(value) > _FAST_MAX:
        return None  # long values take the full path, size limit included
    m = _FAST_URL.fullmatch(value)
    if m is None:
        return None
    scheme, host, port, path, query = m.groups()
    if len(host) > 253 or "--" in host:
        return None
    if port is not None and (int(port) > 65535 or port == _FAST_DEFAULT_PORTS[scheme]):
        return None
    if path is None:
        netloc = host if port is None else f"{host}:{port}"
        return Kind.URL, f"{scheme}://{netloc}/{query or ''}"
    return Kind.URL, value


def _fast_email(value: str) -> tuple[Kind, str] | None:
    if len(value) > _FAST_MAX:
        return None
    m = _FAST_EMAIL.fullmatch(value)
    if m is None:
        return None
    host = m.group(2)
    if len(host) > 253 or "--" in host:
        return None
    return Kind.EMAIL, value


#: The fast path of each kind that has one: the normal form of an already-canonical value, or
#: None to take the full path. Each one refuses long values itself (by the pattern's own bounds
#: or by _FAST_MAX), so values over the size limits always take the full path.
FAST_NORMALISERS: Final[dict[Kind, Callable[[str], tuple[Kind, str] | None]]] = {
    Kind.IPV4: _fast_ip,
    Kind.IPV6: _fast_ip,
    Kind.DOMAIN: _fast_domain,
    Kind.MD5: _fast_hex(Kind.MD5, 32),
    Kind.SHA1: _fast_hex(Kind.SHA1, 40),
    Kind.SHA256: _fast_hex(Kind.SHA256, 64),
    Kind.URL: _fast_url,
    Kind.EMAIL: _fast_email,
}


def _fast(kind: Kind, value: str) -> tuple[Kind, str] | None:
    """The normal form of an already-canonical value, or None to take the full path."""
    fast = FAST_NORMALISERS.get(kind)
    if fast is None or len(value) > _FAST_MAX:
        return None
    return fast(value)


def normalise(kind: Kind | str, value: str) -> tuple[Kind, str]:
    """Normalise ``value`` as ``kind``; returns the (possibly refined) kind and canonical value.

    The kind may change where the value says more than the feed did: an IPv4-mapped IPv6 address
    is IPv4, ``ipv4`` given an IPv6 address is ``ipv6``, a /32 "CIDR" is an address. ``other``
    values are only stripped (and, like every kind, refused when empty, huge or holding control
    characters other than tab and line breaks). An unknown kind is an :class:`InvalidValue` too.
    """
    if kind.__class__ is not Kind:
        try:
            kind = Kind(kind)
        except ValueError:
            raise InvalidValue(f"unknown observable kind: {_show(str(kind))}") from None
    if value.__class__ is str:
        fast = _fast(kind, value)
        if fast is not None:
            return fast
    return _normalise_full(kind, value)


def _normalise_full(kind: Kind, value: str) -> tuple[Kind, str]:
    """:func:`normalise` without the fast paths (the reference the fast paths must agree with)."""
    if kind is Kind.OTHER:
        return Kind.OTHER, _prepare(value, "value", multiline=True)
    return _NORMALISERS[kind](value)
