"""Typed values to and from their TAXII wire text: timestamps, booleans, integers, message ids.

Each parser takes ``where`` (a path such as ``Poll_Response/@more``) so that a bad value is
reported with the place it was found: a peer's malformed message is otherwise hard to diagnose.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

from ._constants import VID_TAXII_XML_10
from ._errors import TAXIIMessageError

_MAX_OFFSET: Final = timedelta(hours=14)  # xs:dateTime allows zone offsets up to ±14:00


def format_timestamp(value: datetime) -> str:
    """Render ``value`` as the TAXII timestamp form (xs:dateTime with a mandatory zone).

    A naive datetime is taken to be UTC, the same rule :func:`parse_timestamp` applies, so that
    what we write is what we read back. An offset the schema cannot express (seconds, beyond
    ±14:00) is converted to UTC rather than written invalidly.
    """
    offset = value.utcoffset()
    if offset is None:
        value = value.replace(tzinfo=UTC)
        offset = timedelta(0)
    if offset % timedelta(minutes=1) or abs(offset) > _MAX_OFFSET:
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise TAXIIMessageError(f"timestamp out of range in UTC: {value!r}") from None
        offset = timedelta(0)
    text = value.isoformat()
    if not offset:
        text = text[: -len("+00:00")] + "Z"
    return text


def parse_timestamp(text: str | None, where: str) -> datetime:
    """Parse an ISO 8601 timestamp; 'Z' and offsets are honoured, a naive one is taken as UTC."""
    raw = (text or "").strip()
    if raw.endswith("z"):
        raw = raw[:-1] + "Z"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise TAXIIMessageError(f"{where}: not an ISO 8601 timestamp: {raw!r}") from None
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    return value


def format_bool(value: bool) -> str:
    return "true" if value else "false"


_INTEGER_RE: Final = re.compile(r"\+?[0-9]{1,30}")  # bounded: int() refuses very long text
_BOOLEANS: Final = {"true": True, "1": True, "false": False, "0": False}


def parse_bool(text: str | None, where: str) -> bool:
    """Parse an xs:boolean ("true", "false", "1", "0")."""
    raw = (text or "").strip()
    try:
        return _BOOLEANS[raw]
    except KeyError:
        raise TAXIIMessageError(f"{where}: expected true or false, got {raw!r}") from None


def parse_int(text: str | None, where: str, *, minimum: int = 0) -> int:
    """Parse an xs:nonNegativeInteger (``minimum=0``) or xs:positiveInteger (``minimum=1``)."""
    raw = (text or "").strip()
    kind = "a positive" if minimum == 1 else "a non-negative"
    if _INTEGER_RE.fullmatch(raw) is None or int(raw) < minimum:
        raise TAXIIMessageError(f"{where}: expected {kind} integer, got {raw!r}")
    return int(raw)


_DIGITS: Final = re.compile(r"[0-9]+")


def new_message_id(version: str) -> str:
    """A fresh message id for a message of ``version``.

    TAXII 1.1 allows any text, and a UUID is what its peers send. The TAXII 1.0 schema allows
    only digits (``[0-9]+``), and servers that validate requests (OpenTAXII) answer anything
    else with BAD_MESSAGE: a 1.0 id is a random 63-bit number in decimal.
    """
    if version == VID_TAXII_XML_10:
        return str(secrets.randbits(63))
    return str(uuid.uuid4())


def check_message_id(value: str, version: str, where: str) -> None:
    """Refuse an id the version's schema does not allow (TAXII 1.0: digits only)."""
    if version == VID_TAXII_XML_10 and _DIGITS.fullmatch(value) is None:
        raise TAXIIMessageError(
            f"{where}: {value!r} is not a TAXII 1.0 message id (digits only); see new_message_id"
        )
