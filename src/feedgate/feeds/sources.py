"""A feed source: where to poll, how, how often and what to enforce (design.md "Feed sources").

:class:`Source` is an immutable record; :func:`validate` checks one and returns it normalised, or
raises :class:`SourceError` naming the field and saying how to fix it; :func:`make_source` is the
one way a source is written (CLI, REST API, ``feedgate up``): changes onto a base, then
:func:`validate`. Secrets (``password``, ``key_password``, and the ``username`` when
``username_secret``: OTX's user name *is* its API key) are plaintext in memory only: ``repr`` and
every face mask them (:func:`shown_username`), and the store encrypts them with
:mod:`feedgate.feeds.secrets`. Duplicate names are the store's to refuse.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import idna

from feedgate.observables import ENFORCEABLE_KINDS

__all__ = [
    "ALL_ENFORCE",
    "MASK",
    "MAX_DURATION",
    "MAX_NAME_LENGTH",
    "MAX_RETRIES",
    "MAX_SEGMENTS",
    "MAX_TIMEOUT",
    "MIN_POLLING_INTERVAL",
    "MIN_TIMEOUT",
    "MODES",
    "NAME_PATTERN",
    "OPTION_OF",
    "SECRET_FIELDS",
    "SECRET_SET",
    "TAXII_VERSIONS",
    "WRITABLE_FIELDS",
    "Source",
    "SourceError",
    "client_options",
    "endpoint",
    "format_duration",
    "is_otx",
    "make_source",
    "parse_duration",
    "secret_by_default",
    "shown_username",
    "username_is_secret",
    "validate",
]

#: Every kind a source can enforce, as plain strings (the default: all of them).
ALL_ENFORCE: Final[frozenset[str]] = frozenset(kind.value for kind in ENFORCEABLE_KINDS)
#: The fields that hold secrets: never printed, stored encrypted.
SECRET_FIELDS: Final = ("password", "key_password")
#: What is shown in place of a secret that is set.
MASK: Final = "********"
#: What is shown in place of a secret user name (an API key): that it is set, nothing of it.
SECRET_SET: Final = "(secret, set)"
TAXII_VERSIONS: Final = ("1.0", "1.1")
#: What a source's matches do: ``enforce`` (the rules act on them) or ``monitor`` (they are
#: reported as what the rules *would have* done, and nothing is done): a new feed can be
#: watched before it blocks mail (``feedgate source edit NAME --mode enforce``).
MODES: Final = ("enforce", "monitor")
MIN_POLLING_INTERVAL: Final = timedelta(minutes=5)
MAX_RETRIES: Final = 10
MAX_NAME_LENGTH: Final = 64
#: The longest polling interval, age or segment: a century keeps every window and due time a
#: date (``now ± duration``) that both Python and the databases can hold.
MAX_DURATION: Final = timedelta(days=36500)
#: Segments in a first poll's window (the age), at most: each is a request, so a 1 s segment over
#: 30 days would be 2.6 million of them.
MAX_SEGMENTS: Final = 10_000
#: Bounds of a source's per-request timeout (connect, and each read of the answer): under a
#: second every slow link fails; over half an hour a silent server holds the source's poll (and
#: its lease) for nothing.
MIN_TIMEOUT: Final = timedelta(seconds=1)
MAX_TIMEOUT: Final = timedelta(minutes=30)
_MINUTE, _HOUR, _DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)


class SourceError(ValueError):
    """A source field that cannot be used; ``field`` names it, the message says how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    hostname: str
    collection: str
    description: str = ""
    enabled: bool = True
    port: int = 443
    use_https: bool = True
    poll_path: str = "/taxii/poll"
    discovery_path: str | None = None
    taxii_version: str = "1.1"
    username: str | None = None  # a secret when username_secret (OTX: the API key)
    #: Whether the user name is a secret (stored encrypted, shown as SECRET_SET); always for
    #: OTX. None (not given) is decided when the source is made, by :func:`username_is_secret`:
    #: a Source holds True or False, so it compares and stores as what it is.
    username_secret: bool | None = None
    password: str | None = None  # plaintext in memory only; never printed (repr hides it)
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None  # idem
    ca_cert: str | None = None
    verify_ssl: bool = True
    proxy_url: str | None = None
    polling_interval: timedelta = timedelta(minutes=60)
    age: timedelta = timedelta(days=30)
    poll_segment: timedelta = timedelta(days=1)
    max_retries: int = 3
    #: Per request: to connect, and for each read of the answer (a silent server fails then).
    timeout: timedelta = timedelta(seconds=60)
    enforce: frozenset[str] = field(default=ALL_ENFORCE)
    #: The false-positive gate (feedgate.mail.gate): this source's observables that would block
    #: the world (google.com, 10.0.0.0/8, the empty file's hash) are never enforced. On unless
    #: the admin trusts the feed with them.
    fp_gate: bool = True
    #: ``enforce`` or ``monitor`` (:data:`MODES`): in monitor mode the source's matches are
    #: logged as "would have" and take no action on the message.
    mode: str = "enforce"
    #: Secret fields stored encrypted under a key this process does not have (the key changed,
    #: or the database moved without it): None here, kept as stored by an update that does not
    #: set them, and a poll of the source fails saying so (not the whole schedule). Read from
    #: the store only; not compared.
    unreadable_secrets: frozenset[str] = field(default=frozenset(), compare=False)

    def __post_init__(self) -> None:
        if self.username_secret is None:
            object.__setattr__(self, "username_secret", username_is_secret(self))

    def __repr__(self) -> str:
        parts = []
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in SECRET_FIELDS and value is not None:
                parts.append(f"{item.name}={MASK!r}")
            elif item.name == "username":
                parts.append(f"username={shown_username(self)!r}")
            elif item.name == "enforce":
                parts.append(f"enforce={sorted(value)!r}")
            else:
                parts.append(f"{item.name}={value!r}")
        return f"Source({', '.join(parts)})"

    __str__ = __repr__


#: The ``feedgate source`` option that sets each field, for messages (the CLI's and those that
#: tell the admin what to enter again).
OPTION_OF: Final[dict[str, str]] = {
    "name": "NAME",
    "description": "--description",
    "hostname": "--hostname",
    "port": "--port",
    "use_https": "--https/--no-https",
    "poll_path": "--poll-path",
    "discovery_path": "--discovery-path",
    "collection": "--collection",
    "taxii_version": "--taxii-version",
    "username": "--username-env",
    "username_secret": "--username-secret/--no-username-secret",
    "password": "--password-env",
    "cert_file": "--cert",
    "key_file": "--key",
    "key_password": "--key-password-env",
    "ca_cert": "--ca-cert",
    "verify_ssl": "--verify/--no-verify",
    "proxy_url": "--proxy-url",
    "polling_interval": "--interval",
    "age": "--age",
    "poll_segment": "--segment",
    "max_retries": "--retries",
    "timeout": "--timeout",
    "enforce": "--enforce/--no-enforce",
    "fp_gate": "--fp-gate/--no-fp-gate",
    "mode": "--mode",
}

#: The fields a source is written with (CLI options, REST API bodies): all but what the store
#: alone knows.
WRITABLE_FIELDS: Final = frozenset(
    item.name for item in dataclasses.fields(Source) if item.name != "unreadable_secrets"
)
#: Durations among them: given as text (``"60m"``) by the CLI and the API alike.
_DURATION_FIELDS: Final = ("polling_interval", "age", "poll_segment", "timeout")


def unreadable_secrets_problem(source: Source, key_origin: str) -> str:
    """What to tell the admin when ``source``'s stored secrets cannot be decrypted."""
    names = " and ".join(sorted(source.unreadable_secrets)).replace("username", "user name")
    option = " ".join(f"{OPTION_OF[name]} VAR" for name in sorted(source.unreadable_secrets))
    return (
        f"the stored {names} cannot be decrypted with the current secret key ({key_origin}):"
        f" the key changed since it was stored, or cannot be read; restore that key, or enter"
        f" it again with feedgate source edit {source.name} {option}"
    )


# -- durations ------------------------------------------------------------------------------------

_UNITS: Final = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION: Final = re.compile(r"(\d+)\s*([wdhms])")


def parse_duration(text: str, field: str = "duration") -> timedelta:
    """``"90s"``, ``"60m"``, ``"1h"``, ``"30d"``, ``"2w"`` or a sum such as ``"1h30m"``.

    Raises :class:`SourceError` (a ``ValueError``) for anything else, naming ``field``.
    """
    compact = "".join(str(text).split()).lower()
    if not compact:
        raise SourceError(field, "empty duration: give a number and a unit, e.g. 60m, 1h, 30d")
    total = 0
    pos = 0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(compact):
        hint = " (a unit is required)" if compact.isdigit() else ""
        raise SourceError(
            field,
            f"{_show(text)} is not a duration{hint}: give a number and a unit "
            "s, m, h, d or w, e.g. 90s, 60m, 1h, 30d, 2w",
        )
    if total > MAX_DURATION.total_seconds():  # also beyond what a timedelta can hold
        raise SourceError(field, _too_long(_show(text)))
    return timedelta(seconds=total)


def _too_long(shown: str) -> str:
    return f"{shown} is too long: give at most {format_duration(MAX_DURATION)} (100 years)"


def format_duration(value: timedelta) -> str:
    """The shortest text :func:`parse_duration` reads back as ``value``: ``"60m"`` → ``"1h"``."""
    seconds = value.total_seconds()
    if seconds != int(seconds):
        return f"{seconds:g}s"  # not parseable back; sub-second durations are never valid here
    whole = int(seconds)
    if whole == 0:
        return "0s"
    sign = "-" if whole < 0 else ""
    whole = abs(whole)
    for unit, size in _UNITS.items():
        if whole % size == 0:
            return f"{sign}{whole // size}{unit}"
    return f"{sign}{whole}s"  # unreachable: every integer is a whole number of seconds


# -- validation -----------------------------------------------------------------------------------

#: What a source's name may be (up to MAX_NAME_LENGTH characters): it appears in commands and URLs.
NAME_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_NAME: Final = re.compile(NAME_PATTERN)
_LABEL: Final = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _check_name(name: str) -> str:
    if not name:
        raise SourceError("name", "empty: give a name such as otx or partner-feed")
    if len(name) > MAX_NAME_LENGTH or not _NAME.fullmatch(name):
        raise SourceError(
            "name",
            f"{_show(name)} cannot be used: use at most {MAX_NAME_LENGTH} letters, digits, "
            "'-', '_' or '.', starting with a letter or digit (e.g. otx-main)",
        )
    return name


def _check_hostname(hostname: str) -> str:
    what = "hostname"
    text = hostname.strip()
    if not text:
        raise SourceError(what, "empty: give the server's host name, e.g. otx.alienvault.com")
    if "://" in text or "/" in text or "?" in text or "#" in text:
        raise SourceError(
            what,
            f"{_show(text)} looks like a URL: give the host name only, e.g. "
            "otx.alienvault.com; the path goes in the polling path (--poll-path), the port in"
            " the port (--port) and http/https in Use HTTPS (--https/--no-https)",
        )
    if "@" in text:
        raise SourceError(
            what, f"{_show(text)}: give the host name only; credentials go in --username"
        )
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return ipaddress.ip_address(bare).compressed
    except ValueError:
        pass
    if ":" in text:
        raise SourceError(what, f"{_show(text)}: give the host name only; the port goes in --port")
    name = text.rstrip(".")
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii") if not name.isascii() else name
    except idna.IDNAError:
        ascii_name = ""
    ascii_name = ascii_name.lower()
    labels = ascii_name.split(".")
    if (
        not ascii_name
        or len(ascii_name) > 253
        or not all(_LABEL.fullmatch(label) for label in labels)
    ):
        raise SourceError(
            what,
            f"{_show(text)} is not a host name: use letters, digits, '-' and dots, "
            "e.g. otx.alienvault.com, or an IP address",
        )
    return ascii_name


def _check_path(what: str, path: str, option: str) -> str:
    if not path.startswith("/"):
        raise SourceError(
            what,
            f"{_show(path)} must start with '/': give the path on the server, e.g. "
            f"{option} /taxii/poll",
        )
    if "://" in path or any(ch.isspace() for ch in path) or _CONTROL.search(path):
        raise SourceError(
            what,
            f"{_show(path)} is not a URL path: give only the path on the server, e.g. "
            f"{option} /taxii/poll (no spaces; the host goes in --hostname)",
        )
    return path


def _check_proxy(url: str) -> str:
    what = "proxy_url"
    hint = "give it as http://host:port or https://host:port, e.g. http://proxy.example:3128"
    if url.strip().lower() == "noproxy":
        return "noproxy"  # the client's way to say: no proxy, not even the environment's
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise SourceError(what, f"{_show(url)} is not a proxy URL: {hint}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise SourceError(what, f"{_show(url)} has no http:// or https:// scheme: {hint}")
    if parts.username is not None or parts.password is not None:
        raise SourceError(
            what, "credentials in the proxy URL are not supported (they would be shown): " + hint
        )
    if not parts.hostname or port is None:
        raise SourceError(what, f"{_show(url)} needs a host and a port: {hint}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise SourceError(what, f"{_show(url)} must not have a path: {hint}")
    return url.strip()


def _check_durations(source: Source) -> None:
    for what in ("polling_interval", "age", "poll_segment"):
        value = getattr(source, what)
        if value > MAX_DURATION:
            raise SourceError(what, _too_long(format_duration(value)))
    if source.polling_interval < MIN_POLLING_INTERVAL:
        raise SourceError(
            "polling_interval",
            f"{format_duration(source.polling_interval)} is too often: poll at most every "
            f"{format_duration(MIN_POLLING_INTERVAL)} (e.g. --interval 60m)",
        )
    if source.age <= timedelta(0):
        raise SourceError(
            "age", f"{format_duration(source.age)}: must be more than zero, e.g. --age 30d"
        )
    if source.poll_segment <= timedelta(0):
        raise SourceError(
            "poll_segment",
            f"{format_duration(source.poll_segment)}: must be more than zero, e.g. --segment 1d",
        )
    if source.poll_segment > source.age:
        raise SourceError(
            "poll_segment",
            f"{format_duration(source.poll_segment)} is longer than the age "
            f"{format_duration(source.age)}: give a segment of at most the age "
            "(e.g. --segment 1d) or a longer --age",
        )
    if source.age / source.poll_segment > MAX_SEGMENTS:
        least = source.age / MAX_SEGMENTS
        unit = next(u for u in (_MINUTE, _HOUR, _DAY) if least <= u * 60 or u == _DAY)
        shortest = unit * math.ceil(least / unit)  # in a round unit: 5m, 4h, 4d
        raise SourceError(
            "poll_segment",
            f"{format_duration(source.poll_segment)} over an age of {format_duration(source.age)}"
            f" makes {math.ceil(source.age / source.poll_segment):,} requests on a first poll:"
            f" give a segment of at least {format_duration(shortest)}"
            f" (--segment {format_duration(shortest)}: at most {MAX_SEGMENTS:,} segments)",
        )


def _check_timeout(value: timedelta) -> None:
    if not MIN_TIMEOUT <= value <= MAX_TIMEOUT:
        raise SourceError(
            "timeout",
            f"{format_duration(value)} is out of range: give at least"
            f" {format_duration(MIN_TIMEOUT)} and at most {format_duration(MAX_TIMEOUT)}"
            " (e.g. --timeout 60s)",
        )


#: Passwords that say "none needed" (OTX ignores the password; its docs and cabby's examples put
#: ``x`` or ``foo`` there): with one of them, the user name is the credential, an API key.
_PLACEHOLDER_PASSWORDS: Final = frozenset(
    {
        "none", "null", "nil", "dummy", "foo", "bar", "test", "pass", "password", "passwd",
        "placeholder", "unused", "ignored", "anything", "otx", "blank", "empty", "secret",
        "apikey", "api_key", "api-key", "changeme", "nopassword", "n/a",
    }
)  # fmt: skip


def is_otx(hostname: str) -> bool:
    """Whether ``hostname`` (normalised) is AlienVault OTX, whose user name is the API key."""
    return hostname == "alienvault.com" or hostname.endswith(".alienvault.com")


def secret_by_default(username: str | None, password: str | None) -> bool:
    """Whether a user name is a secret when the source does not say: when the password is empty
    or a placeholder (three characters at most, a word such as ``dummy``, or the user name
    again), the user name is what authenticates: an API key, as OTX's and the hub's are."""
    if not isinstance(password, str):  # None; or not text, which validate refuses
        return True
    word = password.strip().lower()
    return len(word) <= 3 or word in _PLACEHOLDER_PASSWORDS or password == username


def username_is_secret(source: Source) -> bool:
    """Whether ``source``'s user name is a secret: always for OTX; else as ``username_secret``
    says, or (None, not yet decided) by :func:`secret_by_default`."""
    if isinstance(source.hostname, str) and is_otx(source.hostname.strip().rstrip(".").lower()):
        return True
    if source.username_secret is None:
        return secret_by_default(source.username, source.password)
    return source.username_secret


def _username_secret(source: Source, hostname: str) -> bool:
    if is_otx(hostname) and source.username_secret is False:
        raise SourceError(
            "username_secret",
            "OTX's user name is its API key: it is always kept secret (drop --no-username-secret)",
        )
    return username_is_secret(dataclasses.replace(source, hostname=hostname))


def shown_username(source: Source) -> str | None:
    """The user name as every face shows it (CLI, REST API, ``repr``): None when there is none,
    :data:`SECRET_SET` when it is a secret (:func:`username_is_secret`), else the name itself."""
    unreadable = "username" in source.unreadable_secrets
    if source.username is None and not unreadable:
        return None
    if unreadable or username_is_secret(source):
        return SECRET_SET
    return source.username


#: What a field's declared type asks for, in words (for the message when it is something else).
_WANTED: Final = {
    "str": "text",
    "str | None": "text or null",
    "bool": "true or false",
    "bool | None": "true, false or null",
    "int": "a whole number",
    "timedelta": "a duration",
    "frozenset[str]": "a set of observable kinds",
}


def _check_types(source: Source) -> None:
    """Each field holds what its type says (a source may come from JSON, not only from the
    CLI's typed options), and its text can be stored: no NUL, no lone surrogate."""
    for item in dataclasses.fields(source):
        kind, value = str(item.type), getattr(source, item.name)
        # a user name may be an API key: never echoed, whatever username_secret says
        secret = item.name in SECRET_FIELDS or item.name == "username"
        if kind in ("str | None", "bool | None") and value is None:
            continue
        if kind in ("str", "str | None"):
            good = isinstance(value, str)
        elif kind in ("bool", "bool | None"):
            good = isinstance(value, bool)
        elif kind == "int":
            good = isinstance(value, int) and not isinstance(value, bool)
        elif kind == "timedelta":
            good = isinstance(value, timedelta)
        elif kind == "frozenset[str]":
            good = isinstance(value, set | frozenset) and all(isinstance(v, str) for v in value)
        else:  # a new field needs its check here (and in _WANTED)
            raise AssertionError(f"Source.{item.name}: no check for type {kind}")
        if not good:
            shown = "a value" if secret else _show(value)
            raise SourceError(
                item.name, f"{shown} ({type(value).__name__}) cannot be used: give {_WANTED[kind]}"
            )
        if isinstance(value, str):
            _check_text(item.name, value, secret)


def _check_text(what: str, value: str, secret: bool) -> None:
    shown = "the value" if secret else _show(value)
    if "\x00" in value:
        raise SourceError(what, f"{shown} contains a NUL character (\\x00): remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceError(
            what,
            f"{shown} is not valid Unicode (it holds a lone surrogate such as \\ud800): "
            "send the text as UTF-8",
        ) from None


def validate(source: Source) -> Source:
    """``source`` checked and normalised (host name lower case, IDNA), or :class:`SourceError`."""
    _check_types(source)
    changes: dict[str, Any] = {}
    _check_name(source.name)
    changes["hostname"] = _check_hostname(source.hostname)
    collection = source.collection.strip()
    if not collection:
        raise SourceError(
            "collection", "empty: give the TAXII collection to poll, e.g. --collection user_AV"
        )
    if _CONTROL.search(collection):
        raise SourceError("collection", f"{_show(collection)} contains control characters")
    changes["collection"] = collection
    if isinstance(source.port, bool) or not 1 <= source.port <= 65535:
        raise SourceError(
            "port", f"{source.port} is out of range: give a port from 1 to 65535 (e.g. 443)"
        )
    changes["poll_path"] = _check_path("poll_path", source.poll_path, "--poll-path")
    if source.discovery_path is not None:
        path = source.discovery_path.strip()
        changes["discovery_path"] = (
            _check_path("discovery_path", path, "--discovery-path") if path else None
        )
    if source.taxii_version not in TAXII_VERSIONS:
        raise SourceError(
            "taxii_version",
            f"{_show(source.taxii_version)} is not a TAXII version: give 1.0 or 1.1",
        )
    # A secret stored under another key (None here) is set all the same: an update keeps it.
    has = {
        name: getattr(source, name) is not None or name in source.unreadable_secrets
        for name in SECRET_FIELDS
    }
    if has["password"] and not (source.username or "username" in source.unreadable_secrets):
        raise SourceError(
            "password", "a password needs a user name: give --username too (or drop the password)"
        )
    if source.key_file and not source.cert_file:
        raise SourceError(
            "key_file", "a key file needs its certificate: give --cert too (or drop --key)"
        )
    if has["key_password"] and not source.cert_file:
        raise SourceError(
            "key_password",
            "a key password needs a client certificate: give --cert (and --key) too",
        )
    if source.proxy_url is not None:
        changes["proxy_url"] = _check_proxy(source.proxy_url) if source.proxy_url.strip() else None
    _check_durations(source)
    _check_timeout(source.timeout)
    changes["username_secret"] = _username_secret(source, changes["hostname"])
    if isinstance(source.max_retries, bool) or not 0 <= source.max_retries <= MAX_RETRIES:
        raise SourceError(
            "max_retries",
            f"{source.max_retries} is out of range: give 0 to {MAX_RETRIES} (e.g. --retries 3)",
        )
    enforce = frozenset(str(kind).strip().lower() for kind in source.enforce)
    unknown = enforce - ALL_ENFORCE
    if unknown:
        raise SourceError(
            "enforce",
            f"unknown kind(s) {', '.join(sorted(unknown))}: choose from "
            f"{', '.join(sorted(ALL_ENFORCE))}",
        )
    changes["enforce"] = enforce
    mode = source.mode.strip().lower()
    if mode not in MODES:
        raise SourceError(
            "mode",
            f"{_show(source.mode)} is not a mode: give enforce (the rules act on the source's"
            " matches) or monitor (its matches are only logged as what would have been done)",
        )
    changes["mode"] = mode
    return dataclasses.replace(source, **changes)


# -- writing a source -------------------------------------------------------------------------


def make_source(changes: Mapping[str, Any], base: Source | None = None) -> Source:
    """The validated source that ``changes`` make of ``base`` (None: a new source): the one way
    the CLI, the REST API and ``feedgate up`` write a source, so they take the same fields with
    the same rules. Raises :class:`SourceError`.

    ``changes`` holds fields of :data:`WRITABLE_FIELDS`; durations may be text (``"60m"``),
    ``enforce`` any collection of kinds. On a ``base``: a secret given (or removed) anew is
    decided, the others stay as stored; a user name given to a source that had none is judged
    secret or not again (unless ``username_secret`` is given); no user name, no password; and
    :data:`SECRET_SET` given back as the user name (what a GET showed) keeps the stored one.
    """
    unknown = set(changes) - WRITABLE_FIELDS
    if unknown:
        name = sorted(unknown)[0]
        shown = name if name.isprintable() and name.isascii() else ascii(name)
        fields = ", ".join(sorted(WRITABLE_FIELDS))
        raise SourceError(shown, f"unknown field: the fields are {fields}")
    given = dict(changes)
    if given.get("username") == SECRET_SET:
        if base is None or shown_username(base) != SECRET_SET:
            raise SourceError(
                "username",
                f"{SECRET_SET!r} is what is shown in place of a secret user name: give the"
                " user name itself",
            )
        del given["username"]  # sent back as shown: the stored one stays
    values: dict[str, Any] = {}
    if base is not None:
        values = {item.name: getattr(base, item.name) for item in dataclasses.fields(base)}
        values["unreadable_secrets"] = base.unreadable_secrets - given.keys()
        had_username = base.username is not None or "username" in base.unreadable_secrets
        if "username" in given and not had_username and "username_secret" not in given:
            values["username_secret"] = None  # judged by the rule, as in a new source
    for key, value in given.items():
        values[key] = _field_value(key, value)
    if "username" in given and given["username"] is None:
        values["password"] = given.get("password")  # no user, no password
        values["unreadable_secrets"] = values.get("unreadable_secrets", frozenset()) - {"password"}
    if given.get("cert_file", "") is None and "key_file" in given:
        values["key_password"] = given.get("key_password")
        values["unreadable_secrets"] = values.get("unreadable_secrets", frozenset()) - {
            "key_password"
        }
    missing = [name for name in ("name", "hostname", "collection") if name not in values]
    if missing:
        raise SourceError(missing[0], "missing: every source needs a name, hostname and collection")
    return validate(Source(**values))


def _field_value(key: str, value: Any) -> Any:
    """A field's value as :class:`Source` holds it: durations and kinds from their JSON forms."""
    if key in _DURATION_FIELDS:
        if isinstance(value, str):
            return parse_duration(value, key)
        if not isinstance(value, timedelta):
            raise SourceError(key, 'give a duration such as "60m", "30d"')
    if key == "enforce":
        if not isinstance(value, list | tuple | set | frozenset) or not all(
            isinstance(kind, str) for kind in value
        ):
            raise SourceError(key, "give a list of observable kinds")
        return frozenset(value)
    return value


# -- using a source -------------------------------------------------------------------------------


def client_options(source: Source) -> dict[str, Any]:
    """The keyword arguments of :class:`feedgate.taxii.client.TaxiiClient` for ``source``."""
    return {
        "host": source.hostname,
        "port": source.port,
        "use_https": source.use_https,
        "discovery_path": source.discovery_path,
        "version": source.taxii_version,
        "username": source.username,
        "password": source.password,
        "cert_file": source.cert_file,
        "key_file": source.key_file,
        "key_password": source.key_password,
        "ca_cert": source.ca_cert,
        "verify_ssl": source.verify_ssl,
        "proxy_url": source.proxy_url,
    }


def endpoint(source: Source) -> str:
    """The poll service's URL, for people: ``https://host[:port]/path`` (no credentials)."""
    scheme = "https" if source.use_https else "http"
    default = 443 if source.use_https else 80
    host = f"[{source.hostname}]" if ":" in source.hostname else source.hostname
    port = "" if source.port == default else f":{source.port}"
    return f"{scheme}://{host}{port}{source.poll_path}"
