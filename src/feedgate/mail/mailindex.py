"""The mail index: what every message that passed could match, for the retention (14 days).

A message that was delivered (``deliver``, ``log``, ``tag``, ``header``) may carry an
observable a later poll brings; the retro-scan (:mod:`feedgate.mail.retro`) finds it here. So
the index keeps only what can match, never a body: the offers (part, lookup, normalised value)
with the message's names (queue id or path, Message-ID), time, envelope sender, client IP,
subject and what was done to it.

Each offer is stored once per *probe* the matcher makes of it (:func:`feedgate.mail.matcher`
``_probes``): a host under itself and every parent domain, an e-mail address lower-cased, a
hash lower-cased, an IP address as ``ipv4``/``ipv6``; each row keyed by the first 8 bytes of
the store's digest, sha256(kind NUL value) (:func:`feedgate.feeds.enforced.digest_key`, as a
signed 64-bit integer), which is the key a new observable row already carries. "Which indexed
messages hold any of these new observables" is then one index lookup per key, and for a new
network (``cidr``) one range of the ``address`` index (16 bytes, IPv4 mapped as
``::ffff:a.b.c.d``, which both databases order as numbers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa

from feedgate.db import naive_utc, read_transaction, write_transaction
from feedgate.feeds.enforced import digest_key

from .matcher import _address, _probes
from .model import Action, Inspection, Lookup, Offer, Part
from .policy import Verdict
from .schema import index_keys, index_messages

__all__ = [
    "DEFAULT_RETENTION",
    "PASSED",
    "IndexedMessage",
    "MailIndex",
    "address_bytes",
    "signed_key",
]

#: How long a passed message stays in the index by default (the issue's 14 days).
DEFAULT_RETENTION: Final = timedelta(days=14)
#: The actions after which a message went on to its recipients: the ones indexed.
PASSED: Final = frozenset({Action.DELIVER, Action.LOG, Action.TAG, Action.HEADER})
#: Keys per ``IN (...)`` (SQLite's historical limit on variables is 999).
_CHUNK: Final = 900
#: The longest subject kept (RFC 5322's line limit): the index is not an archive.
_MAX_SUBJECT: Final = 998
_V4_MAPPED: Final = 0xFFFF << 32


def signed_key(key: int) -> int:
    """A ``uint64`` digest key as the signed 64-bit integer a BIGINT column holds."""
    return key - (1 << 64) if key >= 1 << 63 else key


def address_bytes(family: int, number: int) -> bytes:
    """An address as the 16 bytes the index orders by (IPv4 mapped into IPv6)."""
    return ((_V4_MAPPED | number) if family == 4 else number).to_bytes(16, "big")


@dataclass(frozen=True, slots=True)
class IndexedMessage:
    """A message of the index with its offers (each ``seen`` is its value: no text is kept)."""

    id: int
    at: datetime
    name: str | None
    message_id: str | None
    envelope_from: str | None
    subject: str | None
    client_ip: str | None
    action: Action
    version: int
    offers: tuple[Offer, ...]

    @property
    def label(self) -> str:
        """How the admin knows the message: its Message-ID, else its name, else its row."""
        return self.message_id or self.name or f"<indexed {self.id}>"


def _first(offers: Sequence[Offer], part: Part) -> str | None:
    return next((o.value for o in offers if o.part is part), None)


class MailIndex:
    """The index over an engine of :func:`feedgate.db.engine` (the manager's database, so a
    cluster shares it); ``retention`` is how long :meth:`expire` keeps a message."""

    def __init__(self, engine: sa.Engine, *, retention: timedelta = DEFAULT_RETENTION) -> None:
        from feedgate.migrate import upgrade

        if retention <= timedelta(0):
            raise ValueError(f"the mail index's retention must be positive, not {retention}")
        self.engine = engine
        self.retention = retention
        upgrade(engine, "feeds")  # feeds_0007 made the tables

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with write_transaction(self.engine) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with read_transaction(self.engine) as conn:
            yield conn

    # --- writing --------------------------------------------------------------------------

    @staticmethod
    def _key_rows(offers: Iterable[Offer]) -> list[dict[str, Any]]:
        rows: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        for offer in offers:
            address = _address(offer.value) if offer.lookup is Lookup.IP else None
            raw = None if address is None else address_bytes(address.version, int(address))
            for kind, _text, key_text in _probes(offer):
                key = signed_key(digest_key(kind, key_text))
                marker = (str(offer.part), str(offer.lookup), offer.value, key)
                rows.setdefault(
                    marker,
                    {
                        "part": str(offer.part),
                        "lookup": str(offer.lookup),
                        "value": offer.value,
                        "key": key,
                        "address": raw,
                    },
                )
        return list(rows.values())

    def add(
        self,
        inspection: Inspection,
        verdict: Verdict,
        *,
        at: datetime,
        version: int,
        name: str | None = None,
        envelope_from: str | None = None,
        client_ip: str | None = None,
    ) -> int | None:
        """Index a scanned message if it passed (:data:`PASSED`); its row id, or None when it
        did not pass. ``version`` is the matcher snapshot's store version the verdict was made
        at; ``envelope_from``/``client_ip`` default to what the message offered for them."""
        if verdict.action not in PASSED:
            return None
        offers = inspection.offers
        subject = inspection.subject
        values = {
            "at": naive_utc(at),
            "name": name,
            "message_id": inspection.message_id,
            "envelope_from": envelope_from or _first(offers, Part.ENVELOPE_FROM),
            "subject": None if subject is None else subject[:_MAX_SUBJECT],
            "client_ip": client_ip or _first(offers, Part.CLIENT_IP),
            "action": str(verdict.action),
            "version": int(version),
        }
        keys = self._key_rows(offers)
        with self._write() as conn:
            done = conn.execute(index_messages.insert().values(**values))
            primary = done.inserted_primary_key
            assert primary is not None
            row_id = int(primary[0])
            if keys:
                conn.execute(index_keys.insert(), [{**k, "message": row_id} for k in keys])
        return row_id

    def expire(self, now: datetime) -> int:
        """Delete the messages older than the retention (with their keys); how many."""
        cutoff = naive_utc(now) - self.retention
        m, k = index_messages, index_keys
        old = sa.select(m.c.id).where(m.c.at < cutoff)
        with self._write() as conn:
            conn.execute(k.delete().where(k.c.message.in_(old)))
            done = conn.execute(m.delete().where(m.c.at < cutoff))
        return int(done.rowcount or 0)

    # --- reading --------------------------------------------------------------------------

    def count(self) -> int:
        """Messages in the index."""
        with self._read() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(index_messages)).scalar_one()
            )

    def oldest_version(self) -> int | None:
        """The lowest store version a message in the index was scanned at (None: empty)."""
        with self._read() as conn:
            value = conn.execute(sa.select(sa.func.min(index_messages.c.version))).scalar()
        return None if value is None else int(value)

    def candidates(
        self,
        keys: Iterable[int],
        networks: Iterable[tuple[int, int, int]],
        *,
        since: datetime,
        before_version: int,
    ) -> list[IndexedMessage]:
        """The messages scanned from ``since`` on, at a store version below
        ``before_version``, that hold an offer keyed by one of ``keys`` (``uint64`` digest
        keys) or an address inside one of ``networks`` (family, first, last); each with all
        its offers, oldest first. Candidates only: the caller confirms by value."""
        m, k = index_messages, index_keys
        window = sa.and_(m.c.at >= naive_utc(since), m.c.version < int(before_version))
        wanted = sorted({signed_key(int(key)) for key in keys})
        found: set[int] = set()
        joined = k.join(m, m.c.id == k.c.message)
        with self._read() as conn:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                query = sa.select(k.c.message).select_from(joined).where(k.c.key.in_(chunk), window)
                found.update(int(i) for i in conn.execute(query).scalars())
            for family, first, last in networks:
                low, high = address_bytes(family, first), address_bytes(family, last)
                query = (
                    sa.select(k.c.message)
                    .select_from(joined)
                    .where(k.c.address >= low, k.c.address <= high, window)
                )
                found.update(int(i) for i in conn.execute(query).scalars())
            return self._messages(conn, sorted(found))

    def messages(self, ids: Iterable[int]) -> list[IndexedMessage]:
        """The indexed messages of ``ids`` that are still there, oldest first."""
        with self._read() as conn:
            return self._messages(conn, sorted({int(i) for i in ids}))

    @staticmethod
    def _messages(conn: sa.Connection, ids: Sequence[int]) -> list[IndexedMessage]:
        m, k = index_messages, index_keys
        out: list[IndexedMessage] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            offers: dict[int, dict[tuple[str, str, str], Offer]] = {}
            query = sa.select(k.c.message, k.c.part, k.c.lookup, k.c.value).where(
                k.c.message.in_(chunk)
            )
            for message, part, lookup, value in conn.execute(query.order_by(k.c.id)):
                offers.setdefault(int(message), {}).setdefault(
                    (part, lookup, value), Offer(Part(part), Lookup(lookup), value, value)
                )
            for row in conn.execute(sa.select(m).where(m.c.id.in_(chunk))):
                out.append(
                    IndexedMessage(
                        id=int(row.id),
                        at=row.at.replace(tzinfo=UTC),
                        name=row.name,
                        message_id=row.message_id,
                        envelope_from=row.envelope_from,
                        subject=row.subject,
                        client_ip=row.client_ip,
                        action=Action(row.action),
                        version=int(row.version),
                        offers=tuple(offers.get(int(row.id), {}).values()),
                    )
                )
        out.sort(key=lambda msg: (msg.at, msg.id))
        return out

    def keys_of(self, message: int) -> list[tuple[str, str, str]]:
        """(part, lookup, value) of each offer row of one message: what the index holds of it."""
        k = index_keys
        query = sa.select(k.c.part, k.c.lookup, k.c.value).where(k.c.message == int(message))
        with self._read() as conn:
            return [(p, lk, v) for p, lk, v in conn.execute(query.order_by(k.c.id))]
