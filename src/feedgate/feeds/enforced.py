"""What a matcher reads of the store: live observables as compact columns, what changed since a
version, the sources' switches, and the rows behind a hit.

A matcher (:mod:`feedgate.mail.matcher`) keeps millions of observables in memory as sorted
numpy arrays; it must not read them as Python objects (a tuple per row is ~100 bytes, and the
reads would take minutes at 10 million) nor know the store's tables (``mail`` reads the store
only through ``feeds``, design.md "Layering"). So this module reads, per live observable, its id,
source id, kind (a small code, :data:`KINDS`) and the first 8 bytes of its stored digest (as a
little-endian ``uint64``: the digest *is* the key, no rehashing); beside them the values of the
few kinds a matcher keys itself (e-mail addresses, matched case-insensitively, and networks, as
their bounds). A hit is then confirmed by value against :func:`observables_by_ids`.

Every read of rows comes with the version (:meth:`FeedStore.version`) it is consistent with,
read in the same transaction before the rows (REPEATABLE READ on PostgreSQL), and
:func:`changes_since` returns the rows whose liveness changed after a version
(``observables.changed_version``, see "Versions" in :mod:`feedgate.feeds._ingest`). A row seen in
two reads is the same row; applying a change twice changes nothing.

Which rows are *enforced* also depends on their source (enabled, ``enforce`` kinds); those two
switches are returned as a tiny table (:class:`EnforcedSource`) for the matcher to apply at hit
time, so that disabling a source or changing what it enforces needs no rebuild.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from feedgate.observables import ENFORCEABLE_KINDS, observable_digest

from .schema import counters, observables_table, sources
from .store import _context, _live_by_id, _with_layers

if TYPE_CHECKING:
    from .store import FeedStore

__all__ = [
    "KINDS",
    "KIND_CODES",
    "EnforcedSource",
    "HitRow",
    "Network",
    "Rows",
    "changes_since",
    "digest_key",
    "enforced_sources",
    "live_rows",
    "observables_by_ids",
]

#: The kinds a matcher can match, in the order of their codes (:attr:`Rows.kinds`).
KINDS: Final[tuple[str, ...]] = tuple(sorted(str(kind) for kind in ENFORCEABLE_KINDS))
KIND_CODES: Final[Mapping[str, int]] = {kind: code for code, kind in enumerate(KINDS)}
#: Kinds whose values come with the columns: e-mail addresses (a matcher keys them lower-cased)
#: and networks (their bounds).
_SIDE_KINDS: Final = ("cidr", "email")
#: Rows fetched from the database at a time.
_CHUNK: Final = 100_000
#: Ids per ``IN (…)`` lookup (SQLite's historical limit on variables is 999).
_LOOKUP: Final = 900

Int64Array = npt.NDArray[np.int64]


def digest_key(kind: str, value: str) -> int:
    """The 64-bit key of ``kind``/``value``: the first 8 bytes of the stored digest
    (:func:`feedgate.observables.observable_digest`), little-endian, as :attr:`Rows.keys`."""
    return int.from_bytes(observable_digest(kind, value)[:8], "little")


@dataclass(frozen=True, slots=True)
class EnforcedSource:
    """A source's switches that decide whether its observables are enforced."""

    id: int
    name: str
    enabled: bool
    enforce: frozenset[str]

    def enforces(self, kind: str) -> bool:
        return self.enabled and kind in self.enforce


@dataclass(frozen=True, slots=True)
class Network:
    """A live ``cidr`` observable as its inclusive address bounds (``family`` 4 or 6)."""

    id: int
    source_id: int
    family: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Rows:
    """Observables as columns (index ``i`` is one row), consistent with ``version``.

    ``live[i]`` is False for a row that is expired now (only :func:`changes_since` returns
    those: a matcher drops them). ``emails`` are the (id, value) of the live ``email`` rows,
    ``networks`` the live ``cidr`` rows, both also in the columns. Rows of a deleted source
    are gone without a trace: a matcher sees their source missing from ``sources``.
    """

    version: int
    sources: tuple[EnforcedSource, ...]
    ids: Int64Array
    source_ids: npt.NDArray[np.uint32]
    kinds: npt.NDArray[np.uint8]
    keys: npt.NDArray[np.uint64]
    live: npt.NDArray[np.bool_]
    emails: tuple[tuple[int, str], ...] = ()
    networks: tuple[Network, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class HitRow:
    """A stored observable as a hit needs it: to confirm the value and to say what matched."""

    id: int
    source_id: int
    source: str
    kind: str
    value: str
    expired: bool
    context: dict[str, Any]


@contextmanager
def _consistent(store: FeedStore) -> Iterator[sa.Connection]:
    """A read transaction whose queries see one snapshot (PostgreSQL's default, READ
    COMMITTED, gives each statement its own; SQLite's WAL read transaction is one already)."""
    with store.engine.connect() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _version(conn: sa.Connection) -> int:
    query = sa.select(counters.c.value).where(counters.c.name == "version")
    return int(conn.execute(query).scalar_one())


def _sources(conn: sa.Connection) -> tuple[EnforcedSource, ...]:
    query = sa.select(sources.c.id, sources.c.name, sources.c.enabled, sources.c.enforce)
    return tuple(
        EnforcedSource(int(sid), str(name), bool(enabled), frozenset(json.loads(enforce)))
        for sid, name, enabled, enforce in conn.execute(query.order_by(sources.c.id))
    )


def enforced_sources(store: FeedStore) -> tuple[EnforcedSource, ...]:
    """Every source's switches, by id."""
    with _consistent(store) as conn:
        return _sources(conn)


def _network(row_id: int, source_id: int, value: str) -> Network | None:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:  # not stored by our normaliser; nothing to match
        return None
    return Network(
        row_id, source_id, net.version, int(net.network_address), int(net.broadcast_address)
    )


def _read(store: FeedStore, where: sa.ColumnElement[bool], *, by_id: bool) -> Rows:
    o = observables_table
    prefix = sa.func.substr(o.c.digest, 1, 8, type_=sa.LargeBinary)
    # Plain comparisons, not IN: an IN list is an "expanding" parameter that the SQLite path
    # of FeedStore._chunks (the driver's own cursor) cannot send.
    side = sa.case((sa.or_(*(o.c.kind == k for k in _SIDE_KINDS)), o.c.value), else_=sa.null())
    query = sa.select(o.c.id, o.c.source_id, o.c.kind, prefix, o.c.expired, side).where(
        sa.or_(*(o.c.kind == k for k in KINDS)), where
    )
    if by_id:  # the table's own order; for the changes it would lead SQLite past the index
        query = query.order_by(o.c.id)
    codes = KIND_CODES
    parts: list[tuple[Any, ...]] = []
    emails: list[tuple[int, str]] = []
    networks: list[Network] = []
    with _consistent(store) as conn:
        version = _version(conn)  # before the rows: a later commit is read again, never missed
        table = _sources(conn)
        for chunk in store._chunks(conn, query, _CHUNK):
            ids, sids, kinds, prefixes, expired, values = zip(*chunk, strict=True)
            live = np.fromiter((not e for e in expired), dtype=np.bool_, count=len(ids))
            part = (
                np.array(ids, dtype=np.int64),
                np.array(sids, dtype=np.uint32),
                np.fromiter((codes[k] for k in kinds), dtype=np.uint8, count=len(ids)),
                np.frombuffer(b"".join(prefixes), dtype="<u8").astype(np.uint64),
                live,
            )
            parts.append(part)
            for i in np.flatnonzero(np.array([v is not None for v in values]) & live):
                row_id, sid, value = int(ids[i]), int(sids[i]), str(values[i])
                if kinds[i] == "email":
                    emails.append((row_id, value))
                elif (net := _network(row_id, sid, value)) is not None:
                    networks.append(net)
    empty: tuple[Any, ...] = (
        np.zeros(0, np.int64),
        np.zeros(0, np.uint32),
        np.zeros(0, np.uint8),
        np.zeros(0, np.uint64),
        np.zeros(0, np.bool_),
    )
    ids_, sids_, kinds_, keys_, live_ = (
        [np.concatenate(c) for c in zip(*parts, strict=True)] if parts else list(empty)
    )
    return Rows(version, table, ids_, sids_, kinds_, keys_, live_, tuple(emails), tuple(networks))


def live_rows(store: FeedStore) -> Rows:
    """Every live observable of a kind a matcher can match, whatever its source's switches,
    in id order."""
    return _read(store, _live_by_id(), by_id=True)


def changes_since(store: FeedStore, version: int) -> Rows:
    """The observables made live or expired by commits after ``version``, as they are now
    (``live``): one range of the ``changed_version`` index."""
    return _read(store, observables_table.c.changed_version > int(version), by_id=False)


def observables_by_ids(store: FeedStore, ids: Iterable[int]) -> dict[int, HitRow]:
    """The stored rows of ``ids`` that still exist, with their source's name and their whole
    context (the package's shared layer under the indicator's own keys)."""
    wanted = sorted({int(i) for i in ids})
    o = observables_table
    layers = _with_layers(o.join(sources, sources.c.id == o.c.source_id))
    from .schema import shared_contexts

    base = sa.select(
        o.c.id,
        o.c.source_id,
        sources.c.name,
        o.c.kind,
        o.c.value,
        o.c.expired,
        o.c.context,
        shared_contexts.c.context,
    ).select_from(layers)
    out: dict[int, HitRow] = {}
    if not wanted:
        return out
    with store._read() as conn:
        for start in range(0, len(wanted), _LOOKUP):
            chunk: Sequence[int] = wanted[start : start + _LOOKUP]
            for row_id, sid, name, kind, value, expired, own, shared in conn.execute(
                base.where(o.c.id.in_(chunk))
            ):
                out[int(row_id)] = HitRow(
                    int(row_id),
                    int(sid),
                    str(name),
                    str(kind),
                    str(value),
                    bool(expired),
                    _context(shared, own),
                )
    return out
