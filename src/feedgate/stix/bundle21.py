"""Observables written as a STIX 2.1 bundle of indicators, streamed.

An export of a million observables must not be built in memory: :func:`bundle_chunks` yields
the bundle's JSON text a piece at a time (its head, one indicator per piece, its tail), and the
pieces joined are one valid JSON document. Each indicator's pattern is the single comparison
the STIX 2 reader (:mod:`._stix2`) turns back into the same observable, so a bundle exported
here and read again gives its values back. Kinds with no STIX pattern (``other``: mutexes,
CVEs, ...) are left out and counted by the caller (:func:`pattern` answers None for them).

Ids are UUIDv5 of the indicator's source, kind and value: exporting the same observable twice
gives the same id, as STIX asks of a producer that describes the same thing again.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from feedgate.observables import Kind

__all__ = ["Indicator", "bundle_chunks", "indicator_object", "pattern"]

#: The namespace of the ids (a UUIDv4 fixed once for feedgate's 2.1 exports).
_NAMESPACE: Final = uuid.UUID("4a5f3c1e-2b7d-4e0a-9c61-8d3e5f2a7b90")

#: kind -> the object path its value is compared with.
_PATHS: Final[dict[Kind, str]] = {
    Kind.IPV4: "ipv4-addr:value",
    Kind.IPV6: "ipv6-addr:value",
    Kind.DOMAIN: "domain-name:value",
    Kind.URL: "url:value",
    Kind.EMAIL: "email-addr:value",
    Kind.MD5: "file:hashes.MD5",
    Kind.SHA1: "file:hashes.'SHA-1'",
    Kind.SHA256: "file:hashes.'SHA-256'",
}


def _literal(value: str) -> str:
    """A STIX pattern string literal: quotes and backslashes escaped (pattern grammar)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def pattern(kind: str, value: str) -> str | None:
    """The STIX 2.1 pattern matching this observable, or None for a kind STIX cannot say
    (``other``); a CIDR is an ipv4-addr or ipv6-addr value (STIX takes CIDR there)."""
    try:
        known = Kind(kind)
    except ValueError:
        return None
    if known is Kind.CIDR:
        path = "ipv6-addr:value" if ":" in value else "ipv4-addr:value"
    else:
        found = _PATHS.get(known)
        if found is None:
            return None
        path = found
    return f"[{path} = {_literal(value)}]"


@functools.lru_cache(maxsize=4096)
def _timestamp(moment: dt.datetime) -> str:
    """A STIX timestamp: UTC, ``Z``, milliseconds (2.1 asks for at least that precision on
    created/modified). Kept for the times seen last: a poll stamps its rows alike."""
    utc = moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True, slots=True)
class Indicator:
    """What an indicator is made of: the observable, where it came from, its times, and the
    feed's own context (its ``package_title`` or ``indicator_title`` names the indicator, its
    ``description`` describes it)."""

    source: str
    kind: str
    value: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    valid_until: dt.datetime | None
    context: Mapping[str, Any]


def _text(context: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        found = context.get(key)
        if isinstance(found, str) and found.strip():
            return found
    return None


def indicator_object(item: Indicator) -> dict[str, Any] | None:
    """The STIX 2.1 indicator of ``item``, or None when its kind has no pattern."""
    found = pattern(item.kind, item.value)
    if found is None:
        return None
    ident = uuid.uuid5(_NAMESPACE, f"{item.source}\0{item.kind}\0{item.value}")
    valid_from = _timestamp(item.first_seen)
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--{ident}",
        "created": valid_from,
        "modified": _timestamp(max(item.last_seen, item.first_seen)),
        "name": _text(item.context, "package_title", "indicator_title", "title")
        or f"{item.kind} {item.value}",
        "pattern": found,
        "pattern_type": "stix",
        "pattern_version": "2.1",
        "valid_from": valid_from,
        "labels": [f"feedgate-source:{item.source}"],
    }
    description = _text(item.context, "description", "package_short_description")
    if description is not None:
        obj["description"] = description
    # valid_until must be later than valid_from (2.1, 4.7): an earlier one is left out.
    if item.valid_until is not None and item.valid_until > item.first_seen:
        obj["valid_until"] = _timestamp(item.valid_until)
    return obj


def bundle_chunks(items: Iterable[Indicator], *, bundle_id: str | None = None) -> Iterator[str]:
    """A STIX 2.1 bundle of the indicators of ``items`` as pieces of JSON text, one indicator
    per piece (those with no pattern are left out); ``bundle_id`` defaults to a random one."""
    ident = bundle_id or f"bundle--{uuid.uuid4()}"
    yield '{"type": "bundle", "id": ' + json.dumps(ident) + ', "objects": ['
    first = True
    for item in items:
        obj = indicator_object(item)
        if obj is None:
            continue
        yield ("\n" if first else ",\n") + orjson.dumps(obj).decode()
        first = False
    yield "\n]}\n"
