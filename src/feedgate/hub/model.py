"""The hub's records: users, OTX pulses and their indicators, and OTX JSON (de)serialisation.

All timestamps are naive datetimes in UTC, as OTX writes them (``2016-11-03T20:15:43.264000``,
no zone, always with microseconds). Lists are kept as tuples so that records stay immutable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from feedgate.stix.writer import OTX_TYPE_NAMES

#: OTX indicator types, spelled exactly as OTX does (design.md "OTX pulses"); one list, the
#: STIX writer's, so the hub cannot accept a type its packages do not know.
INDICATOR_TYPES: tuple[str, ...] = OTX_TYPE_NAMES
_TYPE_BY_LOWER = {t.lower(): t for t in INDICATOR_TYPES}

TLPS: tuple[str, ...] = ("white", "green", "amber", "red")
#: TLPs a public pulse may not carry: OTX refuses ``public`` true with TLP amber or red.
PRIVATE_TLPS: frozenset[str] = frozenset({"amber", "red"})

#: ``strftime`` format of OTX timestamps.
OTX_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
_PULSE_ID = re.compile(r"^[0-9a-f]{24}$")


class OTXFormatError(ValueError):
    """OTX JSON that does not describe a pulse; the message names the field
    (``indicators[3].type: unknown indicator type 'Foo'``)."""


def canonical_type(name: str) -> str:
    """OTX's spelling of an indicator type, accepting any letter case (the OTX SDK's own
    examples write ``Domain``); ``ValueError`` for an unknown type."""
    try:
        return _TYPE_BY_LOWER[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown indicator type {name!r}") from None


def utcnow() -> datetime:
    """Now, as a naive UTC datetime (the hub's timestamp convention)."""
    return datetime.now(UTC).replace(tzinfo=None)


def format_time(value: datetime) -> str:
    """OTX's timestamp text: ISO 8601 without zone, with microseconds."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(OTX_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """Read an OTX timestamp (with or without fraction; a zone, if any, is converted to UTC)."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO 8601 timestamp, got {type(text).__name__}")
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"not an ISO 8601 timestamp: {text!r}") from None
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
            raise ValueError(f"not a time that UTC can hold: {text!r}") from None
    return value


def text_problem(data: Any) -> str | None:
    """Why JSON ``data`` holds text that cannot be stored, shown or served (a NUL character, or
    a lone surrogate such as ``"\\ud800"``, which JSON can spell but UTF-8 cannot), or ``None``.
    Looks at every key and string however deep, without recursion."""
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, Mapping):
            todo.extend(item.keys())
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return f"text {item[:40]!a} contains a NUL character (\\u0000)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    f"text {item[:40]!a} contains a lone surrogate, which is not valid "
                    "Unicode: send text as UTF-8 (a surrogate pair must be complete)"
                )
    return None


@dataclass(frozen=True, slots=True)
class User:
    """A hub account. Its API keys and password are stored only as digests."""

    username: str
    created: datetime
    has_password: bool = False


@dataclass(frozen=True, slots=True)
class Indicator:
    """One IOC of a pulse. ``id`` is ``None`` until the store assigns one."""

    indicator: str
    type: str
    created: datetime
    id: int | None = None
    title: str = ""
    description: str = ""
    content: str = ""
    expiration: datetime | None = None
    is_active: bool = True
    role: str | None = None

    def usable(self, now: datetime | None = None) -> bool:
        """Active and not expired at ``now`` (default: the current time)."""
        if not self.is_active:
            return False
        return self.expiration is None or self.expiration > (now or utcnow())


@dataclass(frozen=True, slots=True)
class Pulse:
    """An OTX pulse: a named, authored set of indicators."""

    id: str
    name: str
    author_name: str
    created: datetime
    modified: datetime
    description: str = ""
    revision: int = 1
    tlp: str = "white"
    public: bool = True
    adversary: str = ""
    targeted_countries: tuple[str, ...] = ()
    malware_families: tuple[str, ...] = ()
    attack_ids: tuple[str, ...] = ()
    industries: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    extract_source: tuple[str, ...] = ()
    more_indicators: bool = False
    indicators: tuple[Indicator, ...] = field(default=())

    def usable_indicators(self, now: datetime | None = None) -> tuple[Indicator, ...]:
        """The indicators that are active and unexpired at ``now``."""
        at = now or utcnow()
        return tuple(i for i in self.indicators if i.usable(at))


def is_pulse_id(value: str) -> bool:
    """True for OTX's 24 lower-case hex digit pulse ids."""
    return bool(_PULSE_ID.match(value))


# --- OTX JSON ------------------------------------------------------------------------------


def indicator_to_otx(ind: Indicator) -> dict[str, Any]:
    """One indicator as OTX JSON."""
    return {
        "id": ind.id,
        "indicator": ind.indicator,
        "type": ind.type,
        "created": format_time(ind.created),
        "title": ind.title,
        "description": ind.description,
        "content": ind.content,
        "expiration": format_time(ind.expiration) if ind.expiration else None,
        "is_active": 1 if ind.is_active else 0,
        "role": ind.role,
    }


def pulse_to_otx(pulse: Pulse, *, detail: bool = False) -> dict[str, Any]:
    """A pulse as OTX JSON. ``detail=True`` spells the TLP key ``TLP`` as OTX's create and
    detail responses do; lists and subscriptions use ``tlp``."""
    return {
        "id": pulse.id,
        "name": pulse.name,
        "description": pulse.description,
        "author_name": pulse.author_name,
        "created": format_time(pulse.created),
        "modified": format_time(pulse.modified),
        "revision": pulse.revision,
        ("TLP" if detail else "tlp"): pulse.tlp,
        "public": 1 if pulse.public else 0,
        "adversary": pulse.adversary,
        "targeted_countries": list(pulse.targeted_countries),
        "malware_families": list(pulse.malware_families),
        "attack_ids": list(pulse.attack_ids),
        "industries": list(pulse.industries),
        "tags": list(pulse.tags),
        "references": list(pulse.references),
        "extract_source": list(pulse.extract_source),
        "more_indicators": pulse.more_indicators,
        "indicators": [indicator_to_otx(i) for i in pulse.indicators],
    }


class _Reader:
    """Typed field access on one JSON object, naming the field path in every error."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise OTXFormatError(
                f"{where or 'pulse'}: expected an object, got {type(data).__name__}"
            )
        self.data = data
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, message: str) -> OTXFormatError:
        return OTXFormatError(f"{self.path(key)}: {message}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise self.fail(key, "missing")
            return default
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__}")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {type(value).__name__}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise self.fail(key, f"expected true/false or 0/1, got {value!r}")

    def integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.isdigit():
                return int(value)
            raise self.fail(key, f"expected an integer, got {value!r}")
        return value

    def time(self, key: str, default: datetime | None = None) -> datetime:
        value = self.data.get(key)
        if value is None:
            if default is None:
                raise self.fail(key, "missing")
            return default
        try:
            return parse_time(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def optional_time(self, key: str) -> datetime | None:
        value = self.data.get(key)
        if value in (None, ""):
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            raise self.fail(key, str(exc)) from None

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key)
        if value is None:
            return ()
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.fail(key, f"expected a list of strings, got {type(value).__name__}")
        out: list[str] = []
        for n, item in enumerate(value):
            if isinstance(item, Mapping):
                # OTX's detail responses give ATT&CK ids and families as objects.
                label = item.get("id") or item.get("display_name") or item.get("name")
                if isinstance(label, str):
                    out.append(label)
                    continue
            if not isinstance(item, str):
                raise OTXFormatError(
                    f"{self.path(key)}[{n}]: expected a string, got {type(item).__name__}"
                )
            out.append(item)
        return tuple(out)


def indicator_from_otx(
    data: Any, *, where: str = "indicator", default_created: datetime | None = None
) -> Indicator:
    """One indicator from OTX JSON. Only ``indicator`` and ``type`` are required; the type is
    accepted in any letter case and stored in OTX's spelling."""
    r = _Reader(data, where)
    value = r.text("indicator")
    if not value.strip():
        raise r.fail("indicator", "empty")
    try:
        kind = canonical_type(r.text("type"))
    except ValueError as exc:
        raise r.fail("type", str(exc)) from None
    return Indicator(
        id=r.integer("id"),
        indicator=value,
        type=kind,
        created=r.time("created", default_created or utcnow()),
        title=r.text("title", "") or "",
        description=r.text("description", "") or "",
        content=r.text("content", "") or "",
        expiration=r.optional_time("expiration"),
        is_active=r.flag("is_active", True),
        role=r.optional_text("role"),
    )


def pulse_from_otx(data: Any, *, where: str = "") -> Pulse:
    """A pulse from OTX JSON, with a clear error naming the first bad field.

    Required: ``id`` (24 hex digits), ``name``, ``author_name``; ``created`` and ``modified``
    default to now, ``tlp`` (or ``TLP``) to white, lists to empty.
    """
    problem = text_problem(data)  # the store could not keep it, or every list showing it breaks
    if problem:
        raise OTXFormatError(f"{where + ': ' if where else ''}{problem}")
    r = _Reader(data, where)
    pulse_id = r.text("id")
    if not is_pulse_id(pulse_id):
        raise r.fail("id", f"expected 24 lower-case hex digits, got {pulse_id!r}")
    name = r.text("name")
    if not name.strip():
        raise r.fail("name", "empty")
    author = r.text("author_name")
    if not author.strip():
        raise r.fail("author_name", "empty")
    now = utcnow()
    created = r.time("created", now)
    modified = r.time("modified", created)
    tlp_key = "tlp" if "tlp" in r.data or "TLP" not in r.data else "TLP"
    tlp = r.text(tlp_key, "white").lower()
    if tlp not in TLPS:
        raise r.fail(tlp_key, f"expected one of {', '.join(TLPS)}, got {tlp!r}")
    revision = r.integer("revision")
    if revision is not None and revision < 1:
        raise r.fail("revision", f"expected a positive integer, got {revision}")
    raw_indicators = r.data.get("indicators")
    if raw_indicators is None:
        raw_indicators = []
    if not isinstance(raw_indicators, list):
        raise r.fail("indicators", f"expected a list, got {type(raw_indicators).__name__}")
    indicators = tuple(
        indicator_from_otx(item, where=r.path(f"indicators[{n}]"), default_created=created)
        for n, item in enumerate(raw_indicators)
    )
    return Pulse(
        id=pulse_id,
        name=name,
        author_name=author,
        created=created,
        modified=modified,
        description=r.text("description", "") or "",
        revision=revision or 1,
        tlp=tlp,
        public=r.flag("public", True),
        adversary=r.text("adversary", "") or "",
        targeted_countries=r.strings("targeted_countries"),
        malware_families=r.strings("malware_families"),
        attack_ids=r.strings("attack_ids"),
        industries=r.strings("industries"),
        tags=r.strings("tags"),
        references=r.strings("references"),
        extract_source=r.strings("extract_source"),
        more_indicators=r.flag("more_indicators", False),
        indicators=indicators,
    )
